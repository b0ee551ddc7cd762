/* The smallest C host: calls the parts of the C API that need no runtime, so that a link
 * test can tell whether libsagalane links and loads, apart from what the API does. */
#include "sagalane.h"

#include <stdio.h>
#include <string.h>

#define SL_STR_(x) #x
#define SL_STR(x) SL_STR_(x)

int main(void) {
    int failures = 0;
    const char *expected = SL_STR(SL_VERSION_MAJOR) "." SL_STR(SL_VERSION_MINOR) "." SL_STR(SL_VERSION_PATCH);
    if (strcmp(sl_version(), expected) != 0) {
        fprintf(stderr, "sl_version() = %s, the header says %s\n", sl_version(), expected);
        failures++;
    }
    if (sl_version_hex() != SL_VERSION_HEX) {
        fprintf(stderr, "sl_version_hex() = %#x, the header says %#x\n", sl_version_hex(), SL_VERSION_HEX);
        failures++;
    }
    if (strcmp(sl_strerror(SL_EINVAL), "invalid argument") != 0) {
        fprintf(stderr, "sl_strerror(SL_EINVAL) = %s\n", sl_strerror(SL_EINVAL));
        failures++;
    }
    if (strcmp(sl_err_name(SL_EINVAL), "SL_EINVAL") != 0) {
        fprintf(stderr, "sl_err_name(SL_EINVAL) = %s\n", sl_err_name(SL_EINVAL));
        failures++;
    }
    sl_free(NULL);
    printf("sagalane %s (%#x): %s\n", sl_version(), sl_version_hex(), failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
}

/* The smallest C host: calls the parts of the C API that need no runtime, so that a link
 * test can tell whether libsagalane links and loads, apart from what the API does. Given a
 * path, it also makes an empty log there (opens, starts and closes a runtime on it). */
#include "sagalane.h"

#include <stdio.h>
#include <string.h>

#define SL_STR_(x) #x
#define SL_STR(x) SL_STR_(x)

int main(int argc, char **argv) {
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
    if (argc == 2) {
        sl_runtime_options options;
        sl_runtime_options_init(&options);
        options.db_path = argv[1];
        sl_runtime *rt = NULL;
        int rc = sl_runtime_open(&options, &rt);
        if (rc == 0) rc = sl_runtime_start(rt);
        if (rc != 0) {
            fprintf(stderr, "making a log at %s: %s: %s\n", argv[1], sl_err_name(rc), sl_runtime_errmsg(rt));
            failures++;
        }
        sl_runtime_close(rt);
    }
    printf("sagalane %s (%#x): %s\n", sl_version(), sl_version_hex(), failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
}

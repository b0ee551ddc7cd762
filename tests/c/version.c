/* sl_version() and sl_version_hex() agree with the header's SL_VERSION_* macros. */
#include "check.h"

#define STR_(x) #x
#define STR(x) STR_(x)

int main(void) {
    EXPECT_STREQ(sl_version(), STR(SL_VERSION_MAJOR) "." STR(SL_VERSION_MINOR) "." STR(SL_VERSION_PATCH));
    EXPECT_EQ_INT(sl_version_hex(), SL_VERSION_HEX);
    EXPECT_EQ_INT(SL_VERSION_HEX, (SL_VERSION_MAJOR << 16) | (SL_VERSION_MINOR << 8) | SL_VERSION_PATCH);
    /* A static string: the same pointer every time. */
    EXPECT(sl_version() == sl_version());
    return 0;
}

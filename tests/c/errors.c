/* sl_strerror() and sl_err_name() for every code in SL_ERRNO_MAP, for 0, and for codes that
   are not in it; sl_free(NULL). */
#include "check.h"

int main(void) {
    int count = 0;
#define XX(name, value, text)                                                                      \
    EXPECT_EQ_INT(SL_E##name, value);                                                              \
    EXPECT(value < 0);                                                                             \
    EXPECT_STREQ(sl_strerror(SL_E##name), text);                                                   \
    EXPECT_STREQ(sl_err_name(SL_E##name), "SL_E" #name);                                           \
    count++;
    SL_ERRNO_MAP(XX)
#undef XX
    EXPECT_EQ_INT(count, 25);

    /* Codes are appended: the table has no gap, from -1 to the last one. */
    for (int code = -1; code >= -count; code--) EXPECT(strcmp(sl_err_name(code), "SL_EUNKNOWN") != 0);

    const int unknown[] = {-count - 1, -1000, 1, 42, -2147483647 - 1, 2147483647};
    for (size_t i = 0; i < sizeof unknown / sizeof *unknown; i++) {
        EXPECT_STREQ(sl_strerror(unknown[i]), "unknown error");
        EXPECT_STREQ(sl_err_name(unknown[i]), "SL_EUNKNOWN");
    }
    /* 0 is success, not an error; both lookups still answer with a static string. */
    EXPECT(sl_strerror(0) != NULL && strcmp(sl_strerror(0), "unknown error") != 0);
    EXPECT(sl_err_name(0) != NULL && strcmp(sl_err_name(0), "SL_EUNKNOWN") != 0);
    EXPECT(sl_strerror(SL_EINVAL) == sl_strerror(SL_EINVAL));

    sl_free(NULL);
    return 0;
}

// What the C++ tests share: expectations that abort with the file and line.
#pragma once

#include "sagalane.hpp"

#include <cstdio>
#include <cstdlib>

#define EXPECT(cond)                                                                      \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            std::fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond);      \
            std::abort();                                                                 \
        }                                                                                 \
    } while (0)

/* `expr` throws a sagalane::error with code `expected`. */
#define EXPECT_THROWS(expected, expr)                                                             \
    do {                                                                                          \
        bool thrown = false;                                                                      \
        try {                                                                                     \
            expr;                                                                                 \
        } catch (const sagalane::error &e) {                                                      \
            thrown = e.code() == (expected);                                                      \
            if (!thrown) std::fprintf(stderr, "%s:%d: threw %s\n", __FILE__, __LINE__, e.what()); \
        }                                                                                         \
        EXPECT(thrown);                                                                           \
    } while (0)

/* The parts of the C API that are plain C: the error table, written once in SL_ERRNO_MAP and
 * expanded here into both lookups (as libuv does with UV_ERRNO_MAP), sl_free, and the flag
 * that tells the shims they run in a forked child. */
#include "sagalane.h"
#include "fork_guard.h"

#include <pthread.h>
#include <stdlib.h>

volatile int sagalane_forked_child;

static void sagalane_mark_forked_child(void) { sagalane_forked_child = 1; }

/* Runs when the library is loaded (or a static host starts), before any thread of sagalane. */
__attribute__((constructor)) static void sagalane_install_fork_handler(void) {
    pthread_atfork(NULL, NULL, sagalane_mark_forked_child);
}

const char *sl_strerror(int code) {
    switch (code) {
#define SL_STRERROR_CASE_(name, value, text) case value: return text;
        SL_ERRNO_MAP(SL_STRERROR_CASE_)
#undef SL_STRERROR_CASE_
    case 0: return "success";
    default: return "unknown error";
    }
}

const char *sl_err_name(int code) {
    switch (code) {
#define SL_ERR_NAME_CASE_(name, value, text) case value: return "SL_E" #name;
        SL_ERRNO_MAP(SL_ERR_NAME_CASE_)
#undef SL_ERR_NAME_CASE_
    case 0: return "SL_OK";
    default: return "SL_EUNKNOWN";
    }
}

/* Everything sagalane hands out is allocated with malloc. */
void sl_free(void *ptr) { free(ptr); }

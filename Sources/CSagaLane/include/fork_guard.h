/* Not part of the public API: how the C shims learn that they run in a child process forked
 * (without exec) from a process that loaded sagalane. In such a child the parent's threads
 * are gone but every lock they held stays held, the Swift runtime's among them, so any call
 * could wait forever: the shims refuse with SL_EFORKED before touching anything. */
#ifndef SAGALANE_FORK_GUARD_H
#define SAGALANE_FORK_GUARD_H

/* Set to 1 in a forked child by a pthread_atfork handler the library installs when it loads. */
extern volatile int sagalane_forked_child;

static inline int sl_in_forked_child(void) { return sagalane_forked_child; }

#endif

import Glibc

/// Wake-ups put off to the end of a batch of work on one thread.
///
/// The event loop runs a batch of jobs per turn (for instance every saga whose log write one
/// group commit confirmed), and each job may publish events. Waking a subscriber's reader for
/// each event costs a futex wake-up and a context switch per event; a reader woken once at the
/// end of the batch finds all of them buffered. A thread that is not inside a batch wakes its
/// readers at once.
package enum WakeBatch {
    private final class Pending {
        var wakes: [() -> Void] = []
    }

    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    /// Runs `body` with a batch open on this thread, then the wake-ups it put off, in order.
    /// Nested calls join the outer batch.
    package static func run(_ body: () -> Void) {
        if pthread_getspecific(key) != nil {
            body()
            return
        }
        let pending = Pending()
        let pointer = Unmanaged.passUnretained(pending).toOpaque()
        pthread_setspecific(key, pointer)
        body()
        pthread_setspecific(key, nil)
        withExtendedLifetime(pending) {
            for wake in pending.wakes { wake() }
        }
    }

    /// Puts `wake` off to the end of the batch open on this thread.
    /// - Returns: `false` when no batch is open: the caller must wake now.
    package static func putOff(_ wake: @escaping () -> Void) -> Bool {
        guard let pointer = pthread_getspecific(key) else { return false }
        Unmanaged<Pending>.fromOpaque(pointer).takeUnretainedValue().wakes.append(wake)
        return true
    }
}

package sagalane

// #cgo pkg-config: sagalane-static
// #include "glue.h"
import "C"

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/cgo"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// Version is the library's version, "MAJOR.MINOR.PATCH".
func Version() string { return C.GoString(C.sl_version()) }

// Durability says what a commit of the log survives.
type Durability int

const (
	// DurabilityFull fsyncs every group commit: it survives power loss. The default.
	DurabilityFull Durability = C.SL_DURABILITY_FULL
	// DurabilityNormal survives a crash of the process, not of the machine.
	DurabilityNormal Durability = C.SL_DURABILITY_NORMAL
)

// Options configure Open. The zero value opens an in-memory log with the defaults.
type Options struct {
	// Path is the log's SQLite file, created if missing; "" keeps the log in memory.
	Path string
	// Durability says what a commit survives; the zero value is DurabilityFull.
	Durability Durability
	// BusyTimeout is how long to wait for a database locked by another connection; 0
	// means 5 s.
	BusyTimeout time.Duration
	// ManualClock makes time move only with AdvanceTime, for tests of deadlines.
	ManualClock bool
	// ReadOnly opens the log for diagnostics only (the log reading methods); the runtime
	// cannot be started.
	ReadOnly bool
	// OnPanic receives every panic recovered in a callback. It runs on the callback's
	// thread, and must return quickly. nil writes them to standard error.
	OnPanic func(*PanicError)
}

// PanicError is a panic recovered in a Go callback before it could reach C.
type PanicError struct {
	Callback string // which callback, e.g. `saga "x" Start` or `target "host"`
	Value    any    // what was passed to panic
	Stack    []byte // the goroutine's stack where it panicked
}

// Error reads "sagalane: panic in CALLBACK: VALUE".
func (p *PanicError) Error() string {
	return fmt.Sprintf("sagalane: panic in %s: %v", p.Callback, p.Value)
}

// Runtime is an open sagalane runtime: its loop, log, bus, sagas and lanes. Its methods are
// safe for concurrent use.
type Runtime struct {
	rt      *C.sl_runtime
	onPanic func(*PanicError)
	closed  atomic.Bool // Close began: calls fail with ErrClosed from here on
	// The close sentinel target's handle (see closeSentinelTarget).
	sentinel C.uintptr_t
	// The loop thread's id, once a loop-thread callback ran: a call made there must not
	// wait on another goroutine for the loop (see await).
	loopThread atomic.Int64

	mu       sync.Mutex
	handles  int // live cgo.Handles the C side holds for this runtime
	closing  bool
	finished bool
	subs     map[*Subscription]struct{}
	subsOver bool // the close ended every subscription
	// Why SagaType.New refused, by the thread it ran on, so StartSaga on that thread can
	// return the reason (the C API keeps only the code).
	refusals map[int]error
	done     chan struct{}
}

// liveHandles counts every cgo.Handle this package made and has not deleted yet.
var liveHandles atomic.Int64

// closeSentinelTarget names a target registered at Open only for its release callback,
// which runs once the close finished: subscriptions (which have no release callback of
// their own) are known to be over then.
const closeSentinelTarget = "sagalane-go.runtime"

// Open opens a runtime: creates its loop and opens (creating and migrating) its log. Register
// saga types, triggers, targets and lanes, then call Start.
//
// Opening may wait: for a database another connection holds locked (up to
// Options.BusyTimeout), and for a migration of an older log. If ctx is done first, Open
// returns an error that is both ErrCanceled and ctx.Err(), and the runtime it was opening is
// closed as soon as its open ends.
func Open(ctx context.Context, opts Options) (*Runtime, error) {
	const fn = "sl_runtime_open"
	if err := notBegun(ctx, fn); err != nil {
		return nil, err
	}
	if opts.BusyTimeout < 0 || opts.BusyTimeout/time.Millisecond > 1<<31-1 {
		return nil, errorf(C.SL_EINVAL, fn, "BusyTimeout %v is out of range", opts.BusyTimeout)
	}
	var path *C.char
	if opts.Path != "" {
		var err error
		if path, err = cString(fn, "Path", opts.Path); err != nil {
			return nil, err
		}
	}
	c := new(C.sl_runtime_options)
	C.sl_runtime_options_init(c)
	c.db_path = path
	c.durability = C.int(opts.Durability)
	c.busy_timeout_ms = C.int(opts.BusyTimeout / time.Millisecond)
	c.loop_mode = C.SL_LOOP_THREAD
	if opts.ManualClock {
		c.clock = C.SL_CLOCK_MANUAL
	}
	if opts.ReadOnly {
		c.read_only = 1
	}

	var rt *C.sl_runtime
	err := await(ctx, fn, func() error {
		defer freeAll(path)
		// The open's message is the calling thread's: stay on it until it is read.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if rc := C.sl_runtime_open(c, &rt); rc != 0 {
			err := newError(rc, fn, C.GoString(C.sl_runtime_errmsg(rt)))
			C.sl_runtime_close(rt)
			return err
		}
		return nil
	}, func(err error) {
		if err == nil {
			C.sl_runtime_close(rt)
		}
	})
	if err != nil {
		return nil, err
	}
	r := &Runtime{
		rt:       rt,
		onPanic:  opts.OnPanic,
		subs:     map[*Subscription]struct{}{},
		refusals: map[int]error{},
		done:     make(chan struct{}),
	}
	if err := r.registerTarget(closeSentinelTarget, r); err != nil {
		C.sl_runtime_close(rt)
		return nil, err
	}
	return r, nil
}

// Start seeds saga ids from the log, runs start-up recovery (sagas the log shows unfinished
// are marked failed_compensation), then takes events; events published before it are
// handled in order once recovery is done. It returns once recovery is done.
//
// If ctx is done first, Start returns an error that is both ErrCanceled and ctx.Err(), and
// the start goes on: the runtime takes events once recovery is done. Close it to give up on
// it.
func (r *Runtime) Start(ctx context.Context) error {
	const fn = "sl_runtime_start"
	if err := notBegun(ctx, fn); err != nil {
		return err
	}
	return r.await(ctx, fn, func() error {
		return r.call(fn, func() C.int { return C.sl_runtime_start(r.rt) })
	}, nil)
}

// Close stops taking events, ends every subscription, shuts every lane down (queued jobs end
// cancelled, running ones see their context done and are waited for), closes the loop and
// the log, and releases every Go value the library held. Sagas in flight stay running in the
// log for the next Start's recovery.
//
// It returns nil once the runtime is closed, and an error that is ErrClosed when Close or
// Shutdown was called before. Called from a callback, it cannot wait for the close, which
// needs the callback to return: it returns nil at once and the close finishes on a sagalane
// thread once the callback returned; Closed() tells when (do not wait for it in the
// callback).
func (r *Runtime) Close() error {
	if err := r.beginClose(); err != nil {
		return err
	}
	r.close()
	return nil
}

// Shutdown closes the runtime as Close does, and waits for the close to finish until ctx is
// done: it returns nil once the runtime is closed and every Go value the library held was
// released, or an error that is both ErrCanceled and ctx.Err() when ctx is done first (the
// close goes on; Closed() tells when it finished). Close's jobs wait for the running lane
// jobs, which is what a deadline on ctx bounds. An error that is ErrClosed when Close or
// Shutdown was called before. Never from a callback: the close cannot finish before the
// callback returns.
func (r *Runtime) Shutdown(ctx context.Context) error {
	if err := r.beginClose(); err != nil {
		return err
	}
	go r.close()
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		return gaveUp("sl_runtime_close", ctx.Err())
	}
}

// beginClose marks the runtime closing, so that calls fail with ErrClosed from here on, or
// says it already was.
func (r *Runtime) beginClose() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closing {
		return newError(C.SL_ECLOSED, "sl_runtime_close", "the runtime was closed before")
	}
	r.closing = true
	r.closed.Store(true)
	// A channel subscriber blocked on a reader that has gone would hold the close up.
	for sub := range r.subs {
		sub.stopOnce.Do(func() { close(sub.stop) })
	}
	return nil
}

func (r *Runtime) close() {
	C.sl_runtime_close(r.rt)
	// From a callback the close is still under way; the last release finishes it.
	r.mu.Lock()
	r.finishIfIdleLocked()
	r.mu.Unlock()
}

// Closed is closed once the close (Close or Shutdown) has finished and every Go value the
// library held has been released.
func (r *Runtime) Closed() <-chan struct{} { return r.done }

// Health is nil while the log can record sagas' ends; ErrUnhealthy (with the reason) once a
// terminal row could not be written, after which new sagas are refused.
func (r *Runtime) Health() error {
	return r.call("sl_runtime_health", func() C.int { return C.sl_runtime_health(r.rt) })
}

// AdvanceTime moves a ManualClock runtime's time forward by d, firing every timer that falls
// due (saga deadlines, retry back-offs), and returns once they ran; from a loop-thread
// callback it fires them at once. If ctx is done first it returns an error that is both
// ErrCanceled and ctx.Err(), and the timers still fire.
func (r *Runtime) AdvanceTime(ctx context.Context, d time.Duration) error {
	const fn = "sl_runtime_advance_time"
	if err := notBegun(ctx, fn); err != nil {
		return err
	}
	if d < 0 {
		return errorf(C.SL_EINVAL, fn, "cannot advance time by %v", d)
	}
	return r.await(ctx, fn, func() error {
		return r.call(fn, func() C.int { return C.sl_runtime_advance_time(r.rt, C.uint64_t(d/time.Millisecond)) })
	}, nil)
}

// call runs fn, a C call on r, and turns a failure into an *Error with the detail the
// library gave. The detail is per thread, so the goroutine stays on its thread until it is
// read.
func (r *Runtime) call(fn string, f func() C.int) error {
	if r.closed.Load() {
		return errClosed(fn)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if rc := f(); rc != 0 {
		return newError(rc, fn, C.GoString(C.sl_runtime_errmsg(r.rt)))
	}
	return nil
}

func errClosed(fn string) *Error { return newError(C.SL_ECLOSED, fn, "the runtime is closed") }

// ---- Contexts ---------------------------------------------------------------------------

// notBegun is the error for a call whose ctx is done before it began, or nil.
func notBegun(ctx context.Context, fn string) error {
	err := ctx.Err()
	if err == nil {
		return nil
	}
	e := newError(C.SL_ECANCELED, fn, "not called: "+err.Error())
	e.cause = err
	return e
}

// gaveUp is the error for a call that stopped waiting because its context was done.
func gaveUp(fn string, cause error) error {
	e := newError(C.SL_ECANCELED, fn, "gave up waiting: "+cause.Error()+"; the call goes on")
	e.cause = cause
	return e
}

// await runs call (a C call that may block, followed by whatever must happen once it
// returned, such as freeing the C memory it borrowed) and waits for it until ctx is done.
// The C API cannot interrupt such a call, so when ctx is done first await returns gaveUp's
// error, and call goes on, on a goroutine of its own that ends with it; abandon (which may
// be nil) then runs there with call's error, to release what the call made that nobody will
// use. With a ctx that is never done, call runs on the calling goroutine.
func await(ctx context.Context, fn string, call func() error, abandon func(error)) error {
	if ctx.Done() == nil {
		return call()
	}
	return awaitOnGoroutine(ctx, fn, call, abandon)
}

// await is the package's await for a call on r, but that on the loop thread (a loop-thread
// callback calling CancelSaga, say) the call runs there: the C API then does what it must at
// once, where a goroutine waiting for the loop would wait for this very callback.
func (r *Runtime) await(ctx context.Context, fn string, call func() error, abandon func(error)) error {
	if ctx.Done() == nil || r.onLoopThread() {
		return call()
	}
	return awaitOnGoroutine(ctx, fn, call, abandon)
}

// sawLoopThread notes the thread a loop-thread callback runs on.
func (r *Runtime) sawLoopThread() {
	if r != nil && r.loopThread.Load() == 0 {
		r.loopThread.Store(int64(threadID()))
	}
}

func (r *Runtime) onLoopThread() bool {
	loop := r.loopThread.Load()
	if loop == 0 {
		return false
	}
	// A goroutine other than a callback's never runs on the loop thread, which C made:
	// whichever thread it is on, the answer is the same.
	return int64(threadID()) == loop
}

func awaitOnGoroutine(ctx context.Context, fn string, call func() error, abandon func(error)) error {
	var (
		mu        sync.Mutex
		finished  bool
		abandoned bool
		result    error
	)
	done := make(chan struct{})
	go func() {
		err := call()
		mu.Lock()
		defer mu.Unlock()
		if abandoned {
			if abandon != nil {
				abandon(err)
			}
			return
		}
		finished, result = true, err
		close(done)
	}()
	select {
	case <-done:
		return result
	case <-ctx.Done():
	}
	mu.Lock()
	defer mu.Unlock()
	if finished {
		return result
	}
	abandoned = true
	return gaveUp(fn, ctx.Err())
}

// ---- Handles ----------------------------------------------------------------------------

// newHandle makes the cgo.Handle the C side will hold for v.
func (r *Runtime) newHandle(v any) C.uintptr_t {
	r.mu.Lock()
	r.handles++
	r.mu.Unlock()
	liveHandles.Add(1)
	return C.uintptr_t(cgo.NewHandle(v))
}

// deleteHandle deletes a handle the C side gave back (or never took, when the call that
// would have taken it failed).
func (r *Runtime) deleteHandle(h C.uintptr_t) {
	cgo.Handle(h).Delete()
	liveHandles.Add(-1)
	r.mu.Lock()
	r.handles--
	r.finishIfIdleLocked()
	r.mu.Unlock()
}

func (r *Runtime) finishIfIdleLocked() {
	if r.closing && r.handles == 0 && !r.finished {
		r.finished = true
		close(r.done)
	}
}

// handleValue is the value behind a handle the C side passed to a callback.
func handleValue(h C.uintptr_t) any { return cgo.Handle(h).Value() }

// releaseHandle runs when the close sentinel's release callback does: the close is over, so
// no subscription will deliver again, and no saga start will call back.
func (r *Runtime) releaseHandle() {
	r.mu.Lock()
	subs := make([]*Subscription, 0, len(r.subs))
	for sub := range r.subs {
		subs = append(subs, sub)
	}
	r.subs = map[*Subscription]struct{}{}
	r.subsOver = true
	r.mu.Unlock()
	for _, sub := range subs {
		sub.release()
	}
	r.sweepStartEntries()
	r.deleteHandle(r.sentinel)
}

// ---- Panics -----------------------------------------------------------------------------

// reportPanic hands a recovered panic to OnPanic (or standard error). r may be nil when the
// callback could not even find its runtime.
func (r *Runtime) reportPanic(callback string, value any) *PanicError {
	p := &PanicError{Callback: callback, Value: value, Stack: debug.Stack()}
	if r != nil && r.onPanic != nil {
		func() {
			defer func() {
				if v := recover(); v != nil {
					fmt.Fprintf(os.Stderr, "sagalane: panic in OnPanic: %v (reporting %v)\n", v, p)
				}
			}()
			r.onPanic(p)
		}()
	} else {
		fmt.Fprintf(os.Stderr, "%v\n%s", p, p.Stack)
	}
	return p
}

// ---- Strings ----------------------------------------------------------------------------

// cString copies s for C, an argument of the C function fn; the caller frees it. A NUL inside
// s would silently cut it short in C, so it is refused.
func cString(fn, what, s string) (*C.char, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return nil, errorf(C.SL_EINVAL, fn, "%s contains a NUL byte", what)
	}
	return C.CString(s), nil
}

// cJSON copies JSON text for C; "" is NULL, which the C API reads as null.
func cJSON(fn, what, s string) (*C.char, error) {
	if s == "" {
		return nil, nil
	}
	return cString(fn, what, s)
}

// freeAll frees C strings (NULL ones included).
func freeAll(ps ...*C.char) {
	for _, p := range ps {
		C.free(unsafe.Pointer(p))
	}
}

// threadID identifies the calling OS thread; callers lock the goroutine to it.
func threadID() int { return syscall.Gettid() }

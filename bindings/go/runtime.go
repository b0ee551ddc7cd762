package sagalane

// #cgo pkg-config: sagalane-static
// #include "glue.h"
import "C"

import (
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
	Path       string
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
	// thread. nil writes them to standard error.
	OnPanic func(*PanicError)
}

// PanicError is a panic recovered in a Go callback before it could reach C.
type PanicError struct {
	Callback string // which callback, e.g. `saga "x" Start` or `target "host"`
	Value    any    // what was passed to panic
	Stack    []byte
}

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

// Open opens a runtime: creates its loop and opens (creating and migrating) its log.
// Register saga types, triggers, targets and lanes, then call Start.
func Open(opts Options) (*Runtime, error) {
	var c C.sl_runtime_options
	C.sl_runtime_options_init(&c)
	if opts.Path != "" {
		path, err := cString("Path", opts.Path)
		if err != nil {
			return nil, err
		}
		defer C.free(unsafe.Pointer(path))
		c.db_path = path
	}
	c.durability = C.int(opts.Durability)
	if opts.BusyTimeout < 0 || opts.BusyTimeout/time.Millisecond > 1<<31-1 {
		return nil, errorf(C.SL_EINVAL, "BusyTimeout %v is out of range", opts.BusyTimeout)
	}
	c.busy_timeout_ms = C.int(opts.BusyTimeout / time.Millisecond)
	c.loop_mode = C.SL_LOOP_THREAD
	if opts.ManualClock {
		c.clock = C.SL_CLOCK_MANUAL
	}
	if opts.ReadOnly {
		c.read_only = 1
	}

	// The open's message is the calling thread's: stay on it until it is read.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var rt *C.sl_runtime
	if rc := C.sl_runtime_open(&c, &rt); rc != 0 {
		err := newError(rc, C.GoString(C.sl_runtime_errmsg(rt)))
		C.sl_runtime_close(rt)
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
func (r *Runtime) Start() error {
	return r.call(func() C.int { return C.sl_runtime_start(r.rt) })
}

// Close stops taking events, ends every subscription, shuts every lane down (queued jobs end
// cancelled, running ones see Cancelled() and are waited for), closes the loop and the log,
// and releases every Go value the library held. Sagas in flight stay running in the log for
// the next Start's recovery. Calling it again does nothing.
//
// Called from a callback, it returns at once and the close finishes on a sagalane thread
// once the callback returned; Closed() tells when.
func (r *Runtime) Close() error {
	r.mu.Lock()
	if r.closing {
		r.mu.Unlock()
		return nil
	}
	r.closing = true
	r.closed.Store(true)
	// A channel subscriber blocked on a reader that has gone would hold the close up.
	for sub := range r.subs {
		sub.stopOnce.Do(func() { close(sub.stop) })
	}
	r.mu.Unlock()

	C.sl_runtime_close(r.rt)
	// From a callback the close is still under way; the last release finishes it.
	r.mu.Lock()
	r.finishIfIdleLocked()
	r.mu.Unlock()
	return nil
}

// Closed is closed once Close has finished and every Go value the library held has been
// released.
func (r *Runtime) Closed() <-chan struct{} { return r.done }

// Health is nil while the log can record sagas' ends; ErrUnhealthy (with the reason) once a
// terminal row could not be written, after which new sagas are refused.
func (r *Runtime) Health() error {
	return r.call(func() C.int { return C.sl_runtime_health(r.rt) })
}

// AdvanceTime moves a ManualClock runtime's time forward by d, firing every timer that falls
// due (saga deadlines, retry back-offs), and returns once they ran. Not from a loop-thread
// callback.
func (r *Runtime) AdvanceTime(d time.Duration) error {
	if d < 0 {
		return errorf(C.SL_EINVAL, "cannot advance time by %v", d)
	}
	return r.call(func() C.int { return C.sl_runtime_advance_time(r.rt, C.uint64_t(d/time.Millisecond)) })
}

// call runs a C call on r and turns a failure into an *Error with the detail the library
// gave. The detail is per thread, so the goroutine stays on its thread until it is read.
func (r *Runtime) call(f func() C.int) error {
	if r.closed.Load() {
		return errClosed()
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if rc := f(); rc != 0 {
		return newError(rc, C.GoString(C.sl_runtime_errmsg(r.rt)))
	}
	return nil
}

func errClosed() *Error { return newError(C.SL_ECLOSED, "the runtime is closed") }

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
// no subscription will deliver again.
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

// cString copies s for C; the caller frees it. A NUL inside s would silently cut it short in
// C, so it is refused.
func cString(what, s string) (*C.char, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return nil, errorf(C.SL_EINVAL, "%s contains a NUL byte", what)
	}
	return C.CString(s), nil
}

// cJSON copies JSON text for C; "" is NULL, which the C API reads as null.
func cJSON(what, s string) (*C.char, error) {
	if s == "" {
		return nil, nil
	}
	return cString(what, s)
}

// freeAll frees C strings (NULL ones included).
func freeAll(ps ...*C.char) {
	for _, p := range ps {
		C.free(unsafe.Pointer(p))
	}
}

// threadID identifies the calling OS thread; callers lock the goroutine to it.
func threadID() int { return syscall.Gettid() }

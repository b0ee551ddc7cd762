package sagalane

// #include "glue.h"
import "C"

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"time"
	"unsafe"
)

// SagaContext is what a saga knows about itself during a callback.
type SagaContext struct {
	ID       uint64
	Type     string
	NextStep uint32 // the index the next issued step will get
	// Replaying is true while start-up recovery replays the saga's recorded history
	// (RecoverResume): the actions returned are checked against the log, not carried out.
	Replaying bool
}

// Saga is one running saga of a type defined in Go. Its methods run on the loop thread, one
// at a time, and must return quickly.
type Saga interface {
	// Start returns the first action. It is called just before the saga's running row is
	// written: the step it issues shares that commit and is dispatched once it is durable.
	Start(ctx SagaContext) Action
	// OnEvent returns the next action after ev: an echo of one of its commands (ev.SagaID
	// is ctx.ID) or an untagged event of a type in the SagaType's Interests.
	OnEvent(ctx SagaContext, ev Event) Action
}

// SagaType defines a kind of saga.
type SagaType struct {
	Name string // unique; stored in the log
	// New builds a saga from its input JSON ("null" when none). An error refuses the input:
	// StartSaga then fails with ErrRefused wrapping it. It runs on the goroutine that calls
	// StartSaga, or on the loop thread for a trigger, possibly concurrently.
	New func(input json.RawMessage) (Saga, error)
	// Interests are untagged event types these sagas want besides their echoes.
	Interests []string
	// Timeout is how long a saga may run before it fails with "saga timeout"; 0 means 5 s.
	Timeout time.Duration
	// Recovery is what Start does with a saga of this type a stopped process left unfinished
	// (see RecoveryPolicy); the zero value is RecoverMarkFailed.
	Recovery RecoveryPolicy
	// CompensationTimeout is how long a compensation waits for its answer unless its step
	// says; 0 means 30 s. The saga's Timeout does not cover its compensations.
	CompensationTimeout time.Duration
}

// RecoveryPolicy is what start-up recovery does with an unfinished saga (SL_RECOVERY_*).
type RecoveryPolicy int

const (
	// RecoverMarkFailed makes it failed_compensation, for an operator; nothing is dispatched.
	RecoverMarkFailed RecoveryPolicy = C.SL_RECOVERY_MARK_FAILED
	// RecoverCompensate undoes its succeeded steps, last first.
	RecoverCompensate RecoveryPolicy = C.SL_RECOVERY_COMPENSATE
	// RecoverResume rebuilds it with New from its stored input, replays its recorded step
	// results (SagaContext.Replaying), and dispatches its pending step again under the same
	// saga id and step. A replayed action that differs from the log fails it with a
	// determinism error.
	RecoverResume RecoveryPolicy = C.SL_RECOVERY_RESUME
)

type actionKind int

const (
	actionWait actionKind = iota
	actionIssue
	actionDone
	actionFail
	actionStep
)

// Action is what a saga does next. The zero value is Wait.
type Action struct {
	kind    actionKind
	target  string
	command string
	reason  string
}

// Issue sends commandJSON to target: "self" (published as an event tagged with the saga,
// typed by the command's "type" or "cmd" field), "lane:<name>", or a target registered with
// RegisterTarget. The step is durable before the command is dispatched; "saga_id" and
// "step" are added to an object command.
func Issue(target, commandJSON string) Action {
	return Action{kind: actionIssue, target: target, command: commandJSON}
}

// IssueStep sends the step described as JSON, the form declarative sagas use:
// {"target", "command", "timeout_ms", "idempotent", "retry", "compensation"}, where "retry"
// is {"max_attempts", "initial_backoff_ms", "max_backoff_ms", "multiplier", "jitter"} and
// "compensation" {"command", "target", "timeout_ms", "retry"}. A compensation runs, last
// first, when the saga fails after the step succeeded; retries need "idempotent": true.
func IssueStep(stepJSON string) Action {
	return Action{kind: actionStep, command: stepJSON}
}

// Done ends the saga as completed.
func Done() Action { return Action{kind: actionDone} }

// Fail ends the saga as failed for reason.
func Fail(reason string) Action { return Action{kind: actionFail, reason: reason} }

// Wait does nothing until the next event.
func Wait() Action { return Action{} }

// String describes the action, for logs and test failures: "issue COMMAND to TARGET",
// "done", "fail: REASON" or "wait".
func (a Action) String() string {
	switch a.kind {
	case actionIssue:
		return "issue " + a.command + " to " + a.target
	case actionStep:
		return "issue step " + a.command
	case actionDone:
		return "done"
	case actionFail:
		return "fail: " + a.reason
	}
	return "wait"
}

// apply sets a on the C action. A broken action (bad JSON, a NUL in a string) fails the saga
// with the reason; the library does the same for what it rejects.
func (a Action) apply(action *C.sl_action) {
	switch a.kind {
	case actionIssue:
		target, err := cString("sl_action_issue", "target", a.target)
		if err != nil {
			failAction(action, err.Error())
			return
		}
		command, err := cString("sl_action_issue", "command", a.command)
		if err != nil {
			freeAll(target)
			failAction(action, err.Error())
			return
		}
		C.sl_action_issue(action, target, command)
		freeAll(target, command)
	case actionStep:
		step, err := cString("sl_action_issue_step", "step", a.command)
		if err != nil {
			failAction(action, err.Error())
			return
		}
		// A step the library refuses fails the saga, with the reason.
		C.sl_action_issue_step(action, step)
		freeAll(step)
	case actionDone:
		C.sl_action_done(action)
	case actionFail:
		reason, err := cString("sl_action_fail", "reason", a.reason)
		if err != nil {
			failAction(action, err.Error())
			return
		}
		C.sl_action_fail(action, reason)
		freeAll(reason)
	}
}

func failAction(action *C.sl_action, reason string) {
	c := C.CString(reason)
	C.sl_action_fail(action, c)
	freeAll(c)
}

// sagaTypeEntry is the userdata of a registered saga type.
type sagaTypeEntry struct {
	r *Runtime
	t SagaType
	h C.uintptr_t
}

func (e *sagaTypeEntry) releaseHandle() { e.r.deleteHandle(e.h) }

// sagaEntry is the state of one saga: its handle lives from New to destroy.
type sagaEntry struct {
	typ  *sagaTypeEntry
	saga Saga
}

// RegisterSagaType registers a saga type, before or after Start.
func (r *Runtime) RegisterSagaType(t SagaType) error {
	const fn = "sl_saga_type_register"
	if t.New == nil {
		return errorf(C.SL_EINVAL, fn, "saga type %q has no New function", t.Name)
	}
	if t.Timeout < 0 || t.Timeout/time.Millisecond > 1<<32-1 {
		return errorf(C.SL_EINVAL, fn, "saga type %q: timeout %v is out of range", t.Name, t.Timeout)
	}
	if t.CompensationTimeout < 0 || t.CompensationTimeout/time.Millisecond > 1<<32-1 {
		return errorf(C.SL_EINVAL, fn, "saga type %q: compensation timeout %v is out of range", t.Name, t.CompensationTimeout)
	}
	name, err := cString(fn, "saga type name", t.Name)
	if err != nil {
		return err
	}
	defer freeAll(name)
	var interests **C.char
	if n := len(t.Interests); n > 0 {
		list := unsafe.Slice((**C.char)(C.calloc(C.size_t(n), C.size_t(unsafe.Sizeof((*C.char)(nil))))), n)
		defer func() {
			freeAll(list...)
			C.free(unsafe.Pointer(&list[0]))
		}()
		for i, interest := range t.Interests {
			if list[i], err = cString(fn, "interest", interest); err != nil {
				return err
			}
		}
		interests = &list[0]
	}
	entry := &sagaTypeEntry{r: r, t: t}
	entry.h = r.newHandle(entry)
	err = r.call(fn, func() C.int {
		return C.slgo_saga_type_register(r.rt, name, interests, C.size_t(len(t.Interests)),
			C.uint32_t(t.Timeout/time.Millisecond), C.int(t.Recovery), C.uint32_t(t.CompensationTimeout/time.Millisecond), entry.h)
	})
	if err != nil {
		r.deleteHandle(entry.h)
	}
	return err
}

// triggerEntry is the userdata of a trigger with a predicate.
type triggerEntry struct {
	r         *Runtime
	eventType string
	predicate func(payload json.RawMessage) bool
	h         C.uintptr_t
}

func (e *triggerEntry) releaseHandle() { e.r.deleteHandle(e.h) }

// AddTrigger starts a saga of type sagaType, with the event's payload as its input, for every
// published event of type eventType that predicate accepts (nil: every one). The predicate
// runs on the loop thread; a panic in it counts as false.
func (r *Runtime) AddTrigger(eventType, sagaType string, predicate func(payload json.RawMessage) bool) error {
	const fn = "sl_trigger_add"
	et, err := cString(fn, "event type", eventType)
	if err != nil {
		return err
	}
	st, err := cString(fn, "saga type", sagaType)
	if err != nil {
		freeAll(et)
		return err
	}
	defer freeAll(et, st)
	var h C.uintptr_t
	if predicate != nil {
		entry := &triggerEntry{r: r, eventType: eventType, predicate: predicate}
		entry.h = r.newHandle(entry)
		h = entry.h
	}
	err = r.call(fn, func() C.int { return C.slgo_trigger_add(r.rt, et, st, h) })
	if err != nil && h != 0 {
		r.deleteHandle(h)
	}
	return err
}

// LoadSagaTypes registers the saga types of a saga file (its JSON text; see
// docs/sagas-file.md) with their triggers, all or none, and returns how many it registered.
// An invalid file gives ErrInvalid, whose message lists every problem, one a line, with its
// line and column; a name already registered gives ErrExist.
func (r *Runtime) LoadSagaTypes(jsonText string) (int, error) {
	const fn = "sl_saga_types_load"
	text, err := cString(fn, "json text", jsonText)
	if err != nil {
		return 0, err
	}
	defer freeAll(text)
	var loaded C.int
	err = r.call(fn, func() C.int { return C.sl_saga_types_load(r.rt, text, &loaded) })
	return int(loaded), err
}

// SagaState is a saga's state, as WaitSaga and OnEnd report it.
type SagaState int

const (
	SagaRunning      SagaState = C.SL_SAGA_RUNNING      // unfinished: start-up recovery acts on it
	SagaCompensating SagaState = C.SL_SAGA_COMPENSATING // unfinished
	SagaCompleted    SagaState = C.SL_SAGA_COMPLETED    // final: succeeded
	SagaFailed       SagaState = C.SL_SAGA_FAILED       // final: failed with nothing to compensate
	// SagaFailedCompensation is final, but needs an operator: a compensation failed, or
	// start-up recovery found the saga interrupted.
	SagaFailedCompensation SagaState = C.SL_SAGA_FAILED_COMPENSATION
	SagaCompensated        SagaState = C.SL_SAGA_COMPENSATED // final: undone
)

// String is the state's name as the log writes it (SagaRecord.State): "running",
// "compensating", "completed", "failed", "failed_compensation" or "compensated".
func (s SagaState) String() string {
	switch s {
	case SagaRunning:
		return "running"
	case SagaCompensating:
		return "compensating"
	case SagaCompleted:
		return "completed"
	case SagaFailed:
		return "failed"
	case SagaFailedCompensation:
		return "failed_compensation"
	case SagaCompensated:
		return "compensated"
	}
	return fmt.Sprintf("SagaState(%d)", int(s))
}

// SagaEnd is how a saga ended.
type SagaEnd struct {
	SagaID uint64
	State  SagaState // a final state
	Reason string    // why it failed; "" when it completed
	// Durable says whether the log holds this end. From OnEnd it is false when the
	// terminal row could not be written (Health then reports ErrUnhealthy). WaitSaga cannot
	// tell for one saga: it says true while the runtime is healthy (a row that could not be
	// written makes it unhealthy before any waiter hears of the end), false once it is not.
	Durable bool
}

// StartOption is an option of StartSaga.
type StartOption func(*startOptions)

type startOptions struct {
	room  time.Duration
	onEnd func(SagaEnd)
	key   string
}

// IdempotencyKey makes StartSaga start nothing while a saga row holding key exists (started
// by this process or an earlier one, until a vacuum deletes it): it returns that saga's id.
// Two goroutines racing with one key get one saga.
func IdempotencyKey(key string) StartOption {
	return func(o *startOptions) { o.key = key }
}

// WaitForRoom makes StartSaga wait for room when too many sagas (1024) wait for their
// running rows, instead of failing at once with ErrAgain: for up to timeout, or, with a
// negative timeout, for as long as its context allows. The context's deadline bounds the
// wait either way.
func WaitForRoom(timeout time.Duration) StartOption {
	return func(o *startOptions) { o.room = timeout }
}

// OnEnd makes StartSaga call fn once the saga ended, on the loop thread: fn must return
// quickly, and a panic in it is reported to Options.OnPanic. It is called too when StartSaga
// gave up waiting (its context ended) but the saga started after all; never for a saga that
// did not start, nor for one still in flight when the runtime closes.
func OnEnd(fn func(SagaEnd)) StartOption {
	return func(o *startOptions) { o.onEnd = fn }
}

// startEntry is the userdata of a saga start with an OnEnd function.
type startEntry struct {
	r     *Runtime
	onEnd func(SagaEnd)
}

// starts holds every startEntry the C side may still call back, by handle. sagalane gives
// nothing back for a saga still in flight when the runtime closes (neither its end nor its
// release), so the close sweeps its runtime's entries; the release trampoline looks its
// handle up here rather than in cgo, so that a release after the sweep finds nothing.
var starts = struct {
	sync.Mutex
	m map[C.uintptr_t]*startEntry
}{m: map[C.uintptr_t]*startEntry{}}

func (r *Runtime) newStartEntry(onEnd func(SagaEnd)) C.uintptr_t {
	e := &startEntry{r: r, onEnd: onEnd}
	h := r.newHandle(e)
	starts.Lock()
	starts.m[h] = e
	starts.Unlock()
	return h
}

// takeStartEntry removes h's entry, and deletes its handle, if it is still there.
func takeStartEntry(h C.uintptr_t) {
	starts.Lock()
	e := starts.m[h]
	delete(starts.m, h)
	starts.Unlock()
	if e != nil {
		e.r.deleteHandle(h)
	}
}

// sweepStartEntries deletes what is left of r's start entries once its close is over.
func (r *Runtime) sweepStartEntries() {
	var left []C.uintptr_t
	starts.Lock()
	for h, e := range starts.m {
		if e.r == r {
			left = append(left, h)
			delete(starts.m, h)
		}
	}
	starts.Unlock()
	for _, h := range left {
		r.deleteHandle(h)
	}
}

// roomSlice is the longest single wait for room, or for a saga's end, when a context can
// be cancelled: the C calls cannot be interrupted, so a call left behind by a context that
// ended lasts at most this long.
const roomSlice = time.Second

// millis is d in whole milliseconds, rounded up so that a wait never ends early, and
// clamped to what a C int holds; 0 for d <= 0.
func millis(d time.Duration) C.int {
	if d <= 0 {
		return 0
	}
	ms := (d + time.Millisecond - 1) / time.Millisecond
	if ms > math.MaxInt32 {
		return math.MaxInt32
	}
	return C.int(ms)
}

// StartSaga starts a saga of type typeName: runs the type's New on this goroutine, and
// returns the saga's id once its running row is durable (from then on the id names that
// saga in the log, also after a crash); SagaStarted and the saga's Start follow on the loop.
// inputJSON "" is null.
//
// Past 1024 sagas waiting for their running rows it fails at once with ErrAgain, unless
// WaitForRoom says to wait. OnEnd hears how the saga ended. Other errors: ErrNotFound (no
// such type), ErrRefused (New refused the input; it wraps New's error), ErrJSON,
// ErrUnhealthy, ErrInvalidState (not started, or called on the loop thread, in a callback:
// start the saga from a goroutine of its own there), or the log's error.
//
// If ctx is done first, it returns an error that is both ErrCanceled and ctx.Err(), and the
// saga may still start (OnEnd then still hears its end).
func (r *Runtime) StartSaga(ctx context.Context, typeName, inputJSON string, opts ...StartOption) (uint64, error) {
	const fn = "sl_saga_start_ex"
	if err := notBegun(ctx, fn); err != nil {
		return 0, err
	}
	var o startOptions
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	name, err := cString(fn, "saga type", typeName)
	if err != nil {
		return 0, err
	}
	input, err := cJSON(fn, "input", inputJSON)
	if err != nil {
		freeAll(name)
		return 0, err
	}
	var key *C.char
	if o.key != "" {
		if key, err = cString(fn, "idempotency key", o.key); err != nil {
			freeAll(name, input)
			return 0, err
		}
	}
	var id uint64
	err = r.await(ctx, fn, func() error {
		defer freeAll(name, input, key)
		var h C.uintptr_t
		if o.onEnd != nil {
			h = r.newStartEntry(o.onEnd)
		}
		var err error
		id, err = r.startSaga(ctx, fn, name, input, key, o.room, h)
		if err != nil && h != 0 {
			// sagalane calls nothing back for a start that failed.
			takeStartEntry(h)
		}
		return err
	}, nil)
	if err != nil {
		return 0, err
	}
	return id, nil
}

// startSaga calls sl_saga_start_ex until the saga is accepted or there is no point waiting
// for room any more: once when room is 0; in slices of at most roomSlice while a ctx that can
// be cancelled has not ended.
func (r *Runtime) startSaga(ctx context.Context, fn string, name, input, key *C.char, room time.Duration,
	h C.uintptr_t) (uint64, error) {
	var until time.Time
	if room > 0 {
		until = time.Now().Add(room)
	}
	if d, ok := ctx.Deadline(); ok && room != 0 && (until.IsZero() || d.Before(until)) {
		until = d
	}
	for {
		var wait C.int
		switch {
		case room == 0:
		case !until.IsZero():
			left := time.Until(until)
			if ctx.Done() != nil && left > roomSlice {
				left = roomSlice
			}
			wait = millis(left)
		case ctx.Done() == nil:
			wait = -1 // nothing can end the wait but room
		default:
			wait = millis(roomSlice)
		}
		id, err := r.startOnce(fn, name, input, key, wait, h)
		if room == 0 || !errors.Is(err, ErrAgain) {
			return id, err
		}
		if ctx.Err() != nil || (!until.IsZero() && !time.Now().Before(until)) {
			return 0, err
		}
	}
}

// startOnce is one sl_saga_start_ex, with why New refused when it did.
func (r *Runtime) startOnce(fn string, name, input, key *C.char, room C.int, h C.uintptr_t) (uint64, error) {
	var id C.uint64_t
	// New runs on this thread, inside the call: stay on it to find why it refused.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tid := threadID()
	r.mu.Lock()
	delete(r.refusals, tid)
	r.mu.Unlock()
	err := r.call(fn, func() C.int { return C.slgo_saga_start(r.rt, name, input, room, key, h, &id) })
	r.mu.Lock()
	refusal := r.refusals[tid]
	delete(r.refusals, tid)
	r.mu.Unlock()
	if err != nil {
		if e, ok := err.(*Error); ok && refusal != nil && e.Code == C.SL_EREFUSED {
			e.Message += ": " + refusal.Error()
			e.cause = refusal
		}
		return 0, err
	}
	return uint64(id), nil
}

// WaitSaga waits until saga id ended and says how: from memory for a saga in flight, from
// the log for one that ended already (any saga of the log, so an end is never missed).
// Errors: ErrNotFound (the log has no such saga), ErrInvalidState (unfinished but not in
// flight: it waits for the next Start's recovery; or called on the loop thread, in a
// callback), ErrClosed (also when the runtime closes during the wait).
//
// It waits as long as ctx allows: when ctx is done first, it returns at once an error that
// is both ErrCanceled and ctx.Err() (context.DeadlineExceeded for a deadline).
func (r *Runtime) WaitSaga(ctx context.Context, id uint64) (SagaEnd, error) {
	const fn = "sl_saga_wait"
	if err := notBegun(ctx, fn); err != nil {
		return SagaEnd{}, err
	}
	if ctx.Done() == nil || r.onLoopThread() {
		// Nothing can end the wait; or on the loop thread, where the C call refuses at once.
		return r.waitOnce(id, -1)
	}
	type result struct {
		end SagaEnd
		err error
	}
	// Buffered: the goroutine never waits for a reader that has gone.
	out := make(chan result, 1)
	go func() {
		for {
			slice := roomSlice
			if d, ok := ctx.Deadline(); ok {
				if left := time.Until(d); left < slice {
					slice = left
				}
			}
			if slice <= 0 {
				return // the deadline passed: ctx.Done() is closed or about to be
			}
			end, err := r.waitOnce(id, millis(slice))
			if !errors.Is(err, ErrTimedOut) {
				out <- result{end, err}
				return
			}
			if ctx.Err() != nil {
				return
			}
		}
	}()
	select {
	case res := <-out:
		return res.end, res.err
	case <-ctx.Done():
		select {
		case res := <-out:
			return res.end, res.err
		default:
		}
		e := newError(C.SL_ECANCELED, fn, "gave up waiting: "+ctx.Err().Error())
		e.cause = ctx.Err()
		return SagaEnd{}, e
	}
}

// waitOnce is one sl_saga_wait.
func (r *Runtime) waitOnce(id uint64, timeout C.int) (SagaEnd, error) {
	var state C.int
	var reason *C.char
	err := r.call("sl_saga_wait", func() C.int { return C.sl_saga_wait(r.rt, C.uint64_t(id), timeout, &state, &reason) })
	defer C.sl_free(unsafe.Pointer(reason))
	if err != nil {
		return SagaEnd{}, err
	}
	end := SagaEnd{SagaID: id, State: SagaState(state), Durable: r.Health() == nil}
	if reason != nil {
		end.Reason = C.GoString(reason)
	}
	return end, nil
}

// CancelSaga ends saga id as failed with reason "cancelled: <reason>", and returns once that
// end is durable: after a crash the saga reads failed, cancelled. On the loop thread (in a
// callback), where it cannot wait, the end is claimed at once (no other outcome can win once
// it returned nil) and written right after the callback. ErrNotFound when the saga is not in
// flight (it ended, or was cancelled already).
//
// If ctx is done first, it returns an error that is both ErrCanceled and ctx.Err(), and the
// cancellation may still take effect.
func (r *Runtime) CancelSaga(ctx context.Context, id uint64, reason string) error {
	const fn = "sl_saga_cancel"
	if err := notBegun(ctx, fn); err != nil {
		return err
	}
	c, err := cString(fn, "reason", reason)
	if err != nil {
		return err
	}
	return r.await(ctx, fn, func() error {
		defer freeAll(c)
		return r.call(fn, func() C.int { return C.sl_saga_cancel(r.rt, C.uint64_t(id), c) })
	}, nil)
}

// RetryCompensation runs a failed_compensation saga's compensations again, from the one that
// failed; it returns once the saga is compensating again, durably (sl_saga_retry_compensation).
// ErrInvalidState when the saga does not wait for an operator.
func (r *Runtime) RetryCompensation(ctx context.Context, id uint64, note string) error {
	return r.operatorCall(ctx, "sl_saga_retry_compensation", note, func(c *C.char) C.int {
		return C.sl_saga_retry_compensation(r.rt, C.uint64_t(id), c)
	})
}

// ResumeSaga sends a failed_compensation saga that never began compensating forward again, as
// RecoverResume would after a crash (sl_saga_resume).
func (r *Runtime) ResumeSaga(ctx context.Context, id uint64, note string) error {
	return r.operatorCall(ctx, "sl_saga_resume", note, func(c *C.char) C.int { return C.sl_saga_resume(r.rt, C.uint64_t(id), c) })
}

// ResolveSaga marks a failed_compensation saga resolved by hand, with note (sl_saga_resolve).
func (r *Runtime) ResolveSaga(ctx context.Context, id uint64, note string) error {
	return r.operatorCall(ctx, "sl_saga_resolve", note, func(c *C.char) C.int { return C.sl_saga_resolve(r.rt, C.uint64_t(id), c) })
}

func (r *Runtime) operatorCall(ctx context.Context, fn, note string, f func(*C.char) C.int) error {
	if err := notBegun(ctx, fn); err != nil {
		return err
	}
	var c *C.char
	if note != "" {
		var err error
		if c, err = cString(fn, "note", note); err != nil {
			return err
		}
	}
	return r.await(ctx, fn, func() error {
		defer freeAll(c)
		return r.call(fn, func() C.int { return f(c) })
	}, nil)
}

// LifecyclePosition is the position of the latest lifecycle event the log committed (0: none).
func (r *Runtime) LifecyclePosition() (uint64, error) {
	var position C.uint64_t
	err := r.call("sl_lifecycle_position", func() C.int { return C.sl_lifecycle_position(r.rt, &position) })
	return uint64(position), err
}

// LifecycleEventsJSON is up to limit lifecycle events after position after, in order, as the
// log's JSON array of {"position", "saga_id", "type", "payload", "at"} (sl_log_lifecycle).
// A reader that stores the position of the last event it handled and asks after it next time
// gets every event once, in order, also those written while it was away or before a crash.
func (r *Runtime) LifecycleEventsJSON(ctx context.Context, after uint64, limit int) (string, error) {
	const fn = "sl_log_lifecycle"
	if limit < 0 || limit > 1<<31-1 {
		return "", errorf(C.SL_EINVAL, fn, "limit %d is out of range", limit)
	}
	return r.logText(ctx, fn, func(out **C.char) C.int { return C.sl_log_lifecycle(r.rt, C.uint64_t(after), C.int(limit), out) })
}

// Command is a command a saga sent to a target registered with RegisterTarget.
type Command struct {
	SagaID uint64
	Step   uint32
	JSON   json.RawMessage // the command, with "saga_id" and "step" added
}

// targetEntry is the userdata of a registered target.
type targetEntry struct {
	r    *Runtime
	name string
	fn   func(Command) error
	h    C.uintptr_t
}

func (e *targetEntry) releaseHandle() { e.r.deleteHandle(e.h) }

// RegisterTarget registers fn under name (no ':') as a target of sagas' commands. fn runs on
// the loop thread and must hand the command off and return quickly; answer later with
// Publish(type, cmd.SagaID, payload) (the echo the saga waits for) or StepFail. An error (or
// a panic) fails the saga at once ("target refused").
func (r *Runtime) RegisterTarget(name string, fn func(Command) error) error {
	if fn == nil {
		return errorf(C.SL_EINVAL, "sl_target_register", "target %q has no function", name)
	}
	return r.registerTarget(name, &targetEntry{r: r, name: name, fn: fn})
}

// registerTarget registers a target whose userdata is v: a *targetEntry, or the runtime
// itself for the close sentinel.
func (r *Runtime) registerTarget(name string, v any) error {
	const fn = "sl_target_register"
	c, err := cString(fn, "target name", name)
	if err != nil {
		return err
	}
	defer freeAll(c)
	h := r.newHandle(v)
	if e, ok := v.(*targetEntry); ok {
		e.h = h
	} else {
		r.sentinel = h
	}
	err = r.call(fn, func() C.int { return C.slgo_target_register(r.rt, c, h) })
	if err != nil {
		r.deleteHandle(h)
	}
	return err
}

// StepFail reports that step of saga sagaID failed: the saga ends failed with
// "action failed: <reason>". Safe from any goroutine.
func (r *Runtime) StepFail(sagaID uint64, step uint32, reason string) error {
	const fn = "sl_step_fail"
	c, err := cString(fn, "reason", reason)
	if err != nil {
		return err
	}
	defer freeAll(c)
	return r.call(fn, func() C.int { return C.sl_step_fail(r.rt, C.uint64_t(sagaID), C.uint32_t(step), c) })
}

// refuse keeps why New refused, for the StartSaga running on this thread.
func (r *Runtime) refuse(err error) {
	tid := threadID()
	r.mu.Lock()
	r.refusals[tid] = err
	r.mu.Unlock()
}

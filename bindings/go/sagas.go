package sagalane

// #include "glue.h"
import "C"

import (
	"context"
	"encoding/json"
	"runtime"
	"time"
	"unsafe"
)

// SagaContext is what a saga knows about itself during a callback.
type SagaContext struct {
	ID       uint64
	Type     string
	NextStep uint32 // the index the next issued step will get
}

// Saga is one running saga of a type defined in Go. Its methods run on the loop thread, one
// at a time, and must return quickly.
type Saga interface {
	// Start returns the first action, once the saga's running row is durable.
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
}

type actionKind int

const (
	actionWait actionKind = iota
	actionIssue
	actionDone
	actionFail
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
			C.uint32_t(t.Timeout/time.Millisecond), entry.h)
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

// StartSaga starts a saga of type typeName now: runs the type's New on this goroutine,
// allocates the id and returns it; the running row, SagaStarted and Start follow on the
// loop. inputJSON "" is null.
func (r *Runtime) StartSaga(typeName, inputJSON string) (uint64, error) {
	const fn = "sl_saga_start"
	name, err := cString(fn, "saga type", typeName)
	if err != nil {
		return 0, err
	}
	input, err := cJSON(fn, "input", inputJSON)
	if err != nil {
		freeAll(name)
		return 0, err
	}
	defer freeAll(name, input)
	var id C.uint64_t
	// New runs on this thread, inside the call: stay on it to find why it refused.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tid := threadID()
	r.mu.Lock()
	delete(r.refusals, tid)
	r.mu.Unlock()
	err = r.call(fn, func() C.int { return C.sl_saga_start(r.rt, name, input, &id) })
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

// CancelSaga ends saga id as failed with reason "cancelled: <reason>". It waits for the
// loop to take the cancellation; once it returned nil no other outcome can win. ErrNotFound
// when the saga is not in flight (it ended, or was cancelled already).
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

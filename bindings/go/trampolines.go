package sagalane

// The functions the C glue (glue.c) calls. cgo allows only declarations in the preamble of
// a file with //export, so they live here on their own. Each one recovers every panic: a Go
// panic must never unwind into C.

// #include "glue.h"
import "C"

import (
	"encoding/json"
	"fmt"
	"time"
)

// releaser is a userdata whose release callback deletes its handle.
type releaser interface{ releaseHandle() }

// recoverLost recovers a panic in a callback that could not find its runtime (a handle the
// library passed back after it was released, which it must never do).
func recoverLost(callback string) {
	if v := recover(); v != nil {
		(*Runtime)(nil).reportPanic(callback, v)
	}
}

//export goslEvent
func goslEvent(h C.uintptr_t, event *C.sl_event) {
	defer recoverLost("subscriber")
	handleValue(h).(*Subscription).deliver(event)
}

//export goslLifecycle
func goslLifecycle(h C.uintptr_t, event *C.sl_lifecycle_event) {
	defer recoverLost("lifecycle subscriber")
	handleValue(h).(*Subscription).deliverLifecycle(event)
}

//export goslRelease
func goslRelease(h C.uintptr_t) {
	defer recoverLost("release")
	handleValue(h).(releaser).releaseHandle()
}

//export goslSagaEnded
func goslSagaEnded(h C.uintptr_t, end *C.sl_saga_end) {
	defer recoverLost("saga end")
	starts.Lock()
	e := starts.m[h]
	starts.Unlock()
	if e == nil {
		return
	}
	e.r.sawLoopThread()
	se := SagaEnd{SagaID: uint64(end.saga_id), State: SagaState(end.state), Durable: end.durable != 0}
	if end.reason != nil {
		se.Reason = C.GoString(end.reason)
	}
	defer func() {
		if v := recover(); v != nil {
			e.r.reportPanic(fmt.Sprintf("OnEnd of saga %d", se.SagaID), v)
		}
	}()
	e.onEnd(se)
}

//export goslSagaStartRelease
func goslSagaStartRelease(h C.uintptr_t) {
	defer recoverLost("saga start release")
	takeStartEntry(h)
}

//export goslSagaCreate
func goslSagaCreate(h C.uintptr_t, input *C.char, state *C.uintptr_t) (rc C.int) {
	var t *sagaTypeEntry
	defer func() {
		if v := recover(); v != nil {
			if t == nil {
				(*Runtime)(nil).reportPanic("saga New", v)
			} else {
				t.r.refuse(t.r.reportPanic(fmt.Sprintf("saga %q New", t.t.Name), v))
			}
			rc = C.SL_EREFUSED
		}
	}()
	t = handleValue(h).(*sagaTypeEntry)
	saga, err := t.t.New(json.RawMessage(C.GoString(input)))
	if err == nil && saga == nil {
		err = errorf(C.SL_EINVAL, "sl_saga_start", "saga type %q: New returned no saga and no error", t.t.Name)
	}
	if err != nil {
		t.r.refuse(err)
		return codeOf(err, C.SL_EREFUSED)
	}
	*state = t.r.newHandle(&sagaEntry{typ: t, saga: saga})
	return 0
}

//export goslSagaDestroy
func goslSagaDestroy(h C.uintptr_t, state C.uintptr_t) {
	defer recoverLost("saga destroy")
	handleValue(h).(*sagaTypeEntry).r.deleteHandle(state)
}

//export goslSagaStart
func goslSagaStart(h C.uintptr_t, state C.uintptr_t, ctx *C.sl_saga_ctx, action *C.sl_action) {
	decide(state, ctx, action, "Start", func(s Saga, c SagaContext) Action { return s.Start(c) })
}

//export goslSagaOnEvent
func goslSagaOnEvent(h C.uintptr_t, state C.uintptr_t, ctx *C.sl_saga_ctx, event *C.sl_event, action *C.sl_action) {
	decide(state, ctx, action, "OnEvent", func(s Saga, c SagaContext) Action { return s.OnEvent(c, goEvent(event)) })
}

// decide asks a saga for its next action and sets it; a panic fails the saga.
func decide(state C.uintptr_t, ctx *C.sl_saga_ctx, action *C.sl_action, method string, f func(Saga, SagaContext) Action) {
	var next Action
	func() {
		var s *sagaEntry
		defer func() {
			if v := recover(); v != nil {
				callback := "saga " + method
				var r *Runtime
				if s != nil {
					r, callback = s.typ.r, fmt.Sprintf("saga %q %s", s.typ.t.Name, method)
				}
				next = Fail(r.reportPanic(callback, v).Error())
			}
		}()
		s = handleValue(state).(*sagaEntry)
		s.typ.r.sawLoopThread()
		next = f(s.saga, SagaContext{
			ID:        uint64(ctx.saga_id),
			Type:      C.GoString(ctx.type_name),
			NextStep:  uint32(ctx.next_step),
			Replaying: ctx.replaying != 0,
		})
	}()
	defer recoverLost("saga action")
	next.apply(action)
}

//export goslPredicate
func goslPredicate(h C.uintptr_t, payload *C.char) (accept C.int) {
	var t *triggerEntry
	defer func() {
		if v := recover(); v != nil {
			if t == nil {
				(*Runtime)(nil).reportPanic("trigger predicate", v)
			} else {
				t.r.reportPanic(fmt.Sprintf("trigger predicate for %q", t.eventType), v)
			}
			accept = 0
		}
	}()
	t = handleValue(h).(*triggerEntry)
	t.r.sawLoopThread()
	if t.predicate(json.RawMessage(C.GoString(payload))) {
		return 1
	}
	return 0
}

//export goslTarget
func goslTarget(h C.uintptr_t, sagaID C.uint64_t, step C.uint32_t, command *C.char) (rc C.int) {
	var t *targetEntry
	defer func() {
		if v := recover(); v != nil {
			if t == nil {
				(*Runtime)(nil).reportPanic("target", v)
			} else {
				t.r.reportPanic(fmt.Sprintf("target %q", t.name), v)
			}
			rc = C.SL_EREFUSED
		}
	}()
	var ok bool
	if t, ok = handleValue(h).(*targetEntry); !ok {
		// The close sentinel takes no commands.
		return C.SL_EREFUSED
	}
	t.r.sawLoopThread()
	err := t.fn(Command{SagaID: uint64(sagaID), Step: uint32(step), JSON: json.RawMessage(C.GoString(command))})
	if err != nil {
		return codeOf(err, C.SL_EREFUSED)
	}
	return 0
}

//export goslJobRun
func goslJobRun(h C.uintptr_t, ctx *C.sl_job_ctx) (rc C.int) {
	job := &RunningJob{ctx: ctx}
	jobCtx := newJobContext(ctx)
	var r *Runtime
	callback := "job"
	defer func() {
		// Before anything else: the C context is valid only until this returns.
		jobCtx.end()
		job.ctx = nil
		if v := recover(); v != nil {
			setResult(ctx, r.reportPanic(callback, v).Error())
			rc = C.SL_EJOBFAILED
		}
	}()
	var run JobFunc
	switch v := handleValue(h).(type) {
	case *jobEntry:
		r, run = v.r, v.run
	case *commandEntry:
		r, run, callback = v.r, v.fn, fmt.Sprintf("command handler of lane %q", v.lane)
	default:
		panic(fmt.Sprintf("a job's userdata is a %T", v))
	}
	result, err := run(jobCtx, job)
	if err != nil {
		setResult(ctx, err.Error())
		if isCancellation(err) {
			return C.SL_ECANCELED
		}
		return C.SL_EJOBFAILED
	}
	setResult(ctx, result)
	return 0
}

func setResult(ctx *C.sl_job_ctx, text string) {
	c := C.CString(text)
	C.sl_job_set_result(ctx, c)
	freeAll(c)
}

//export goslJobDone
func goslJobDone(h C.uintptr_t, outcome *C.sl_job_outcome) {
	defer recoverLost("job done")
	job := handleValue(h).(*jobEntry)
	defer job.r.deleteHandle(h)
	if job.done == nil {
		return
	}
	defer func() {
		if v := recover(); v != nil {
			job.r.reportPanic("job done", v)
		}
	}()
	o := JobOutcome{
		JobID:    C.GoString(outcome.job_id),
		State:    JobState(outcome.state),
		Text:     C.GoString(outcome.text),
		Attempts: int(outcome.attempts),
	}
	if job.invalid != "" && o.State == JobFailed {
		o.Text = job.invalid
	}
	job.done(o)
}

//export goslJobQueued
func goslJobQueued(h C.uintptr_t, rc C.int, submission *C.sl_submission) {
	defer recoverLost("job queued")
	entry := handleValue(h).(*queuedEntry)
	defer entry.r.deleteHandle(h)
	var sub Submission
	var err error
	if rc != 0 {
		err = newError(rc, "sl_lane_submit_async", C.GoString(C.sl_runtime_errmsg(entry.r.rt)))
		entry.r.deleteHandle(entry.job) // refused: its done never comes
	} else {
		sub = Submission{
			JobID:         C.GoString(submission.job_id),
			Position:      int(submission.position),
			EstimatedWait: time.Duration(submission.estimated_wait_ms) * time.Millisecond,
		}
	}
	if entry.queued == nil {
		return
	}
	defer func() {
		if v := recover(); v != nil {
			entry.r.reportPanic("job queued", v)
		}
	}()
	entry.queued(sub, err)
}

//export goslJobReconstruct
func goslJobReconstruct(h C.uintptr_t, record *C.sl_job_record, job *C.sl_job) (rc C.int) {
	// A panic in Reconstruct itself is reported (and refuses the row) in rebuild; this one
	// guards the rest.
	var e *reconstructEntry
	defer func() {
		if v := recover(); v != nil {
			if e == nil {
				(*Runtime)(nil).reportPanic("Reconstruct", v)
			} else {
				e.r.reportPanic(fmt.Sprintf("Reconstruct of lane %q", e.lane), v)
			}
			rc = 1
		}
	}()
	e = handleValue(h).(*reconstructEntry)
	rec := JobRecord{
		ID:       C.GoString(record.job_id),
		Caller:   C.GoString(record.caller),
		Priority: int(record.priority),
		Attempts: int(record.attempts),
	}
	if record.metadata != nil && record.metadata_length > 0 {
		rec.Metadata = C.GoBytes(record.metadata, C.int(record.metadata_length))
	}
	rebuilt, ok := e.rebuild(rec)
	if !ok {
		// Non-zero: the library marks the row failed and never runs it.
		return 1
	}
	e.fill(rebuilt, job)
	return 0
}

package sagalane_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	sagalane "github.com/sagalane/sagalane/bindings/go"
)

// waitTimeout bounds every wait for something the runtime does on its own threads.
const waitTimeout = 10 * time.Second

// ctx is the context of the calls a test does not mean to cancel.
var ctx = context.Background()

// recorder collects what a runtime's subscription delivers and the panics it reports.
type recorder struct {
	mu     sync.Mutex
	cond   *sync.Cond
	events []sagalane.Event
	panics []*sagalane.PanicError
}

func newRecorder() *recorder {
	rec := &recorder{}
	rec.cond = sync.NewCond(&rec.mu)
	return rec
}

func (rec *recorder) event(ev sagalane.Event) {
	rec.mu.Lock()
	rec.events = append(rec.events, ev)
	rec.cond.Broadcast()
	rec.mu.Unlock()
}

func (rec *recorder) panicked(p *sagalane.PanicError) {
	rec.mu.Lock()
	rec.panics = append(rec.panics, p)
	rec.cond.Broadcast()
	rec.mu.Unlock()
}

// waitFor waits until done holds for what was recorded, and fails the test after
// waitTimeout.
func (rec *recorder) waitFor(t *testing.T, what string, done func(events []sagalane.Event) bool) {
	t.Helper()
	timer := time.AfterFunc(waitTimeout, func() {
		rec.mu.Lock()
		rec.cond.Broadcast()
		rec.mu.Unlock()
	})
	defer timer.Stop()
	deadline := time.Now().Add(waitTimeout)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for !done(rec.events) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; events: %v", what, rec.events)
		}
		rec.cond.Wait()
	}
}

// terminal waits for saga id's SagaCompleted or SagaFailed event.
func (rec *recorder) terminal(t *testing.T, id uint64) sagalane.Event {
	t.Helper()
	var found sagalane.Event
	rec.waitFor(t, "the end of a saga", func(events []sagalane.Event) bool {
		for _, ev := range events {
			if ev.SagaID == id && (ev.Type == sagalane.EventSagaCompleted || ev.Type == sagalane.EventSagaFailed) {
				found = ev
				return true
			}
		}
		return false
	})
	return found
}

// panicsSeen is a copy of the panics reported so far.
func (rec *recorder) panicsSeen() []*sagalane.PanicError {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]*sagalane.PanicError(nil), rec.panics...)
}

// openRuntime opens a runtime whose events and panics go to a recorder. At the end of the
// test it closes it and checks that every handle was released.
func openRuntime(t *testing.T, opts sagalane.Options) (*sagalane.Runtime, *recorder) {
	t.Helper()
	rec := newRecorder()
	opts.OnPanic = rec.panicked
	rt, err := sagalane.Open(ctx, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { closeAndCheck(t, rt) })
	if _, err := rt.Subscribe(0, rec.event); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	return rt, rec
}

// closeAndCheck closes rt and checks that no cgo.Handle is left (of any runtime: the tests
// run one at a time).
func closeAndCheck(t *testing.T, rt *sagalane.Runtime) {
	t.Helper()
	closeRuntime(t, rt)
	if n := sagalane.LiveHandles(); n != 0 {
		t.Errorf("%d cgo.Handles live after Close", n)
	}
}

// closeRuntime closes rt and waits until it released every handle it gave the library. A
// runtime the test closed already must say so.
func closeRuntime(t *testing.T, rt *sagalane.Runtime) {
	t.Helper()
	select {
	case <-rt.Closed():
		if err := rt.Close(); !errors.Is(err, sagalane.ErrClosed) {
			t.Errorf("Close of a closed runtime: %v, want ErrClosed", err)
		}
		return
	default:
	}
	if err := rt.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	select {
	case <-rt.Closed():
	case <-time.After(waitTimeout):
		t.Fatalf("Closed() not closed after Close returned; %d handles live", sagalane.LiveHandles())
	}
}

func mustStart(t *testing.T, rt *sagalane.Runtime) {
	t.Helper()
	if err := rt.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
}

// sagaFuncs is a Saga made of two functions.
type sagaFuncs struct {
	start   func(sagalane.SagaContext) sagalane.Action
	onEvent func(sagalane.SagaContext, sagalane.Event) sagalane.Action
}

func (s sagaFuncs) Start(ctx sagalane.SagaContext) sagalane.Action { return s.start(ctx) }

func (s sagaFuncs) OnEvent(ctx sagalane.SagaContext, ev sagalane.Event) sagalane.Action {
	if s.onEvent == nil {
		return sagalane.Wait()
	}
	return s.onEvent(ctx, ev)
}

// sagaType is a SagaType whose every saga is s.
func sagaType(name string, s sagaFuncs) sagalane.SagaType {
	return sagalane.SagaType{Name: name, New: func(json.RawMessage) (sagalane.Saga, error) { return s, nil }}
}

// reason is the "reason" of a SagaFailed payload.
func reason(t *testing.T, ev sagalane.Event) string {
	t.Helper()
	var p struct {
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal(ev.Payload, &p); err != nil {
		t.Fatalf("payload %s: %v", ev.Payload, err)
	}
	return p.Reason
}

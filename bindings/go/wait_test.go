package sagalane_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sagalane "github.com/sagalane/sagalane/bindings/go"
)

// answered is a saga that waits for an event tagged with it: "Go" completes it, "Fail"
// fails it with the payload as the reason.
var answered = sagaFuncs{
	start: func(sagalane.SagaContext) sagalane.Action { return sagalane.Wait() },
	onEvent: func(ctx sagalane.SagaContext, ev sagalane.Event) sagalane.Action {
		switch {
		case ev.SagaID != ctx.ID:
			return sagalane.Wait()
		case ev.Type == "Go":
			return sagalane.Done()
		case ev.Type == "Fail":
			return sagalane.Fail(string(ev.Payload))
		}
		return sagalane.Wait()
	},
}

var quick = sagaFuncs{start: func(sagalane.SagaContext) sagalane.Action { return sagalane.Done() }}

func registerTypes(t *testing.T, rt *sagalane.Runtime, types map[string]sagaFuncs) {
	t.Helper()
	for name, s := range types {
		st := sagaType(name, s)
		st.Timeout = time.Minute
		if err := rt.RegisterSagaType(st); err != nil {
			t.Fatal(err)
		}
	}
}

// loopHolder registers the target "hold", which keeps the loop thread until release is
// closed, and the saga type "holder", which sends it a command. The test's cleanup releases
// the loop if the test did not.
func loopHolder(t *testing.T, rt *sagalane.Runtime) (holding <-chan struct{}, release func()) {
	t.Helper()
	held, released := make(chan struct{}), make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(released) }) }
	// Registered before openRuntime's cleanup runs (cleanups run last first).
	t.Cleanup(release)
	if err := rt.RegisterTarget("hold", func(sagalane.Command) error {
		close(held)
		<-released
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	registerTypes(t, rt, map[string]sagaFuncs{"holder": {start: func(sagalane.SagaContext) sagalane.Action {
		return sagalane.Issue("hold", `{}`)
	}}})
	return held, release
}

func TestSagaStateString(t *testing.T) {
	for state, want := range map[sagalane.SagaState]string{
		sagalane.SagaRunning:            "running",
		sagalane.SagaCompensating:       "compensating",
		sagalane.SagaCompleted:          "completed",
		sagalane.SagaFailed:             "failed",
		sagalane.SagaFailedCompensation: "failed_compensation",
		sagalane.SagaCompensated:        "compensated",
		sagalane.SagaState(42):          "SagaState(42)",
	} {
		if got := state.String(); got != want {
			t.Errorf("SagaState(%d).String() = %q, want %q", int(state), got, want)
		}
	}
}

func TestWaitSaga(t *testing.T) {
	rt, _ := openRuntime(t, sagalane.Options{})
	registerTypes(t, rt, map[string]sagaFuncs{"quick": quick, "answered": answered})
	mustStart(t, rt)

	id, err := rt.StartSaga(ctx, "quick", `{"n":1}`)
	if err != nil {
		t.Fatal(err)
	}
	// StartSaga returned, so the log has the saga already.
	if _, err := rt.LookupSaga(ctx, id); err != nil {
		t.Errorf("LookupSaga right after StartSaga: %v", err)
	}
	end, err := rt.WaitSaga(ctx, id)
	if err != nil || end != (sagalane.SagaEnd{SagaID: id, State: sagalane.SagaCompleted, Durable: true}) {
		t.Errorf("WaitSaga of a quick saga: %+v, %v", end, err)
	}
	// Asked again once it ended, the log answers, also with a context that has a deadline.
	short, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	if end, err := rt.WaitSaga(short, id); err != nil || end.State != sagalane.SagaCompleted {
		t.Errorf("WaitSaga of an ended saga: %+v, %v", end, err)
	}

	failing, err := rt.StartSaga(ctx, "answered", "")
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(20*time.Millisecond, func() { _ = rt.Publish("Fail", failing, `"no luck"`) })
	end, err = rt.WaitSaga(short, failing)
	if err != nil || end.State != sagalane.SagaFailed || !strings.Contains(end.Reason, "no luck") {
		t.Errorf("WaitSaga of a failing saga: %+v, %v", end, err)
	}

	cancelled, err := rt.StartSaga(ctx, "answered", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.CancelSaga(ctx, cancelled, "by the test"); err != nil {
		t.Fatal(err)
	}
	// CancelSaga returned once the end was durable: even a context already about to end
	// finds it.
	if end, err := rt.WaitSaga(short, cancelled); err != nil || end.State != sagalane.SagaFailed ||
		end.Reason != "cancelled: by the test" {
		t.Errorf("WaitSaga of a cancelled saga: %+v, %v", end, err)
	}

	if _, err := rt.WaitSaga(ctx, 424242); !errors.Is(err, sagalane.ErrNotFound) {
		t.Errorf("WaitSaga of no saga: %v, want ErrNotFound", err)
	}
	done, stop := context.WithCancel(ctx)
	stop()
	if _, err := rt.WaitSaga(done, id); !errors.Is(err, sagalane.ErrCanceled) || !errors.Is(err, context.Canceled) {
		t.Errorf("WaitSaga with a done context: %v, want ErrCanceled and context.Canceled", err)
	}
}

// A wait ends with its context: by its deadline, or when it is cancelled, even while the
// loop, which the C call needs, is held.
func TestWaitSagaContext(t *testing.T) {
	rt, _ := openRuntime(t, sagalane.Options{})
	registerTypes(t, rt, map[string]sagaFuncs{"answered": answered})
	holding, release := loopHolder(t, rt)
	mustStart(t, rt)
	id, err := rt.StartSaga(ctx, "answered", "")
	if err != nil {
		t.Fatal(err)
	}

	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := rt.WaitSaga(short, id); !errors.Is(err, sagalane.ErrCanceled) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitSaga past its deadline: %v, want ErrCanceled and context.DeadlineExceeded", err)
	}

	if _, err := rt.StartSaga(ctx, "holder", ""); err != nil {
		t.Fatal(err)
	}
	<-holding
	waiting, stop := context.WithCancel(ctx)
	results := make(chan error, 1)
	go func() {
		_, err := rt.WaitSaga(waiting, id)
		results <- err
	}()
	time.Sleep(20 * time.Millisecond)
	stop()
	select {
	case err := <-results:
		if !errors.Is(err, sagalane.ErrCanceled) || !errors.Is(err, context.Canceled) {
			t.Errorf("WaitSaga cancelled while the loop is held: %v, want ErrCanceled and context.Canceled", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("WaitSaga did not return when its context was cancelled")
	}
	release()

	// The end itself, with a context that has a deadline far away.
	if err := rt.Publish("Go", id, ""); err != nil {
		t.Fatal(err)
	}
	long, cancelLong := context.WithTimeout(ctx, waitTimeout)
	defer cancelLong()
	if end, err := rt.WaitSaga(long, id); err != nil || end.State != sagalane.SagaCompleted {
		t.Errorf("WaitSaga: %+v, %v", end, err)
	}
}

func TestStartSagaOnEnd(t *testing.T) {
	rt, rec := openRuntime(t, sagalane.Options{})
	registerTypes(t, rt, map[string]sagaFuncs{"quick": quick, "answered": answered})
	mustStart(t, rt)

	ends := make(chan sagalane.SagaEnd, 4)
	onEnd := sagalane.OnEnd(func(end sagalane.SagaEnd) { ends <- end })
	next := func(what string) sagalane.SagaEnd {
		t.Helper()
		select {
		case end := <-ends:
			return end
		case <-time.After(waitTimeout):
			t.Fatalf("OnEnd not called for %s", what)
		}
		return sagalane.SagaEnd{}
	}
	id, err := rt.StartSaga(ctx, "quick", "", onEnd)
	if err != nil {
		t.Fatal(err)
	}
	if end := next("a quick saga"); end != (sagalane.SagaEnd{SagaID: id, State: sagalane.SagaCompleted, Durable: true}) {
		t.Errorf("OnEnd of a quick saga: %+v", end)
	}
	failing, err := rt.StartSaga(ctx, "answered", "", onEnd, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Publish("Fail", failing, `"no luck"`); err != nil {
		t.Fatal(err)
	}
	if end := next("a failing saga"); end.SagaID != failing || end.State != sagalane.SagaFailed ||
		!strings.Contains(end.Reason, "no luck") || !end.Durable {
		t.Errorf("OnEnd of a failing saga: %+v", end)
	}

	// A start that fails calls nothing (and leaves no handle: the cleanup checks).
	if _, err := rt.StartSaga(ctx, "no_such_saga", "", onEnd); !errors.Is(err, sagalane.ErrNotFound) {
		t.Errorf("StartSaga of no type: %v, want ErrNotFound", err)
	}
	if _, err := rt.StartSaga(ctx, "quick", "{nope", onEnd); !errors.Is(err, sagalane.ErrJSON) {
		t.Errorf("StartSaga with bad JSON: %v, want ErrJSON", err)
	}

	// A panic in OnEnd is reported, and the saga's end stands.
	panicky, err := rt.StartSaga(ctx, "quick", "", sagalane.OnEnd(func(sagalane.SagaEnd) { panic("OnEnd panicked on purpose") }))
	if err != nil {
		t.Fatal(err)
	}
	if end, err := rt.WaitSaga(ctx, panicky); err != nil || end.State != sagalane.SagaCompleted {
		t.Errorf("WaitSaga of a saga whose OnEnd panics: %+v, %v", end, err)
	}
	rec.waitFor(t, "the OnEnd panic", func([]sagalane.Event) bool {
		for _, p := range rec.panics {
			if strings.Contains(p.Callback, "OnEnd") && p.Value == "OnEnd panicked on purpose" {
				return true
			}
		}
		return false
	})

	// Still in flight at the close: OnEnd is never called, and its handle goes with the
	// close (the cleanup checks that none is left).
	if _, err := rt.StartSaga(ctx, "answered", "", sagalane.OnEnd(func(end sagalane.SagaEnd) {
		t.Errorf("OnEnd called for a saga in flight at the close: %+v", end)
	})); err != nil {
		t.Fatal(err)
	}
	select {
	case end := <-ends:
		t.Errorf("OnEnd called once too often: %+v", end)
	default:
	}
}

// From the loop thread (a target) StartSaga and WaitSaga cannot wait: they refuse at once.
func TestStartAndWaitFromTheLoopThread(t *testing.T) {
	rt, _ := openRuntime(t, sagalane.Options{})
	registerTypes(t, rt, map[string]sagaFuncs{"quick": quick, "caller": {start: func(sagalane.SagaContext) sagalane.Action {
		return sagalane.Issue("caller", `{}`)
	}}})
	results := make(chan [2]error, 1)
	if err := rt.RegisterTarget("caller", func(cmd sagalane.Command) error {
		deadline, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		_, startErr := rt.StartSaga(deadline, "quick", "")
		_, waitErr := rt.WaitSaga(deadline, cmd.SagaID)
		results <- [2]error{startErr, waitErr}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	mustStart(t, rt)
	if _, err := rt.StartSaga(ctx, "caller", ""); err != nil {
		t.Fatal(err)
	}
	select {
	case errs := <-results:
		for i, what := range []string{"StartSaga", "WaitSaga"} {
			if !errors.Is(errs[i], sagalane.ErrInvalidState) {
				t.Errorf("%s on the loop thread: %v, want ErrInvalidState", what, errs[i])
			}
		}
	case <-time.After(waitTimeout):
		t.Fatal("StartSaga or WaitSaga on the loop thread did not return")
	}
}

// With the loop held, sagas cannot get their running rows: StartSaga waits, gives up with
// its context (the saga starting later all the same), and past 1024 waiting the launch queue
// is full: ErrAgain at once, after WaitForRoom's timeout, or room once the loop is free.
func TestStartSagaLaunchQueue(t *testing.T) {
	rt, _ := openRuntime(t, sagalane.Options{})
	registerTypes(t, rt, map[string]sagaFuncs{"quick": quick})
	holding, release := loopHolder(t, rt)
	mustStart(t, rt)
	if _, err := rt.StartSaga(ctx, "holder", ""); err != nil {
		t.Fatal(err)
	}
	<-holding

	// A start whose context ends while it waits for its row gives up; OnEnd still hears the
	// saga's end once it ran.
	late := make(chan sagalane.SagaEnd, 1)
	short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	_, err := rt.StartSaga(short, "quick", "", sagalane.OnEnd(func(end sagalane.SagaEnd) { late <- end }))
	wantGaveUp(t, "StartSaga while the loop is held", err, context.DeadlineExceeded)

	// Fill the queue (the start above holds one place) from goroutines that each wait for
	// their row; the surplus is refused at once.
	const limit, extra = 1024, 40
	var (
		wg       sync.WaitGroup
		started  atomic.Int64
		refused  atomic.Int64
		failures = make(chan error, limit+extra)
	)
	for i := 0; i < limit-1+extra; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := rt.StartSaga(ctx, "quick", "")
			switch {
			case err == nil:
				started.Add(1)
			case errors.Is(err, sagalane.ErrAgain):
				refused.Add(1)
			default:
				failures <- err
			}
		}()
	}
	deadline := time.Now().Add(waitTimeout)
	for refused.Load() < extra && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := refused.Load(); n != extra {
		t.Fatalf("%d starts refused with ErrAgain, want %d", n, extra)
	}
	if _, err := rt.StartSaga(ctx, "quick", ""); !errors.Is(err, sagalane.ErrAgain) {
		t.Errorf("StartSaga with the launch queue full: %v, want ErrAgain", err)
	}
	began := time.Now()
	if _, err := rt.StartSaga(ctx, "quick", "", sagalane.WaitForRoom(30*time.Millisecond)); !errors.Is(err, sagalane.ErrAgain) {
		t.Errorf("StartSaga waiting 30ms for room: %v, want ErrAgain", err)
	}
	if waited := time.Since(began); waited < 30*time.Millisecond {
		t.Errorf("StartSaga with WaitForRoom(30ms) gave up after %v", waited)
	}
	// Waiting for room as long as the context allows: a cancel ends it.
	cancellable, stop := context.WithCancel(ctx)
	time.AfterFunc(30*time.Millisecond, stop)
	_, err = rt.StartSaga(cancellable, "quick", "", sagalane.WaitForRoom(-1))
	wantGaveUp(t, "StartSaga waiting for room, cancelled", err, context.Canceled)

	// One that waits for room gets it once the loop is free.
	patient := make(chan error, 1)
	go func() {
		_, err := rt.StartSaga(ctx, "quick", "", sagalane.WaitForRoom(-1))
		patient <- err
	}()
	time.Sleep(20 * time.Millisecond)
	select {
	case err := <-patient:
		t.Fatalf("StartSaga waiting for room returned %v with the queue full", err)
	default:
	}
	release()
	wg.Wait()
	close(failures)
	for err := range failures {
		t.Errorf("StartSaga in the burst: %v", err)
	}
	if n := started.Load(); n != limit-1 {
		t.Errorf("%d sagas of the burst started, want %d", n, limit-1)
	}
	select {
	case err := <-patient:
		if err != nil {
			t.Errorf("StartSaga waiting for room: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("StartSaga waiting for room never got it")
	}
	select {
	case end := <-late:
		if end.State != sagalane.SagaCompleted {
			t.Errorf("the saga whose start gave up ended %+v", end)
		}
	case <-time.After(waitTimeout):
		t.Fatal("OnEnd not called for the saga whose start gave up")
	}
}

package sagalane_test

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	sagalane "github.com/sagalane/sagalane/bindings/go"
)

// wantGaveUp checks that err is what a call whose context ended returns: ErrCanceled and the
// context's own error at once.
func wantGaveUp(t *testing.T, what string, err, cause error) {
	t.Helper()
	if !errors.Is(err, sagalane.ErrCanceled) || !errors.Is(err, cause) {
		t.Errorf("%s: %v, want ErrCanceled and %v", what, err, cause)
	}
}

// A job's context is done once the job is interrupted, and its Err says so at once.
func TestJobContextDoneOnInterrupt(t *testing.T) {
	rt, _ := openRuntime(t, sagalane.Options{})
	mustStart(t, rt)
	lane, err := rt.CreateLane(ctx, "interruptible", sagalane.LaneOptions{Volatile: true})
	if err != nil {
		t.Fatal(err)
	}
	running := make(chan struct{})
	errBefore := make(chan error, 1)
	outcome := make(chan sagalane.JobOutcome, 1)
	_, err = lane.Submit(ctx, sagalane.Job{ID: "waits", Run: func(ctx context.Context, job *sagalane.RunningJob) (string, error) {
		errBefore <- ctx.Err()
		// A context derived from the job's is cancelled with it.
		derived, cancel := context.WithTimeout(ctx, time.Hour)
		defer cancel()
		close(running)
		select {
		case <-derived.Done():
			return "", derived.Err()
		case <-time.After(waitTimeout):
			return "never interrupted", nil
		}
	}}, func(o sagalane.JobOutcome) { outcome <- o })
	if err != nil {
		t.Fatal(err)
	}
	<-running
	if err := <-errBefore; err != nil {
		t.Errorf("ctx.Err() of a job not interrupted: %v", err)
	}
	interrupted := time.Now()
	if err := lane.Interrupt("waits"); err != nil {
		t.Fatal(err)
	}
	select {
	case o := <-outcome:
		if o.State != sagalane.JobCancelled {
			t.Errorf("interrupted job ended %+v, want cancelled", o)
		}
		if waited := time.Since(interrupted); waited > time.Second {
			t.Errorf("the job saw the interrupt only after %v", waited)
		}
	case <-time.After(2 * waitTimeout):
		t.Fatal("the interrupted job did not end")
	}
	if err := lane.Interrupt("waits"); !errors.Is(err, sagalane.ErrNotFound) {
		t.Errorf("Interrupt of a job that ended: %v, want ErrNotFound", err)
	}
}

// Once the job's function returned its context is done, so work it left behind stops; and
// no goroutine the binding started for a job outlives it.
func TestJobContextEndsWithTheJob(t *testing.T) {
	rt, _ := openRuntime(t, sagalane.Options{})
	mustStart(t, rt)
	lane, err := rt.CreateLane(ctx, "short", sagalane.LaneOptions{Volatile: true, MaxConcurrent: 4})
	if err != nil {
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()

	var left sync.WaitGroup
	leftErrs := make(chan error, 1)
	result, err := lane.SubmitAndWait(ctx, sagalane.Job{Run: func(ctx context.Context, _ *sagalane.RunningJob) (string, error) {
		left.Add(1)
		go func() {
			defer left.Done()
			<-ctx.Done()
			leftErrs <- ctx.Err()
		}()
		return "returned", nil
	}})
	if err != nil || result != "returned" {
		t.Fatalf("SubmitAndWait = %q, %v", result, err)
	}
	select {
	case err := <-leftErrs:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("ctx.Err() after the job returned: %v, want context.Canceled", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("the job's context was not done after it returned")
	}
	left.Wait()

	// Jobs that wait on Done start the binding's poller; those that finish first stop it.
	const jobs = 50
	for i := 0; i < jobs; i++ {
		_, err := lane.SubmitAndWait(ctx, sagalane.Job{Run: func(ctx context.Context, _ *sagalane.RunningJob) (string, error) {
			select {
			case <-ctx.Done():
				return "", ctx.Err()
			case <-time.After(time.Millisecond):
				return "done", nil
			}
		}})
		if err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(waitTimeout)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines after %d jobs, %d before:\n%s", runtime.NumGoroutine(), jobs+1, before,
				buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(time.Millisecond)
	}
}

// A call given a context that is already done does nothing and says why.
func TestDoneContextCallsNothing(t *testing.T) {
	done, cancel := context.WithCancel(context.Background())
	cancel()
	handles := sagalane.LiveHandles()
	_, err := sagalane.Open(done, sagalane.Options{})
	wantGaveUp(t, "Open", err, context.Canceled)
	if n := sagalane.LiveHandles(); n != handles {
		t.Errorf("%d handles after Open with a done context, %d before", n, handles)
	}

	rt, rec := openRuntime(t, sagalane.Options{ManualClock: true})
	waiter := sagaFuncs{start: func(sagalane.SagaContext) sagalane.Action { return sagalane.Wait() }}
	if err := rt.RegisterSagaType(sagaType("waiter", waiter)); err != nil {
		t.Fatal(err)
	}
	wantGaveUp(t, "Start", rt.Start(done), context.Canceled)
	if _, err := rt.StartSaga(ctx, "waiter", ""); !errors.Is(err, sagalane.ErrInvalidState) {
		t.Errorf("StartSaga after a Start with a done context: %v, want ErrInvalidState (not started)", err)
	}
	_, err = rt.CreateLane(done, "never", sagalane.LaneOptions{})
	wantGaveUp(t, "CreateLane", err, context.Canceled)
	if _, err := rt.FindLane("never"); !errors.Is(err, sagalane.ErrNotFound) {
		t.Errorf("FindLane of a lane created with a done context: %v, want ErrNotFound", err)
	}

	mustStart(t, rt)
	lane, err := rt.CreateLane(ctx, "lane", sagalane.LaneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan struct{}, 1)
	job := sagalane.Job{ID: "never", Run: func(context.Context, *sagalane.RunningJob) (string, error) {
		ran <- struct{}{}
		return "", nil
	}}
	_, err = lane.Submit(done, job, func(sagalane.JobOutcome) { t.Error("done called for a job never submitted") })
	wantGaveUp(t, "Submit", err, context.Canceled)
	id, err := rt.StartSaga(ctx, "waiter", "")
	if err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "SagaStarted", func(events []sagalane.Event) bool { return len(events) > 0 })
	wantGaveUp(t, "CancelSaga", rt.CancelSaga(done, id, "never"), context.Canceled)
	wantGaveUp(t, "AdvanceTime", rt.AdvanceTime(done, time.Hour), context.Canceled)
	_, err = rt.RecentSagas(done, 10)
	wantGaveUp(t, "RecentSagas", err, context.Canceled)
	_, err = rt.LookupSaga(done, id)
	wantGaveUp(t, "LookupSaga", err, context.Canceled)
	_, err = rt.Vacuum(done, 0)
	wantGaveUp(t, "Vacuum", err, context.Canceled)

	// None of them happened: the saga still runs, no timer fired, no job was queued.
	record, err := rt.LookupSaga(ctx, id)
	if err != nil || record.State != "running" {
		t.Errorf("saga after a CancelSaga and an AdvanceTime with a done context: %+v, %v", record, err)
	}
	if stats, err := lane.Stats(); err != nil || stats.Queued+stats.Running+int(stats.Completed) != 0 {
		t.Errorf("lane after a Submit with a done context: %+v, %v", stats, err)
	}
	if _, err := lane.Submit(ctx, job, nil); err != nil {
		t.Errorf("Submit of the same job id with a live context: %v", err)
	}
	select {
	case <-ran:
	case <-time.After(waitTimeout):
		t.Error("the job submitted with a live context did not run")
	}
}

// A call that waits stops waiting when its context ends, and what it started goes on.
func TestCancelSagaGivesUpWaitingForTheLoop(t *testing.T) {
	rt, rec := openRuntime(t, sagalane.Options{})
	// A target that holds the loop thread until released: CancelSaga waits for the loop.
	holding, release := make(chan struct{}), make(chan struct{})
	err := rt.RegisterTarget("hold", func(sagalane.Command) error {
		close(holding)
		<-release
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	holder := sagaFuncs{start: func(sagalane.SagaContext) sagalane.Action { return sagalane.Issue("hold", `{}`) }}
	waiter := sagaFuncs{start: func(sagalane.SagaContext) sagalane.Action { return sagalane.Wait() }}
	for name, s := range map[string]sagaFuncs{"holder": holder, "waiter": waiter} {
		if err := rt.RegisterSagaType(sagaType(name, s)); err != nil {
			t.Fatal(err)
		}
	}
	mustStart(t, rt)
	waiting, err := rt.StartSaga(ctx, "waiter", "")
	if err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "the waiter's start", func(events []sagalane.Event) bool {
		for _, ev := range events {
			if ev.SagaID == waiting && ev.Type == sagalane.EventSagaStarted {
				return true
			}
		}
		return false
	})
	if _, err := rt.StartSaga(ctx, "holder", ""); err != nil {
		t.Fatal(err)
	}
	<-holding

	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	began := time.Now()
	err = rt.CancelSaga(short, waiting, "given up on")
	wantGaveUp(t, "CancelSaga while the loop is held", err, context.DeadlineExceeded)
	if waited := time.Since(began); waited > waitTimeout/2 {
		t.Errorf("CancelSaga returned %v after its deadline", waited)
	}
	close(release)
	// The cancellation it handed over still takes effect.
	if ev := rec.terminal(t, waiting); ev.Type != sagalane.EventSagaFailed || reason(t, ev) != "cancelled: given up on" {
		t.Errorf("saga ended with %s %s, want the cancellation", ev.Type, ev.Payload)
	}
}

func TestCloseTwice(t *testing.T) {
	rt, err := sagalane.Open(ctx, sagalane.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case <-rt.Closed():
	default:
		t.Error("Closed() not closed once Close returned on a host goroutine")
	}
	err = rt.Close()
	var e *sagalane.Error
	if !errors.Is(err, sagalane.ErrClosed) || !errors.As(err, &e) || e.Func != "sl_runtime_close" {
		t.Errorf("second Close: %v, want ErrClosed from sl_runtime_close", err)
	}
	if err := rt.Shutdown(ctx); !errors.Is(err, sagalane.ErrClosed) {
		t.Errorf("Shutdown after Close: %v, want ErrClosed", err)
	}
	if n := sagalane.LiveHandles(); n != 0 {
		t.Errorf("%d handles live after Close", n)
	}
}

// Shutdown waits for the close until its context ends; the close goes on without it.
func TestShutdownDeadline(t *testing.T) {
	rt, err := sagalane.Open(ctx, sagalane.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Start(ctx); err != nil {
		t.Fatal(err)
	}
	lane, err := rt.CreateLane(ctx, "stubborn", sagalane.LaneOptions{Volatile: true})
	if err != nil {
		t.Fatal(err)
	}
	// A job that ignores its cancellation until released: the close waits for it.
	running, release := make(chan struct{}), make(chan struct{})
	sawDone := make(chan bool, 1)
	_, err = lane.Submit(ctx, sagalane.Job{Run: func(ctx context.Context, _ *sagalane.RunningJob) (string, error) {
		close(running)
		<-release
		sawDone <- ctx.Err() != nil
		return "late", nil
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	<-running

	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	wantGaveUp(t, "Shutdown while a job holds the close", rt.Shutdown(short), context.DeadlineExceeded)
	select {
	case <-rt.Closed():
		t.Fatal("Closed() closed while a job still ran")
	default:
	}
	if err := rt.Publish("X", 0, ""); !errors.Is(err, sagalane.ErrClosed) {
		t.Errorf("Publish during the close: %v, want ErrClosed", err)
	}
	close(release)
	if !<-sawDone {
		t.Error("the running job's context was not done during the close")
	}
	select {
	case <-rt.Closed():
	case <-time.After(waitTimeout):
		t.Fatalf("the close did not finish after the job returned; %d handles live", sagalane.LiveHandles())
	}
	if n := sagalane.LiveHandles(); n != 0 {
		t.Errorf("%d handles live after the close", n)
	}

	// With time enough, Shutdown returns once everything is released.
	rt2, err := sagalane.Open(ctx, sagalane.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt2.Subscribe(0, func(sagalane.Event) {}); err != nil {
		t.Fatal(err)
	}
	enough, cancel2 := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel2()
	if err := rt2.Shutdown(enough); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if n := sagalane.LiveHandles(); n != 0 {
		t.Errorf("%d handles live once Shutdown returned", n)
	}
}

// On the loop thread a call that would wait for the loop takes effect at once, whatever its
// context: waiting there would wait for the very callback making it.
func TestCancelSagaFromTheLoopThread(t *testing.T) {
	rt, rec := openRuntime(t, sagalane.Options{})
	waiter := sagaFuncs{start: func(sagalane.SagaContext) sagalane.Action { return sagalane.Wait() }}
	canceller := sagaFuncs{start: func(sagalane.SagaContext) sagalane.Action { return sagalane.Issue("canceller", `{}`) }}
	for name, s := range map[string]sagaFuncs{"waiter": waiter, "canceller": canceller} {
		if err := rt.RegisterSagaType(sagaType(name, s)); err != nil {
			t.Fatal(err)
		}
	}
	var victim uint64
	type result struct {
		err  error
		took time.Duration
	}
	results := make(chan result, 1)
	err := rt.RegisterTarget("canceller", func(sagalane.Command) error {
		deadline, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		began := time.Now()
		err := rt.CancelSaga(deadline, victim, "from the loop")
		results <- result{err, time.Since(began)}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	mustStart(t, rt)
	if victim, err = rt.StartSaga(ctx, "waiter", ""); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "the waiter's start", func(events []sagalane.Event) bool {
		for _, ev := range events {
			if ev.SagaID == victim && ev.Type == sagalane.EventSagaStarted {
				return true
			}
		}
		return false
	})
	if _, err := rt.StartSaga(ctx, "canceller", ""); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-results:
		if r.err != nil || r.took > waitTimeout/2 {
			t.Errorf("CancelSaga from a target: %v after %v, want nil at once", r.err, r.took)
		}
	case <-time.After(2 * waitTimeout):
		t.Fatal("the target's CancelSaga never returned")
	}
	if ev := rec.terminal(t, victim); ev.Type != sagalane.EventSagaFailed || reason(t, ev) != "cancelled: from the loop" {
		t.Errorf("saga ended with %s %s, want the cancellation", ev.Type, ev.Payload)
	}
}

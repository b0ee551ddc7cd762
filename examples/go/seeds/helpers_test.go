package seeds_test

import (
	"context"
	"sync"
	"testing"
	"time"

	sagalane "github.com/sagalane/sagalane/bindings/go"
)

// waitTimeout bounds every wait for something the runtime does on its own threads.
const waitTimeout = 10 * time.Second

// ctx is the context of the calls a test does not mean to cancel.
var ctx = context.Background()

// recorder collects what a runtime's subscription delivers.
type recorder struct {
	mu     sync.Mutex
	cond   *sync.Cond
	events []sagalane.Event
}

func (rec *recorder) event(ev sagalane.Event) {
	rec.mu.Lock()
	rec.events = append(rec.events, ev)
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

// openRuntime opens a runtime whose events go to a recorder and whose callbacks' panics fail
// the test. At the end of the test it closes it and checks that it released everything it
// gave the library.
func openRuntime(t *testing.T, opts sagalane.Options) (*sagalane.Runtime, *recorder) {
	t.Helper()
	rec := &recorder{}
	rec.cond = sync.NewCond(&rec.mu)
	opts.OnPanic = func(p *sagalane.PanicError) { t.Errorf("%v\n%s", p, p.Stack) }
	rt, err := sagalane.Open(ctx, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		shutdown, cancel := context.WithTimeout(ctx, waitTimeout)
		defer cancel()
		if err := rt.Shutdown(shutdown); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	if _, err := rt.Subscribe(0, rec.event); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	return rt, rec
}

func mustStart(t *testing.T, rt *sagalane.Runtime) {
	t.Helper()
	if err := rt.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
}

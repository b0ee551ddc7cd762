// Command launcher embeds sagalane in a Go program, re-creating the scenario of
// examples/c/launcher.c: the terminal-pool launcher's two sagas (package seeds), driven by
// what the terminal reports, plus a saga started directly and some lane work of its own.
//
// Usage: launcher [DATABASE]   (default: an in-memory log)
//
// It exits 0 when every saga ended as expected, 1 otherwise.
package main

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	sagalane "github.com/sagalane/sagalane/bindings/go"
	"github.com/sagalane/sagalane/examples/go/seeds"
)

// expected is how many sagas the scenario starts: two promotions, two clean closes, one
// direct start. The crash-flagged close must start nothing.
const expected = 5

// tally counts lifecycle events as the subscription delivers them.
type tally struct {
	mu                         sync.Mutex
	started, completed, failed int
	changed                    chan struct{} // receives after every terminal event
}

func (t *tally) watch(ev sagalane.Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch ev.Type {
	case sagalane.EventSagaStarted:
		t.started++
	case sagalane.EventSagaCompleted:
		t.completed++
	case sagalane.EventSagaFailed:
		t.failed++
		fmt.Fprintf(os.Stderr, "launcher: saga %d failed: %s\n", ev.SagaID, ev.Payload)
	default:
		return
	}
	select {
	case t.changed <- struct{}{}:
	default:
	}
}

func (t *tally) ended() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.completed + t.failed
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "launcher: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	// The whole scenario, closing included, has ten seconds.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	opts := sagalane.Options{Durability: sagalane.DurabilityNormal}
	if len(os.Args) > 1 {
		opts.Path = os.Args[1]
	}
	rt, err := sagalane.Open(ctx, opts)
	if err != nil {
		return err
	}
	// Closes it on an early return; after the Shutdown below this does nothing.
	defer rt.Close()

	windows, err := seeds.Install(ctx, rt, nil)
	if err != nil {
		return err
	}
	t := &tally{changed: make(chan struct{}, 1)}
	sub, err := rt.Subscribe(0, t.watch)
	if err != nil {
		return err
	}
	if err := rt.Start(ctx); err != nil {
		return err
	}

	// What the terminal reports.
	reports := []struct{ event, payload string }{
		{"PoolWindowPromoted", `{"label":"pool-1"}`},
		{"WindowClosed", `{"label":"main","crash_detected":false}`},
		{"WindowClosed", `{"label":"logs","crash_detected":true}`},
		{"PoolWindowPromoted", `{"label":"pool-2"}`},
		{"WindowClosed", `{"label":"side"}`},
	}
	for _, r := range reports {
		if err := rt.Publish(r.event, 0, r.payload); err != nil {
			return err
		}
	}

	// A saga started directly, whose end the launcher waits for itself, and some lane work of
	// its own.
	direct, err := rt.StartSaga(ctx, seeds.WindowCleanupCascade, `{"label":"direct"}`)
	if err != nil {
		return err
	}
	result, err := windows.SubmitAndWait(ctx, sagalane.Job{Caller: "launcher", Run: seeds.SpawnWindow})
	if err != nil {
		return err
	}
	fmt.Printf("launcher: warm-up job answered %s\n", result)
	end, err := rt.WaitSaga(ctx, direct)
	if err != nil {
		return err
	}
	fmt.Printf("launcher: saga %d (direct) ended %s\n", direct, end.State)
	if end.State != sagalane.SagaCompleted {
		return fmt.Errorf("the direct saga ended %s: %s", end.State, end.Reason)
	}

	for t.ended() < expected {
		select {
		case <-t.changed:
		case <-ctx.Done():
			return fmt.Errorf("only %d of %d sagas ended in time", t.ended(), expected)
		}
	}
	// Anything the crash-flagged close might have started would show by now.
	time.Sleep(50 * time.Millisecond)

	recent, err := rt.RecentSagasJSON(ctx, 10)
	if err != nil {
		return err
	}
	fmt.Printf("launcher: recent sagas: %s\n", recent)
	stats, err := windows.Stats()
	if err != nil {
		return err
	}
	sub.Unsubscribe()
	if err := rt.Shutdown(ctx); err != nil {
		return err
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Printf("launcher: %d sagas started, %d completed, %d failed; lane '%s' ran %d jobs\n",
		t.started, t.completed, t.failed, windows.Name(), stats.Completed)
	if t.started != expected || t.completed != expected || t.failed != 0 || stats.Completed != 3 {
		return fmt.Errorf("expected %d sagas completed and 3 lane jobs", expected)
	}
	return nil
}

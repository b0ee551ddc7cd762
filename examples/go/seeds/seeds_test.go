package seeds_test

import (
	"encoding/json"
	"sort"
	"strings"
	"sync"
	"testing"

	sagalane "github.com/sagalane/sagalane/bindings/go"
	"github.com/sagalane/sagalane/examples/go/seeds"
)

// TestSeedSagas runs the launcher's scenario: both seed sagas end to end, triggered by what
// the terminal reports, with the crash-flagged close starting nothing.
func TestSeedSagas(t *testing.T) {
	rt, rec := openRuntime(t, sagalane.Options{})
	var mu sync.Mutex
	decisions := map[string]bool{} // WindowClosed label -> whether it started a saga
	windows, err := seeds.Install(ctx, rt, func(payload json.RawMessage) bool {
		clean := seeds.CleanClose(payload)
		var p struct{ Label string }
		_ = json.Unmarshal(payload, &p)
		mu.Lock()
		decisions[p.Label] = clean
		mu.Unlock()
		return clean
	})
	if err != nil {
		t.Fatal(err)
	}
	mustStart(t, rt)

	reports := []struct{ event, payload string }{
		{"PoolWindowPromoted", `{"label":"pool-1"}`},
		{"WindowClosed", `{"label":"main","crash_detected":false}`},
		{"WindowClosed", `{"label":"logs","crash_detected":true}`},
		{"PoolWindowPromoted", `{"label":"pool-2"}`},
		{"WindowClosed", `{"label":"side"}`},
	}
	for _, r := range reports {
		if err := rt.Publish(r.event, 0, r.payload); err != nil {
			t.Fatal(err)
		}
	}
	direct, err := rt.StartSaga(ctx, seeds.WindowCleanupCascade, `{"label":"direct"}`)
	if err != nil {
		t.Fatal(err)
	}

	const expected = 5
	rec.waitFor(t, "five sagas to end", func(events []sagalane.Event) bool {
		n := 0
		for _, ev := range events {
			if ev.Type == sagalane.EventSagaCompleted || ev.Type == sagalane.EventSagaFailed {
				n++
			}
		}
		return n >= expected
	})
	// Events published after the ends come after them, and after any duplicate: once the
	// marker is delivered, every saga's events are in.
	if err := rt.Publish("Marker", 0, ""); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "the marker", func(events []sagalane.Event) bool {
		return len(events) > 0 && events[len(events)-1].Type == "Marker"
	})

	mu.Lock()
	wantDecisions := map[string]bool{"main": true, "logs": false, "side": true}
	for label, want := range wantDecisions {
		if got, seen := decisions[label]; !seen || got != want {
			t.Errorf("WindowClosed %q: started a saga: %v (seen: %v), want %v", label, got, seen, want)
		}
	}
	mu.Unlock()

	rec.mu.Lock()
	started := map[uint64]string{}
	ends := map[uint64][]string{}
	for _, ev := range rec.events {
		var p struct{ Name string }
		switch ev.Type {
		case sagalane.EventSagaStarted:
			_ = json.Unmarshal(ev.Payload, &p)
			started[ev.SagaID] = p.Name
		case sagalane.EventSagaCompleted, sagalane.EventSagaFailed:
			ends[ev.SagaID] = append(ends[ev.SagaID], ev.Type)
		}
	}
	rec.mu.Unlock()
	if len(started) != expected || len(ends) != expected {
		t.Errorf("%d sagas started and %d ended, want %d each", len(started), len(ends), expected)
	}
	for id, name := range started {
		if e := ends[id]; len(e) != 1 || e[0] != sagalane.EventSagaCompleted {
			t.Errorf("saga %d (%s) ended with %v, want exactly one SagaCompleted", id, name, e)
		}
	}
	if started[direct] != seeds.WindowCleanupCascade {
		t.Errorf("the direct saga %d started as %q", direct, started[direct])
	}

	// The log tells the same story: two respawns of one step, three cleanups of two, and no
	// saga for the crash-flagged close.
	recent, err := rt.RecentSagas(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	var labels []string
	for _, s := range recent {
		var input struct{ Label string }
		_ = json.Unmarshal(s.Input, &input)
		labels = append(labels, input.Label)
		wantSteps := map[string]int{seeds.RespawnOnPromote: 1, seeds.WindowCleanupCascade: 2}[s.Name]
		if s.State != "completed" || s.Steps != wantSteps {
			t.Errorf("saga %d (%s %s): %s with %d steps, want completed with %d", s.ID, s.Name, s.Input, s.State, s.Steps, wantSteps)
		}
	}
	sort.Strings(labels)
	if got := strings.Join(labels, " "); got != "direct main pool-1 pool-2 side" {
		t.Errorf("sagas in the log for %s", got)
	}
	record, err := rt.LookupSaga(ctx, direct)
	if err != nil {
		t.Fatal(err)
	}
	if len(record.Steps) != 2 || record.Steps[0].Target != "host" || record.Steps[1].State != "succeeded" {
		t.Errorf("steps of the direct saga: %+v", record.Steps)
	}

	stats, err := windows.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if stats.Completed != 2 || stats.Failed != 0 {
		t.Errorf("windows lane: %+v, want the two respawns' jobs completed", stats)
	}
}

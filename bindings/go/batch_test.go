package sagalane_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	sagalane "github.com/sagalane/sagalane/bindings/go"
)

// A batch's refused job says why while the others run, each taken job's done comes once,
// and a non-waiting submit's queued callback comes before its done. openRuntime's clean-up
// checks that every handle was released (a refused job's included).
func TestSubmitBatchAndSubmitAsync(t *testing.T) {
	rt, _ := openRuntime(t, sagalane.Options{})
	lane, err := rt.CreateLane(ctx, "work", sagalane.LaneOptions{MaxConcurrent: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []string
	cond := sync.NewCond(&mu)
	note := func(s string) {
		mu.Lock()
		seen = append(seen, s)
		cond.Broadcast()
		mu.Unlock()
	}
	waitFor := func(n int) {
		t.Helper()
		deadline := time.Now().Add(waitTimeout)
		mu.Lock()
		defer mu.Unlock()
		for len(seen) < n {
			if time.Now().After(deadline) {
				t.Fatalf("saw %d of %d: %v", len(seen), n, seen)
			}
			mu.Unlock()
			time.Sleep(time.Millisecond)
			mu.Lock()
		}
	}
	ok := func(context.Context, *sagalane.RunningJob) (string, error) { return "ok", nil }
	done := func(o sagalane.JobOutcome) { note("done " + o.JobID) }

	jobs := make([]sagalane.Job, 0, 11)
	for i := 0; i < 10; i++ {
		jobs = append(jobs, sagalane.Job{ID: fmt.Sprintf("b-%d", i), Run: ok})
	}
	jobs = append(jobs, sagalane.Job{ID: "b-3", Run: ok}) // a duplicate id: refused
	subs, err := lane.SubmitBatch(ctx, jobs, done)
	var batch *sagalane.BatchError
	if !errors.As(err, &batch) || len(batch.Refused) != 1 || !errors.Is(batch.Refused[10], sagalane.ErrExist) || !errors.Is(err, sagalane.ErrExist) {
		t.Fatalf("SubmitBatch: %v, want one refusal (job 10, ErrExist)", err)
	}
	for i := 0; i < 10; i++ {
		if subs[i].JobID != fmt.Sprintf("b-%d", i) {
			t.Errorf("job %d: %+v", i, subs[i])
		}
	}
	if subs[10] != (sagalane.Submission{}) {
		t.Errorf("refused job's submission: %+v", subs[10])
	}
	waitFor(10)
	if _, err := lane.SubmitBatch(ctx, []sagalane.Job{{ID: "x"}}, done); !errors.Is(err, sagalane.ErrInvalid) {
		t.Errorf("a job without Run: %v, want ErrInvalid", err)
	}

	mu.Lock()
	seen = nil
	mu.Unlock()
	for i := 0; i < 10; i++ {
		id := fmt.Sprintf("a-%d", i)
		err := lane.SubmitAsync(sagalane.Job{ID: id, Run: ok}, func(s sagalane.Submission, err error) {
			if err != nil || s.JobID != id {
				t.Errorf("queued %s: %+v, %v", id, s, err)
			}
			note("queued " + id)
		}, done)
		if err != nil {
			t.Fatal(err)
		}
	}
	hold := make(chan struct{})
	started := make(chan struct{})
	if err := lane.SubmitAsync(sagalane.Job{ID: "hold", Run: func(context.Context, *sagalane.RunningJob) (string, error) {
		close(started)
		<-hold
		return "", nil
	}}, nil, nil); err != nil {
		t.Fatal(err)
	}
	<-started
	if err := lane.SubmitAsync(sagalane.Job{ID: "hold", Run: ok}, func(_ sagalane.Submission, err error) {
		if !errors.Is(err, sagalane.ErrExist) {
			t.Errorf("a taken id: %v, want ErrExist", err)
		}
		note("refused")
	}, done); err != nil {
		t.Fatal(err)
	}
	waitFor(21)
	close(hold)
	if err := lane.SubmitAsync(sagalane.Job{ID: "no run"}, nil, nil); !errors.Is(err, sagalane.ErrInvalid) {
		t.Errorf("SubmitAsync without Run: %v, want ErrInvalid", err)
	}
	mu.Lock()
	defer mu.Unlock()
	index := map[string]int{}
	for i, s := range seen {
		index[s] = i
	}
	for i := 0; i < 10; i++ {
		q, okq := index[fmt.Sprintf("queued a-%d", i)]
		d, okd := index[fmt.Sprintf("done a-%d", i)]
		if !okq || !okd || q > d {
			t.Errorf("a-%d: queued at %d (%v), done at %d (%v): %v", i, q, okq, d, okd, seen)
		}
	}
}

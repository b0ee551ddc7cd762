package sagalane_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	sagalane "github.com/sagalane/sagalane/bindings/go"
)

// Persisted lanes across a real crash. A child process (this test binary again, running
// TestLaneRecoveryCrashChild) fills a persisted lane on a file database with one job that
// runs forever and jobs queued behind it, says "ready", and is killed with SIGKILL. The
// parent then creates the lane again on the same file with a Reconstruct that rebuilds jobs
// from their metadata.

// crashChildEnv holds the database path when the test binary runs as the child.
const crashChildEnv = "SAGALANE_GO_LANE_CRASH_CHILD"

// crashLane is the lane the child fills.
const crashLane = "crash"

// The jobs the child leaves queued. Their metadata tells the parent's Reconstruct what to do:
// "work:..." rebuilds the job, "refuse" returns false, "panic" panics, "no-run" returns a job
// without Run. One carries bytes that are not text, so the record must be binary-safe.
var crashQueued = []struct {
	id       string
	priority int
	metadata string
}{
	{"q-one", 1, "work:one"},
	{"q-two", 2, "work:two"},
	{"q-three", 3, "work:three\x00\xff"},
	{"q-refused", 4, "refuse"},
	{"q-panics", 5, "panic"},
	{"q-no-run", 6, "no-run"},
}

// TestLaneRecoveryCrashChild is the child's side; run on its own it skips.
func TestLaneRecoveryCrashChild(t *testing.T) {
	path := os.Getenv(crashChildEnv)
	if path == "" {
		t.Skip("the child process of TestLaneRecoveryAfterCrash")
	}
	// DurabilityNormal survives the crash of a process, which is all this test does.
	rt, err := sagalane.Open(ctx, sagalane.Options{Path: path, Durability: sagalane.DurabilityNormal})
	if err != nil {
		t.Fatal(err)
	}
	lane, err := rt.CreateLane(ctx, crashLane, sagalane.LaneOptions{MaxConcurrent: 1})
	if err != nil {
		t.Fatal(err)
	}
	mustStart(t, rt)

	// Its running row is durable before Run is called: once Run started, the row the
	// parent finds is "running".
	started := make(chan struct{})
	forever := func(context.Context, *sagalane.RunningJob) (string, error) {
		close(started)
		select {}
	}
	if _, err := lane.Submit(ctx, sagalane.Job{ID: "runs-forever", Caller: "the child", Priority: 9, Run: forever}, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(waitTimeout):
		t.Fatal("the first job did not start")
	}
	notRun := func(_ context.Context, job *sagalane.RunningJob) (string, error) {
		return "", fmt.Errorf("job %s ran in the child", job.ID())
	}
	for _, q := range crashQueued {
		// Submit returns once the queued row is durable.
		job := sagalane.Job{ID: q.id, Caller: "the child", Priority: q.priority, Metadata: []byte(q.metadata), Run: notRun}
		if _, err := lane.Submit(ctx, job, nil); err != nil {
			t.Fatal(err)
		}
	}
	if stats, err := lane.Stats(); err != nil || stats.Running != 1 || stats.Queued != len(crashQueued) {
		t.Fatalf("stats before the crash: %+v, %v", stats, err)
	}
	fmt.Println("ready")
	// Killed here. Should the parent go away first, its end of stdin closes and so does this.
	_, _ = io.Copy(io.Discard, os.Stdin)
	t.Fatal("stdin closed before the parent killed the child")
}

// crashChild runs TestLaneRecoveryCrashChild on the database at path in a child process and
// kills it with SIGKILL once it printed "ready".
func crashChild(t *testing.T, path string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLaneRecoveryCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	// Held open and never written: the child waits on it (see TestLaneRecoveryCrashChild).
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan error, 1)
	var before []string // what the child printed before "ready"
	go func() {
		lines := bufio.NewScanner(stdout)
		for lines.Scan() {
			if lines.Text() == "ready" {
				ready <- nil
				return
			}
			before = append(before, lines.Text())
		}
		ready <- fmt.Errorf("the child's output ended before it was ready (%v):\n%s",
			lines.Err(), strings.Join(before, "\n"))
	}()
	var notReady error
	select {
	case notReady = <-ready:
	case <-time.After(waitTimeout):
		notReady = fmt.Errorf("the child was not ready after %v", waitTimeout)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil && notReady == nil {
		notReady = fmt.Errorf("killing the child: %v", err)
	}
	_ = cmd.Wait() // its error is the kill; the status is checked below
	if notReady != nil {
		t.Fatalf("%v\nchild's stderr:\n%s", notReady, stderr.String())
	}
	if status, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !status.Signaled() || status.Signal() != syscall.SIGKILL {
		t.Fatalf("the child ended with %v, not killed by SIGKILL; stderr:\n%s", cmd.ProcessState, stderr.String())
	}
	if strings.Contains(stderr.String(), "DATA RACE") {
		t.Errorf("the race detector reported in the child:\n%s", stderr.String())
	}
}

func TestLaneRecoveryAfterCrash(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lanes.db")
	crashChild(t, path)

	rt, rec := openRuntime(t, sagalane.Options{Path: path})
	var mu sync.Mutex
	var records []sagalane.JobRecord
	runs := map[string][]string{} // job id -> the metadata each run saw
	outcomes := make(chan sagalane.JobOutcome, len(crashQueued))
	reconstruct := func(r sagalane.JobRecord) (sagalane.Job, bool) {
		mu.Lock()
		records = append(records, r)
		mu.Unlock()
		switch string(r.Metadata) {
		case "refuse":
			return sagalane.Job{}, false
		case "panic":
			panic("cannot rebuild " + r.ID)
		case "no-run":
			return sagalane.Job{Metadata: r.Metadata}, true
		}
		return sagalane.Job{Caller: r.Caller, Priority: r.Priority, Metadata: r.Metadata,
			Run: func(_ context.Context, job *sagalane.RunningJob) (string, error) {
				mu.Lock()
				runs[job.ID()] = append(runs[job.ID()], string(job.Metadata()))
				mu.Unlock()
				// Quoted: a result is C text, which a NUL would cut short.
				return fmt.Sprintf("ran with %q", job.Metadata()), nil
			}}, true
	}
	_, err := rt.CreateLane(ctx, crashLane, sagalane.LaneOptions{
		MaxConcurrent: 1,
		Reconstruct:   reconstruct,
		OnRecovered:   func(o sagalane.JobOutcome) { outcomes <- o },
	})
	if err != nil {
		t.Fatal(err)
	}

	// Reconstruct ran during CreateLane, once for each queued row and never for the running
	// one, with each row as the child submitted it.
	mu.Lock()
	got := append([]sagalane.JobRecord(nil), records...)
	mu.Unlock()
	sort.Slice(got, func(i, j int) bool { return got[i].Priority < got[j].Priority })
	if len(got) != len(crashQueued) {
		t.Fatalf("Reconstruct got %d records, want %d: %+v", len(got), len(crashQueued), got)
	}
	for i, q := range crashQueued {
		r := got[i]
		if r.ID != q.id || r.Caller != "the child" || r.Priority != q.priority ||
			string(r.Metadata) != q.metadata || r.Attempts != 0 {
			t.Errorf("record %d = %+v, want id %s, priority %d, metadata %q, no attempts", i, r, q.id, q.priority, q.metadata)
		}
	}
	// Its panic was reported, not raised.
	panicked := false
	for _, p := range rec.panicsSeen() {
		if p.Value == "cannot rebuild q-panics" && strings.Contains(p.Callback, `lane "crash"`) {
			panicked = true
		}
	}
	if !panicked {
		t.Errorf("the panic in Reconstruct was not reported: %v", rec.panicsSeen())
	}

	mustStart(t, rt)
	// Every job Reconstruct returned has exactly one outcome: the three rebuilt ones ran,
	// the one without Run failed without running.
	want := map[string]sagalane.JobOutcome{
		"q-one":   {JobID: "q-one", State: sagalane.JobFinished, Text: `ran with "work:one"`, Attempts: 1},
		"q-two":   {JobID: "q-two", State: sagalane.JobFinished, Text: `ran with "work:two"`, Attempts: 1},
		"q-three": {JobID: "q-three", State: sagalane.JobFinished, Text: `ran with "work:three\x00\xff"`, Attempts: 1},
	}
	ended := map[string]sagalane.JobOutcome{}
	for len(ended) < len(want)+1 {
		select {
		case o := <-outcomes:
			if _, dup := ended[o.JobID]; dup {
				t.Errorf("a second outcome for %s: %+v", o.JobID, o)
			}
			ended[o.JobID] = o
		case <-time.After(waitTimeout):
			t.Fatalf("rebuilt jobs did not end; outcomes so far: %+v", ended)
		}
	}
	for id, w := range want {
		if ended[id] != w {
			t.Errorf("outcome of %s = %+v, want %+v", id, ended[id], w)
		}
	}
	if o := ended["q-no-run"]; o.State != sagalane.JobFailed || !strings.Contains(o.Text, "no Run function") || o.Attempts != 0 {
		t.Errorf("outcome of the job rebuilt without Run = %+v, want failed for want of Run", o)
	}
	mu.Lock()
	for _, q := range crashQueued[:3] {
		if r := runs[q.id]; len(r) != 1 || r[0] != q.metadata {
			t.Errorf("%s ran with metadata %q, want once with %q", q.id, r, q.metadata)
		}
	}
	if len(runs) != 3 {
		t.Errorf("jobs run after the crash: %v, want only the three rebuilt", runs)
	}
	mu.Unlock()

	// What the log says of each row: the outcomes are durable once reported.
	rows, err := rt.RecentJobs(ctx, crashLane, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	wantRows := map[string]string{ // id -> "state: error"
		"runs-forever": "failed: lost on restart",
		"q-one":        "finished: ",
		"q-two":        "finished: ",
		"q-three":      "finished: ",
		"q-refused":    "failed: lost on restart: cannot reconstruct",
		"q-panics":     "failed: lost on restart: cannot reconstruct",
		"q-no-run":     "failed: lost on restart: cannot reconstruct",
	}
	gotRows := map[string]string{}
	for _, row := range rows {
		text := row.State + ": "
		if row.Error != nil {
			text += *row.Error
		}
		gotRows[row.ID] = text
		if row.Lane != crashLane || row.Caller != "the child" {
			t.Errorf("row %+v", row)
		}
	}
	for id, w := range wantRows {
		if gotRows[id] != w {
			t.Errorf("row of %s is %q, want %q", id, gotRows[id], w)
		}
	}
	if len(rows) != len(wantRows) {
		t.Errorf("%d rows in lane %q, want %d: %v", len(rows), crashLane, len(wantRows), gotRows)
	}
	// The same rows, counted.
	stats, err := rt.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantCounts := map[string]int{"queued": 0, "running": 0, "finished": 3, "cancelled": 0, "failed": 4}
	if got := stats.Jobs[crashLane]; fmt.Sprint(got) != fmt.Sprint(wantCounts) {
		t.Errorf("job counts of lane %q: %v, want %v", crashLane, got, wantCounts)
	}
	if stats.SchemaVersion < 1 || stats.DatabaseBytes <= 0 || stats.WALBytes == nil {
		t.Errorf("stats %+v", stats)
	}
	// Closing releases every rebuilt job's handle.
	closeAndCheck(t, rt)

	// Nothing is left to rebuild at the next start.
	rt2, _ := openRuntime(t, sagalane.Options{Path: path})
	_, err = rt2.CreateLane(ctx, crashLane, sagalane.LaneOptions{
		Reconstruct: func(r sagalane.JobRecord) (sagalane.Job, bool) {
			t.Errorf("Reconstruct called again, for %+v", r)
			return sagalane.Job{}, false
		},
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A CreateLane that gives up waiting for its reconciliation leaves it to finish: the lane is
// created, and every job rebuilt meanwhile runs and reports once.
func TestCreateLaneGivesUpWaiting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lanes.db")
	crashChild(t, path)

	rt, _ := openRuntime(t, sagalane.Options{Path: path})
	mustStart(t, rt)
	reconstructing, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	outcomes := make(chan sagalane.JobOutcome, len(crashQueued))
	reconstruct := func(r sagalane.JobRecord) (sagalane.Job, bool) {
		once.Do(func() { close(reconstructing) })
		<-release
		if !strings.HasPrefix(string(r.Metadata), "work:") {
			return sagalane.Job{}, false
		}
		return sagalane.Job{Metadata: r.Metadata, Run: func(_ context.Context, job *sagalane.RunningJob) (string, error) {
			return "rebuilt " + job.ID(), nil
		}}, true
	}
	short, cancel := context.WithCancel(context.Background())
	created := make(chan error, 1)
	go func() {
		_, err := rt.CreateLane(short, crashLane, sagalane.LaneOptions{
			Reconstruct: reconstruct,
			OnRecovered: func(o sagalane.JobOutcome) { outcomes <- o },
		})
		created <- err
	}()
	<-reconstructing
	cancel()
	select {
	case err := <-created:
		wantGaveUp(t, "CreateLane cancelled during its reconciliation", err, context.Canceled)
	case <-time.After(waitTimeout):
		t.Fatal("CreateLane did not give up when its context was cancelled")
	}
	close(release)

	ended := map[string]sagalane.JobOutcome{}
	for len(ended) < 3 {
		select {
		case o := <-outcomes:
			ended[o.JobID] = o
		case <-time.After(waitTimeout):
			t.Fatalf("rebuilt jobs did not end; outcomes so far: %+v", ended)
		}
	}
	for _, id := range []string{"q-one", "q-two", "q-three"} {
		if o := ended[id]; o.State != sagalane.JobFinished || o.Text != "rebuilt "+id {
			t.Errorf("outcome of %s = %+v", id, o)
		}
	}
	if lane, err := rt.FindLane(crashLane); err != nil || lane.Name() != crashLane {
		t.Errorf("FindLane after the abandoned CreateLane: %v, %v", lane, err)
	}
	// openRuntime's cleanup checks that the reconstruct callback's handle, and every rebuilt
	// job's, was released.
}

package sagalane

// #include "glue.h"
import "C"

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
	"unsafe"
)

// Lane is a named queue of jobs run by a pool of worker threads. Its handle is valid until
// the runtime closes.
type Lane struct {
	r    *Runtime
	lane *C.sl_lane
	name string
}

// LaneOptions configure CreateLane. The zero value is a persisted lane running one job at a
// time.
type LaneOptions struct {
	MaxConcurrent int // jobs running at once; 0 means 1
	// Volatile keeps the lane's jobs out of the log. By default every job's rows are logged,
	// the queued row durable before the job can run, and the next CreateLane of a persisted
	// lane of that name reconciles the rows a previous process left behind: those left
	// running are marked failed ("lost on restart": the job may have had effects, so it is
	// not run again), and those left queued are handed to Reconstruct.
	Volatile bool
	// Reconstruct rebuilds a job a previous process left queued, from its row in the log: a
	// Go function cannot be stored, so the job's Metadata is what tells it which work to do.
	// It returns the job to queue again under rec.ID (the returned ID is ignored; the other
	// fields are used as given, so copy rec's Caller, Priority and Metadata to keep them), or
	// false to mark the row failed ("lost on restart: cannot reconstruct"). A panic marks
	// the row failed too, after Options.OnPanic has it. nil marks every such row failed.
	//
	// It is called once per queued row, during CreateLane and before it returns, on a
	// sagalane thread; it must not call the runtime's methods. Volatile lanes have no rows
	// and never call it.
	Reconstruct func(rec JobRecord) (job Job, ok bool)
	// OnRecovered receives the outcome of every job Reconstruct rebuilt, exactly once, as
	// Submit's done does for a submitted job: on a sagalane thread, once the job ended (or
	// was cancelled by Close), and it must return quickly. A rebuilt job that is not valid
	// (no Run, say) ends failed at once and its outcome says why. Rows Reconstruct refused
	// have no outcome. May be nil.
	OnRecovered func(JobOutcome)
}

// JobRecord is a job a previous process left queued, as its row in the log has it, for
// LaneOptions.Reconstruct.
type JobRecord struct {
	ID       string
	Caller   string
	Priority int
	Metadata []byte // the Metadata it was submitted with (nil when it had none)
	Attempts int    // runs made before the restart (0 for a job that never ran)
}

// CreateLane creates the lane name in the runtime's pool. For a persisted lane it first
// reconciles the log's rows for name, rebuilding queued jobs with opts.Reconstruct (see
// LaneOptions), and waits for that.
//
// If ctx is done first, it returns an error that is both ErrCanceled and ctx.Err(); the
// lane is still created once the reconciliation is done (FindLane finds it then).
func (r *Runtime) CreateLane(ctx context.Context, name string, opts LaneOptions) (*Lane, error) {
	const fn = "sl_lane_create"
	if err := notBegun(ctx, fn); err != nil {
		return nil, err
	}
	if opts.MaxConcurrent < 0 {
		return nil, errorf(C.SL_EINVAL, fn, "MaxConcurrent %d is negative", opts.MaxConcurrent)
	}
	c, err := cString(fn, "lane name", name)
	if err != nil {
		return nil, err
	}
	o := new(C.sl_lane_options)
	C.sl_lane_options_init(o)
	o.max_concurrent = C.int(opts.MaxConcurrent)
	if opts.Volatile {
		o.persisted = 0
	}
	var h C.uintptr_t
	var entry *reconstructEntry
	if opts.Reconstruct != nil && !opts.Volatile {
		entry = &reconstructEntry{r: r, lane: name, fn: opts.Reconstruct, done: opts.OnRecovered}
		h = r.newHandle(entry)
	}
	l := &Lane{r: r, name: name}
	err = r.await(ctx, fn, func() error {
		// The library calls Reconstruct only during sl_lane_create, so its handle (and the
		// C copies of the rebuilt jobs' fields, which the library reads after each call
		// returns) are released once the create returned.
		defer func() {
			freeAll(c)
			if entry != nil {
				r.deleteHandle(h)
				entry.free()
			}
		}()
		return r.call(fn, func() C.int { return C.slgo_lane_create(r.rt, c, o, h, &l.lane) })
	}, nil)
	if err != nil {
		return nil, err
	}
	return l, nil
}

// reconstructEntry is the userdata of a lane's reconstruct callback, for one CreateLane.
type reconstructEntry struct {
	r    *Runtime
	lane string
	fn   func(JobRecord) (Job, bool)
	done func(JobOutcome)

	mu   sync.Mutex
	cmem []unsafe.Pointer // C copies of the rebuilt jobs' fields, freed after the create
}

// rebuild calls Reconstruct; a panic in it is reported and refuses the row.
func (e *reconstructEntry) rebuild(rec JobRecord) (job Job, ok bool) {
	defer func() {
		if v := recover(); v != nil {
			e.r.reportPanic(fmt.Sprintf("Reconstruct of lane %q (job %q)", e.lane, rec.ID), v)
			job, ok = Job{}, false
		}
	}()
	return e.fn(rec)
}

// fill fills the library's job with a rebuilt one and binds it to a new handle, released by
// its done as a submitted job's is. A job that is not valid is bound without its run, so the
// library marks it failed and calls done, which reports why.
func (e *reconstructEntry) fill(job Job, c *C.sl_job) {
	job.ID = "" // the library keeps the record's
	cmem, err := cJob("sl_lane_create", job, c)
	e.mu.Lock()
	e.cmem = append(e.cmem, cmem...)
	e.mu.Unlock()
	entry := &jobEntry{r: e.r, run: job.Run, done: e.done}
	runnable := C.int(1)
	if err != nil {
		entry.invalid, runnable = fmt.Sprintf("lane %q could not rebuild the job: %s", e.lane, messageOf(err)), 0
	}
	C.slgo_job_bind(c, e.r.newHandle(entry), runnable)
}

func (e *reconstructEntry) free() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, p := range e.cmem {
		C.free(p)
	}
	e.cmem = nil
}

// FindLane finds a lane created earlier by name.
func (r *Runtime) FindLane(name string) (*Lane, error) {
	const fn = "sl_lane_find"
	c, err := cString(fn, "lane name", name)
	if err != nil {
		return nil, err
	}
	defer freeAll(c)
	l := &Lane{r: r, name: name}
	if err := r.call(fn, func() C.int { return C.sl_lane_find(r.rt, c, &l.lane) }); err != nil {
		return nil, err
	}
	return l, nil
}

// Name is the lane's name.
func (l *Lane) Name() string { return l.name }

// JobFunc is a job's work: a Job's Run, or a lane's command handler. It runs on one of the
// lane's worker threads and may block. It returns the job's result text, or an error: one
// that is ErrCanceled or context.Canceled (ctx.Err() once ctx is done, say) ends the job
// cancelled, any other fails it with the error's text. A panic fails it too.
//
// ctx is done once the job is cancelled: when the lane shuts down (Close), when a
// SubmitAndWait gives up on it, or on Lane.Interrupt. Stop early then if you can, returning
// ctx.Err(). ctx.Err() reads the job's cancellation flag itself; a receive from ctx.Done()
// sees it raised within about 10 ms (the binding polls the flag while someone waits on
// Done). ctx is also done once the function returned, so work it started and did not wait
// for sees it as cancelled.
type JobFunc func(ctx context.Context, job *RunningJob) (string, error)

// Job is work for a lane.
type Job struct {
	ID       string // unique in the lane (and the log); "": generated
	Caller   string // who submitted it, for operators
	Priority int    // higher first; FIFO within a priority
	Metadata []byte // opaque bytes kept in the log
	// MaxAttempts is how many runs a job that is safe to run again (idempotent) gets; 0 or
	// 1: one.
	MaxAttempts int
	// RetryBackoff is the first wait before a retry, doubled each time; 0 means 100 ms.
	RetryBackoff time.Duration
	// Run does the work, once per attempt (see JobFunc). Required.
	Run JobFunc
}

// RunningJob is a running job's view of itself, valid only while its JobFunc runs.
type RunningJob struct {
	ctx *C.sl_job_ctx
}

// ID is the job's id.
func (j *RunningJob) ID() string { return C.GoString(C.sl_job_id(j.ctx)) }

// Attempt is 1 for the first run, 2 for the first retry, ...
func (j *RunningJob) Attempt() int { return int(C.sl_job_attempt(j.ctx)) }

// Metadata is a copy of the job's metadata (for a command handler: the command JSON).
func (j *RunningJob) Metadata() []byte {
	var n C.size_t
	p := C.sl_job_metadata(j.ctx, &n)
	if p == nil {
		return nil
	}
	return C.GoBytes(p, C.int(n))
}

// JobState is how a job ended.
type JobState int

const (
	// JobFinished: Run returned a result.
	JobFinished JobState = C.SL_JOB_FINISHED
	// JobFailed: Run failed (its last attempt did), panicked, or the job could not run.
	JobFailed JobState = C.SL_JOB_FAILED
	// JobCancelled: the job was cancelled before it ran, or Run stopped for a
	// cancellation.
	JobCancelled JobState = C.SL_JOB_CANCELLED
)

// String is "finished", "failed" or "cancelled".
func (s JobState) String() string {
	switch s {
	case JobFinished:
		return "finished"
	case JobFailed:
		return "failed"
	case JobCancelled:
		return "cancelled"
	}
	return "unknown"
}

// JobOutcome is how a job ended.
type JobOutcome struct {
	JobID    string
	State    JobState
	Text     string // the result (finished) or the error (failed); "" when cancelled
	Attempts int    // runs made
}

// Submission says where a submitted job stands.
type Submission struct {
	JobID         string        // the job's id (generated if none was given)
	Position      int           // jobs ahead of it
	EstimatedWait time.Duration // from the recent mean run time; 0 until one ran
}

// jobEntry is the userdata of a submitted or rebuilt job: its handle lives from Submit (or
// Reconstruct) to done.
type jobEntry struct {
	r    *Runtime
	run  JobFunc
	done func(JobOutcome)
	// Why a rebuilt job was not valid ("" when it was): the library failed it without
	// running it, and its outcome carries this instead of the library's text.
	invalid string
}

// Submit submits a job. For a persisted lane it returns once the queued row is durable.
// On success done (which may be nil) is called exactly once when the job ended, on a
// sagalane thread, and must return quickly; on failure never.
//
// ctx is checked before the job is submitted: a done ctx submits nothing and returns an
// error that is both ErrCanceled and ctx.Err(). The wait for the row to be durable (one
// group commit) is not cut short, as a job accepted must be reported to done. ctx is not the
// job's: the job runs after Submit returned, with a context of its own (see JobFunc).
func (l *Lane) Submit(ctx context.Context, job Job, done func(JobOutcome)) (Submission, error) {
	if err := notBegun(ctx, "sl_lane_submit"); err != nil {
		return Submission{}, err
	}
	return l.submit(job, done)
}

func (l *Lane) submit(job Job, done func(JobOutcome)) (Submission, error) {
	const fn = "sl_lane_submit"
	var c C.sl_job
	C.sl_job_init(&c)
	cmem, err := cJob(fn, job, &c)
	if err != nil {
		return Submission{}, err
	}
	defer func() {
		for _, p := range cmem {
			C.free(p)
		}
	}()
	entry := &jobEntry{r: l.r, run: job.Run, done: done}
	h := l.r.newHandle(entry)
	var out C.sl_submission
	out.size = C.size_t(unsafe.Sizeof(out))
	if err := l.r.call(fn, func() C.int { return C.slgo_lane_submit(l.lane, &c, h, &out) }); err != nil {
		l.r.deleteHandle(h)
		return Submission{}, err
	}
	sub := Submission{
		JobID:         C.GoString(out.job_id),
		Position:      int(out.position),
		EstimatedWait: time.Duration(out.estimated_wait_ms) * time.Millisecond,
	}
	C.sl_free(unsafe.Pointer(out.job_id))
	return sub, nil
}

// BatchError says which jobs of a SubmitBatch were refused, and why; the others were taken.
// It is the first refusal's error for errors.Is and errors.As.
type BatchError struct {
	Refused map[int]error // by the job's index in the batch
}

// Error names how many jobs were refused and the first one's error.
func (e *BatchError) Error() string {
	first := e.first()
	return fmt.Sprintf("%d of the batch's jobs were refused; job %d: %v", len(e.Refused), first, e.Refused[first])
}

// Unwrap is the first refused job's error.
func (e *BatchError) Unwrap() error { return e.Refused[e.first()] }

func (e *BatchError) first() int {
	first := -1
	for i := range e.Refused {
		if first < 0 || i < first {
			first = i
		}
	}
	return first
}

// SubmitBatch submits jobs in one call: for a persisted lane, the queued rows of the jobs it
// takes go to the log together, in one group commit, and it returns once each is durable or
// refused. Each job is taken or refused on its own, as Submit would: the result has one
// Submission per job, in order (the zero Submission for a refused one), and, when some were
// refused, a *BatchError naming them. done (which may be nil) is called exactly once for
// each taken job, never for a refused one.
//
// ctx is checked before anything is submitted, as for Submit. A job that is not valid (no
// Run) refuses the whole batch with that error: nothing is submitted.
func (l *Lane) SubmitBatch(ctx context.Context, jobs []Job, done func(JobOutcome)) ([]Submission, error) {
	const fn = "sl_lane_submit_batch"
	if err := notBegun(ctx, fn); err != nil {
		return nil, err
	}
	n := len(jobs)
	if n == 0 {
		return nil, nil
	}
	// The library's structs hold C pointers only, so they live in C memory.
	cjobs := (*[1 << 28]C.sl_job)(C.calloc(C.size_t(n), C.size_t(unsafe.Sizeof(C.sl_job{}))))[:n:n]
	outs := (*[1 << 28]C.sl_submission)(C.calloc(C.size_t(n), C.size_t(unsafe.Sizeof(C.sl_submission{}))))[:n:n]
	handles := (*[1 << 28]C.uintptr_t)(C.calloc(C.size_t(n), C.size_t(unsafe.Sizeof(C.uintptr_t(0)))))[:n:n]
	codes := (*[1 << 28]C.int)(C.calloc(C.size_t(n), C.size_t(unsafe.Sizeof(C.int(0)))))[:n:n]
	var cmem []unsafe.Pointer
	defer func() {
		for _, p := range cmem {
			C.free(p)
		}
		for _, p := range []unsafe.Pointer{unsafe.Pointer(&cjobs[0]), unsafe.Pointer(&outs[0]), unsafe.Pointer(&handles[0]), unsafe.Pointer(&codes[0])} {
			C.free(p)
		}
	}()
	for i, job := range jobs {
		C.sl_job_init(&cjobs[i])
		mem, err := cJob(fn, job, &cjobs[i])
		if err != nil {
			return nil, err
		}
		cmem = append(cmem, mem...)
		outs[i].size = C.size_t(unsafe.Sizeof(outs[i]))
	}
	for i, job := range jobs {
		handles[i] = l.r.newHandle(&jobEntry{r: l.r, run: job.Run, done: done})
	}
	err := l.r.call(fn, func() C.int {
		return C.slgo_lane_submit_batch(l.lane, &cjobs[0], &handles[0], C.size_t(n), &codes[0], &outs[0])
	})
	var batchErr *Error
	if err != nil && (!errors.As(err, &batchErr) || allZero(codes)) {
		for _, h := range handles {
			l.r.deleteHandle(h)
		}
		return nil, err
	}
	subs := make([]Submission, n)
	refused := map[int]error{}
	for i := range jobs {
		if codes[i] != 0 {
			l.r.deleteHandle(handles[i]) // done never comes for it
			if len(refused) == 0 && batchErr != nil {
				refused[i] = batchErr // the first refused job's, with the library's message
			} else {
				refused[i] = newError(codes[i], fn, fmt.Sprintf("jobs[%d] (%q) was refused: %s", i, jobs[i].ID, errorName(int(codes[i]))))
			}
			continue
		}
		subs[i] = Submission{
			JobID:         C.GoString(outs[i].job_id),
			Position:      int(outs[i].position),
			EstimatedWait: time.Duration(outs[i].estimated_wait_ms) * time.Millisecond,
		}
		C.sl_free(unsafe.Pointer(outs[i].job_id))
	}
	if len(refused) > 0 {
		return subs, &BatchError{Refused: refused}
	}
	return subs, nil
}

func allZero(codes []C.int) bool {
	for _, c := range codes {
		if c != 0 {
			return false
		}
	}
	return true
}

// queuedEntry is the userdata of a SubmitAsync's queued callback: the job's handle, which
// the callback deletes when the job was refused (its done never comes), and the function.
type queuedEntry struct {
	r      *Runtime
	job    C.uintptr_t
	queued func(Submission, error)
}

// SubmitAsync submits a job and returns at once, without waiting for its queued row: queued
// (which may be nil) is called exactly once, on a sagalane thread, with where the job stands
// once its queued row is durable, or with the error that refused it (then done is never
// called); done (which may be nil) comes after it, once the job ended. Until queued reports
// success, a crash may lose the job. Both must return quickly.
//
// It returns an error only for a job refused at once (not valid, or a closed runtime); then
// neither callback is called.
func (l *Lane) SubmitAsync(job Job, queued func(Submission, error), done func(JobOutcome)) error {
	const fn = "sl_lane_submit_async"
	var c C.sl_job
	C.sl_job_init(&c)
	cmem, err := cJob(fn, job, &c)
	if err != nil {
		return err
	}
	defer func() {
		for _, p := range cmem {
			C.free(p)
		}
	}()
	h := l.r.newHandle(&jobEntry{r: l.r, run: job.Run, done: done})
	q := l.r.newHandle(&queuedEntry{r: l.r, job: h, queued: queued})
	if err := l.r.call(fn, func() C.int { return C.slgo_lane_submit_async(l.lane, &c, h, q) }); err != nil {
		l.r.deleteHandle(h)
		l.r.deleteHandle(q)
		return err
	}
	return nil
}

// cJob checks job and fills c (initialized with sl_job_init) with its fields, all but Run,
// for the C function fn. It returns the C memory it allocated, for the caller to free once
// the library has copied the job; on an error it allocated nothing and c is as sl_job_init
// left it.
func cJob(fn string, job Job, c *C.sl_job) (cmem []unsafe.Pointer, err error) {
	switch {
	case job.Run == nil:
		return nil, errorf(C.SL_EINVAL, fn, "the job has no Run function")
	case job.MaxAttempts < 0:
		return nil, errorf(C.SL_EINVAL, fn, "MaxAttempts %d is negative", job.MaxAttempts)
	case job.RetryBackoff < 0 || job.RetryBackoff/time.Millisecond > 1<<32-1:
		return nil, errorf(C.SL_EINVAL, fn, "RetryBackoff %v is out of range", job.RetryBackoff)
	}
	defer func() {
		if err != nil {
			for _, p := range cmem {
				C.free(p)
			}
			cmem = nil
			C.sl_job_init(c) // no pointer to the memory just freed stays in it
		}
	}()
	if job.ID != "" {
		if c.id, err = cString(fn, "job id", job.ID); err != nil {
			return cmem, err
		}
		cmem = append(cmem, unsafe.Pointer(c.id))
	}
	if job.Caller != "" {
		if c.caller, err = cString(fn, "caller", job.Caller); err != nil {
			return cmem, err
		}
		cmem = append(cmem, unsafe.Pointer(c.caller))
	}
	if len(job.Metadata) > 0 {
		c.metadata = C.CBytes(job.Metadata)
		c.metadata_length = C.size_t(len(job.Metadata))
		cmem = append(cmem, c.metadata)
	}
	c.priority = C.int(job.Priority)
	c.max_attempts = C.int(job.MaxAttempts)
	c.retry_backoff_ms = C.uint32_t(job.RetryBackoff / time.Millisecond)
	return cmem, nil
}

// SubmitAndWait submits a job and waits for it to end: it returns the job's result, an
// error that is ErrJobFailed (with the job's error text), or ErrCanceled.
//
// When ctx is done first, it gives up on the job and returns an error that is both
// ErrCanceled and ctx.Err(): a job still queued is cancelled and never runs; a job already
// running sees its own context done and may still be finishing when SubmitAndWait returns.
//
// It blocks: never call it from a loop-thread callback (saga, trigger, target).
func (l *Lane) SubmitAndWait(ctx context.Context, job Job) (string, error) {
	if err := notBegun(ctx, "sl_lane_submit"); err != nil {
		return "", err
	}
	outcome := make(chan JobOutcome, 1)
	sub, err := l.submit(job, func(o JobOutcome) { outcome <- o })
	if err != nil {
		return "", err
	}
	select {
	case o := <-outcome:
		return o.result()
	case <-ctx.Done():
	}
	// A queued job ends cancelled at once; a running one sees its context done.
	// ErrNotFound means it just ended.
	_ = l.Interrupt(sub.JobID)
	select {
	case o := <-outcome:
		if o.State == JobFinished {
			return o.result()
		}
	default:
	}
	e := newError(C.SL_ECANCELED, "sl_lane_submit", "gave up on job '"+sub.JobID+"': "+ctx.Err().Error())
	e.cause = ctx.Err()
	return "", e
}

func (o JobOutcome) result() (string, error) {
	switch o.State {
	case JobFinished:
		return o.Text, nil
	case JobFailed:
		return "", errorf(C.SL_EJOBFAILED, "sl_lane_submit", "job '%s' failed after %d attempt(s): %s", o.JobID, o.Attempts, o.Text)
	default:
		return "", errorf(C.SL_ECANCELED, "sl_lane_submit", "job '%s' was cancelled", o.JobID)
	}
}

// Cancel cancels a queued job: it never runs and ends cancelled. ErrNotQueued when it is
// running (or between retries), ErrNotFound when there is no such job.
func (l *Lane) Cancel(jobID string) error {
	return l.byID("sl_lane_cancel", jobID, func(id *C.char) C.int { return C.sl_lane_cancel(l.lane, id) })
}

// Interrupt gives up on a job: a queued job, or one waiting out a retry back-off, ends
// cancelled at once; a running one sees its context done. ErrNotFound when the lane has no
// such job (it ended, say).
func (l *Lane) Interrupt(jobID string) error {
	return l.byID("sl_lane_interrupt", jobID, func(id *C.char) C.int { return C.sl_lane_interrupt(l.lane, id) })
}

func (l *Lane) byID(fn, jobID string, f func(id *C.char) C.int) error {
	c, err := cString(fn, "job id", jobID)
	if err != nil {
		return err
	}
	defer freeAll(c)
	return l.r.call(fn, func() C.int { return f(c) })
}

// SetMaxConcurrent changes how many jobs may run at once (at least 1).
func (l *Lane) SetMaxConcurrent(n int) error {
	const fn = "sl_lane_set_max_concurrent"
	if n < 1 || n > 1<<31-1 {
		return errorf(C.SL_EINVAL, fn, "max concurrent %d is out of range", n)
	}
	return l.r.call(fn, func() C.int { return C.sl_lane_set_max_concurrent(l.lane, C.int(n)) })
}

// LaneStats are a lane's counters.
type LaneStats struct {
	Queued, Running, MaxConcurrent int
	Completed, Failed, Cancelled   uint64
	MeanRun                        time.Duration // over the last 64 runs
}

// Stats reads the lane's counters.
func (l *Lane) Stats() (LaneStats, error) {
	var s C.sl_lane_stats
	s.size = C.size_t(unsafe.Sizeof(s))
	if err := l.r.call("sl_lane_get_stats", func() C.int { return C.sl_lane_get_stats(l.lane, &s) }); err != nil {
		return LaneStats{}, err
	}
	return LaneStats{
		Queued:        int(s.queued),
		Running:       int(s.running),
		MaxConcurrent: int(s.max_concurrent),
		Completed:     uint64(s.completed),
		Failed:        uint64(s.failed),
		Cancelled:     uint64(s.cancelled),
		MeanRun:       time.Duration(float64(s.mean_run_ms) * float64(time.Millisecond)),
	}, nil
}

// commandEntry is the userdata of a lane's command handler.
type commandEntry struct {
	r    *Runtime
	lane string
	fn   JobFunc
	h    C.uintptr_t
}

func (e *commandEntry) releaseHandle() { e.r.deleteHandle(e.h) }

// SetCommandHandler lets sagas send commands to "lane:<name>": each command becomes a job on
// this lane, with the id "saga-<saga id>-step-<step>", run by handler (on a worker thread,
// see JobFunc), whose Metadata() is the command JSON and whose outcome is published as
// EventLaneJobFinished/Failed/Cancelled tagged with the saga. A later call replaces the
// handler.
func (l *Lane) SetCommandHandler(handler JobFunc) error {
	const fn = "sl_lane_set_command_handler"
	if handler == nil {
		return errorf(C.SL_EINVAL, fn, "SetCommandHandler needs a function")
	}
	entry := &commandEntry{r: l.r, lane: l.name, fn: handler}
	entry.h = l.r.newHandle(entry)
	err := l.r.call(fn, func() C.int { return C.slgo_lane_set_command_handler(l.lane, entry.h) })
	if err != nil {
		l.r.deleteHandle(entry.h)
	}
	return err
}

// isCancellation says whether a job's error means it stopped because it was cancelled.
func isCancellation(err error) bool {
	return errors.Is(err, ErrCanceled) || errors.Is(err, context.Canceled)
}

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
// LaneOptions).
func (r *Runtime) CreateLane(name string, opts LaneOptions) (*Lane, error) {
	if opts.MaxConcurrent < 0 {
		return nil, errorf(C.SL_EINVAL, "MaxConcurrent %d is negative", opts.MaxConcurrent)
	}
	c, err := cString("lane name", name)
	if err != nil {
		return nil, err
	}
	defer freeAll(c)
	var o C.sl_lane_options
	C.sl_lane_options_init(&o)
	o.max_concurrent = C.int(opts.MaxConcurrent)
	if opts.Volatile {
		o.persisted = 0
	}
	// The library calls Reconstruct only during sl_lane_create, so its handle (and the C
	// copies of the rebuilt jobs' fields, which the library reads after each call returns)
	// are released once the create returned.
	var h C.uintptr_t
	if opts.Reconstruct != nil && !opts.Volatile {
		entry := &reconstructEntry{r: r, lane: name, fn: opts.Reconstruct, done: opts.OnRecovered}
		h = r.newHandle(entry)
		defer func() {
			r.deleteHandle(h)
			entry.free()
		}()
	}
	l := &Lane{r: r, name: name}
	if err := r.call(func() C.int { return C.slgo_lane_create(r.rt, c, &o, h, &l.lane) }); err != nil {
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
	cmem, err := cJob(job, c)
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
	c, err := cString("lane name", name)
	if err != nil {
		return nil, err
	}
	defer freeAll(c)
	l := &Lane{r: r, name: name}
	if err := r.call(func() C.int { return C.sl_lane_find(r.rt, c, &l.lane) }); err != nil {
		return nil, err
	}
	return l, nil
}

// Name is the lane's name.
func (l *Lane) Name() string { return l.name }

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
	// Run does the work on one of the lane's worker threads; it may block. It returns the
	// result text, or an error: one that is ErrCanceled (or context.Canceled) ends the job
	// cancelled, any other fails it with the error's text. A panic fails it too.
	Run func(job *JobContext) (string, error)
}

// JobContext is a running job's view of itself, valid only while Run runs.
type JobContext struct {
	ctx *C.sl_job_ctx
}

// ID is the job's id.
func (j *JobContext) ID() string { return C.GoString(C.sl_job_id(j.ctx)) }

// Attempt is 1 for the first run, 2 for the first retry, ...
func (j *JobContext) Attempt() int { return int(C.sl_job_attempt(j.ctx)) }

// Cancelled is true once the lane shuts down or a waiter gave up on the job: stop early if
// you can, returning ErrCanceled.
func (j *JobContext) Cancelled() bool {
	return C.sl_job_cancelled(j.ctx) != 0
}

// Metadata is a copy of the job's metadata (for a command handler: the command JSON).
func (j *JobContext) Metadata() []byte {
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
	JobFinished  JobState = C.SL_JOB_FINISHED
	JobFailed    JobState = C.SL_JOB_FAILED
	JobCancelled JobState = C.SL_JOB_CANCELLED
)

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
	run  func(*JobContext) (string, error)
	done func(JobOutcome)
	// Why a rebuilt job was not valid ("" when it was): the library failed it without
	// running it, and its outcome carries this instead of the library's text.
	invalid string
}

// Submit submits a job. For a persisted lane it returns once the queued row is durable.
// On success done (which may be nil) is called exactly once when the job ended, on a
// sagalane thread, and must return quickly; on failure never.
func (l *Lane) Submit(job Job, done func(JobOutcome)) (Submission, error) {
	sub, err := l.submit(job, done)
	return sub, err
}

func (l *Lane) submit(job Job, done func(JobOutcome)) (Submission, error) {
	var c C.sl_job
	C.sl_job_init(&c)
	cmem, err := cJob(job, &c)
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
	if err := l.r.call(func() C.int { return C.slgo_lane_submit(l.lane, &c, h, &out) }); err != nil {
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

// cJob checks job and fills c (initialized with sl_job_init) with its fields, all but Run.
// It returns the C memory it allocated, for the caller to free once the library has copied
// the job; on an error it allocated nothing and c is as sl_job_init left it.
func cJob(job Job, c *C.sl_job) (cmem []unsafe.Pointer, err error) {
	switch {
	case job.Run == nil:
		return nil, errorf(C.SL_EINVAL, "the job has no Run function")
	case job.MaxAttempts < 0:
		return nil, errorf(C.SL_EINVAL, "MaxAttempts %d is negative", job.MaxAttempts)
	case job.RetryBackoff < 0 || job.RetryBackoff/time.Millisecond > 1<<32-1:
		return nil, errorf(C.SL_EINVAL, "RetryBackoff %v is out of range", job.RetryBackoff)
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
		if c.id, err = cString("job id", job.ID); err != nil {
			return cmem, err
		}
		cmem = append(cmem, unsafe.Pointer(c.id))
	}
	if job.Caller != "" {
		if c.caller, err = cString("caller", job.Caller); err != nil {
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
// running sees JobContext.Cancelled() turn true and may still be finishing when
// SubmitAndWait returns.
//
// It blocks: never call it from a loop-thread callback (saga, trigger, target).
func (l *Lane) SubmitAndWait(ctx context.Context, job Job) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", gaveUp("", err)
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
	id, err := cString("job id", sub.JobID)
	if err == nil {
		// A queued job ends cancelled at once; a running one sees Cancelled(). ENOTFOUND
		// means it just ended.
		_ = l.r.call(func() C.int { return C.sl_lane_interrupt(l.lane, id) })
		freeAll(id)
	}
	select {
	case o := <-outcome:
		if o.State == JobFinished {
			return o.result()
		}
	default:
	}
	return "", gaveUp(sub.JobID, ctx.Err())
}

func gaveUp(jobID string, cause error) error {
	e := newError(C.SL_ECANCELED, "gave up on job '"+jobID+"': "+cause.Error())
	if jobID == "" {
		e.Message = "not submitted: " + cause.Error()
	}
	e.cause = cause
	return e
}

func (o JobOutcome) result() (string, error) {
	switch o.State {
	case JobFinished:
		return o.Text, nil
	case JobFailed:
		return "", errorf(C.SL_EJOBFAILED, "job '%s' failed after %d attempt(s): %s", o.JobID, o.Attempts, o.Text)
	default:
		return "", errorf(C.SL_ECANCELED, "job '%s' was cancelled", o.JobID)
	}
}

// Cancel cancels a queued job: it never runs and ends cancelled. ErrNotQueued when it is
// running (or between retries), ErrNotFound when there is no such job.
func (l *Lane) Cancel(jobID string) error {
	c, err := cString("job id", jobID)
	if err != nil {
		return err
	}
	defer freeAll(c)
	return l.r.call(func() C.int { return C.sl_lane_cancel(l.lane, c) })
}

// SetMaxConcurrent changes how many jobs may run at once (at least 1).
func (l *Lane) SetMaxConcurrent(n int) error {
	if n < 1 || n > 1<<31-1 {
		return errorf(C.SL_EINVAL, "max concurrent %d is out of range", n)
	}
	return l.r.call(func() C.int { return C.sl_lane_set_max_concurrent(l.lane, C.int(n)) })
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
	if err := l.r.call(func() C.int { return C.sl_lane_get_stats(l.lane, &s) }); err != nil {
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
	fn   func(*JobContext) (string, error)
	h    C.uintptr_t
}

func (e *commandEntry) releaseHandle() { e.r.deleteHandle(e.h) }

// SetCommandHandler lets sagas send commands to "lane:<name>": each command becomes a job on
// this lane run by fn (on a worker thread), whose Metadata() is the command JSON and whose
// outcome is published as EventLaneJobFinished/Failed/Cancelled tagged with the saga. A later
// call replaces the handler.
func (l *Lane) SetCommandHandler(fn func(job *JobContext) (string, error)) error {
	if fn == nil {
		return errorf(C.SL_EINVAL, "SetCommandHandler needs a function")
	}
	entry := &commandEntry{r: l.r, lane: l.name, fn: fn}
	entry.h = l.r.newHandle(entry)
	err := l.r.call(func() C.int { return C.slgo_lane_set_command_handler(l.lane, entry.h) })
	if err != nil {
		l.r.deleteHandle(entry.h)
	}
	return err
}

// isCancellation says whether a job's error means it stopped because it was cancelled.
func isCancellation(err error) bool {
	return errors.Is(err, ErrCanceled) || errors.Is(err, context.Canceled)
}

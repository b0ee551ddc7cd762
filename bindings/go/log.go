package sagalane

// #include "glue.h"
import "C"

import (
	"context"
	"encoding/json"
	"math"
	"time"
	"unsafe"
)

// SagaSummary is a saga as RecentSagas lists it.
type SagaSummary struct {
	ID            uint64          `json:"id"`
	Name          string          `json:"name"` // the saga type
	State         string          `json:"state"`
	Input         json.RawMessage `json:"input"`
	FailureReason *string         `json:"failure_reason"`
	StartedAt     time.Time       `json:"started_at"`
	EndedAt       *time.Time      `json:"ended_at"`
	Steps         int             `json:"steps"` // how many
}

// SagaRecord is a saga with its steps, as LookupSaga and UnresolvedSagas give it. States:
// running, compensating, completed, failed, failed_compensation, compensated.
type SagaRecord struct {
	ID            uint64          `json:"id"`
	Name          string          `json:"name"`
	State         string          `json:"state"`
	Input         json.RawMessage `json:"input"`
	FailureReason *string         `json:"failure_reason"`
	StartedAt     time.Time       `json:"started_at"`
	EndedAt       *time.Time      `json:"ended_at"`
	Steps         []StepRecord    `json:"steps"`
}

// StepRecord is one step of a saga. States: pending, succeeded, failed, compensated.
type StepRecord struct {
	Index         int             `json:"index"`
	Name          string          `json:"name"`
	Target        string          `json:"target"`
	Command       json.RawMessage `json:"command"`
	State         string          `json:"state"`
	Output        json.RawMessage `json:"output"`
	FailureReason *string         `json:"failure_reason"`
	StartedAt     time.Time       `json:"started_at"`
	EndedAt       *time.Time      `json:"ended_at"`
}

// JobRow is a lane job's row in the log, as RecentJobs lists it. States: queued, running,
// finished, cancelled, failed.
type JobRow struct {
	ID       string  `json:"id"`
	Lane     string  `json:"lane"`
	Caller   string  `json:"caller"`
	Priority int     `json:"priority"`
	State    string  `json:"state"`
	Attempts int     `json:"attempts"`
	Error    *string `json:"error"` // why it failed, e.g. "lost on restart"
	// Metadata is the job's metadata as JSON: embedded when it is JSON text, a string when it
	// is other UTF-8 text, null otherwise (see MetadataSize for its length in bytes).
	Metadata     json.RawMessage `json:"metadata"`
	MetadataSize int             `json:"metadata_size"`
	EnqueuedAt   time.Time       `json:"enqueued_at"`
	StartedAt    *time.Time      `json:"started_at"`
	FinishedAt   *time.Time      `json:"finished_at"`
	CancelledAt  *time.Time      `json:"cancelled_at"`
	FailedAt     *time.Time      `json:"failed_at"`
}

// logText runs a sl_log_* call fn that hands out JSON text, waiting for it until ctx is
// done. The call frees the C strings in args once it returned.
func (r *Runtime) logText(ctx context.Context, fn string, f func(out **C.char) C.int, args ...*C.char) (string, error) {
	if err := notBegun(ctx, fn); err != nil {
		freeAll(args...)
		return "", err
	}
	var out *C.char
	err := r.await(ctx, fn, func() error {
		defer freeAll(args...)
		return r.call(fn, func() C.int { return f(&out) })
	}, func(error) { C.sl_free(unsafe.Pointer(out)) })
	if err != nil {
		return "", err
	}
	defer C.sl_free(unsafe.Pointer(out))
	return C.GoString(out), nil
}

func decode[T any](fn, text string, err error) (T, error) {
	var v T
	if err != nil {
		return v, err
	}
	if err := json.Unmarshal([]byte(text), &v); err != nil {
		return v, errorf(C.SL_EJSON, fn, "decoding the log's answer: %v", err)
	}
	return v, nil
}

// The log's reads (the methods below but Vacuum) work on a read-only runtime too. Each one
// may wait for the database: if ctx is done first it returns an error that is both
// ErrCanceled and ctx.Err().

// RecentSagasJSON is up to limit sagas, most recent first, as the log's JSON array.
func (r *Runtime) RecentSagasJSON(ctx context.Context, limit int) (string, error) {
	const fn = "sl_log_recent"
	if limit < 0 || limit > 1<<31-1 {
		return "", errorf(C.SL_EINVAL, fn, "limit %d is out of range", limit)
	}
	return r.logText(ctx, fn, func(out **C.char) C.int { return C.sl_log_recent(r.rt, C.int(limit), out) })
}

// RecentSagas is up to limit sagas, most recent first.
func (r *Runtime) RecentSagas(ctx context.Context, limit int) ([]SagaSummary, error) {
	text, err := r.RecentSagasJSON(ctx, limit)
	return decode[[]SagaSummary]("sl_log_recent", text, err)
}

// UnresolvedSagasJSON is what UnresolvedSagas lists, as the
// log's JSON array.
func (r *Runtime) UnresolvedSagasJSON(ctx context.Context) (string, error) {
	return r.logText(ctx, "sl_log_unresolved", func(out **C.char) C.int { return C.sl_log_unresolved(r.rt, out) })
}

// UnresolvedSagas is the sagas an operator should look at, with their steps: those unfinished
// (running, compensating) and those in failed_compensation; at most
// SL_LOG_UNRESOLVED_DEFAULT_LIMIT of them (UnresolvedSagasLimit takes another bound).
func (r *Runtime) UnresolvedSagas(ctx context.Context) ([]SagaRecord, error) {
	text, err := r.UnresolvedSagasJSON(ctx)
	return decode[[]SagaRecord]("sl_log_unresolved", text, err)
}

// UnresolvedSagasLimit is UnresolvedSagas, at most limit of them.
func (r *Runtime) UnresolvedSagasLimit(ctx context.Context, limit int) ([]SagaRecord, error) {
	const fn = "sl_log_unresolved_limit"
	if limit < 0 || limit > math.MaxInt32 {
		return nil, newError(C.SL_EINVAL, fn, "limit out of range")
	}
	text, err := r.logText(ctx, fn, func(out **C.char) C.int { return C.sl_log_unresolved_limit(r.rt, C.int(limit), out) })
	return decode[[]SagaRecord](fn, text, err)
}

// LookupSagaJSON is saga id with its steps, as the log's JSON object; ErrNotFound when the
// log has no such saga.
func (r *Runtime) LookupSagaJSON(ctx context.Context, id uint64) (string, error) {
	return r.logText(ctx, "sl_log_saga", func(out **C.char) C.int { return C.sl_log_saga(r.rt, C.uint64_t(id), out) })
}

// LookupSaga is saga id with its steps; ErrNotFound when the log has no such saga.
func (r *Runtime) LookupSaga(ctx context.Context, id uint64) (SagaRecord, error) {
	text, err := r.LookupSagaJSON(ctx, id)
	return decode[SagaRecord]("sl_log_saga", text, err)
}

// RecentJobsJSON is up to limit lane jobs, most recent activity first, as the log's JSON
// array. lane "" lists every lane's jobs (lanes of earlier processes included), state "" jobs
// in any state; an unknown state is ErrInvalid. Rows stay until the lane sweeper purges them.
func (r *Runtime) RecentJobsJSON(ctx context.Context, lane, state string, limit int) (string, error) {
	const fn = "sl_log_jobs"
	if limit < 0 || limit > 1<<31-1 {
		return "", errorf(C.SL_EINVAL, fn, "limit %d is out of range", limit)
	}
	var cLane, cState *C.char
	var err error
	if lane != "" {
		if cLane, err = cString(fn, "lane", lane); err != nil {
			return "", err
		}
	}
	if state != "" {
		if cState, err = cString(fn, "state", state); err != nil {
			freeAll(cLane)
			return "", err
		}
	}
	return r.logText(ctx, fn, func(out **C.char) C.int { return C.sl_log_jobs(r.rt, cLane, cState, C.int(limit), out) },
		cLane, cState)
}

// RecentJobs is up to limit lane jobs, most recent activity first (see RecentJobsJSON): what
// an operator sees of the jobs, those a restart marked failed included.
func (r *Runtime) RecentJobs(ctx context.Context, lane, state string, limit int) ([]JobRow, error) {
	text, err := r.RecentJobsJSON(ctx, lane, state, limit)
	return decode[[]JobRow]("sl_log_jobs", text, err)
}

// LogStats is what the log holds, counted, as Stats gives it.
type LogStats struct {
	SchemaVersion int            `json:"schema_version"`
	Sagas         map[string]int `json:"sagas"` // by state, every state present
	// OldestRunningSaga is when the longest-running saga still running started (nil: none).
	OldestRunningSaga *time.Time                `json:"oldest_running_saga"`
	Jobs              map[string]map[string]int `json:"jobs"` // by lane, then state
	DatabaseBytes     int64                     `json:"database_bytes"`
	WALBytes          *int64                    `json:"wal_bytes"` // nil for a log in memory
}

// StatsJSON is what the log holds, counted, as the log's JSON object (see sl_log_stats).
func (r *Runtime) StatsJSON(ctx context.Context) (string, error) {
	return r.logText(ctx, "sl_log_stats", func(out **C.char) C.int { return C.sl_log_stats(r.rt, out) })
}

// Stats is what the log holds, counted: sagas by state, lane jobs by lane and state, sizes.
func (r *Runtime) Stats(ctx context.Context) (LogStats, error) {
	text, err := r.StatsJSON(ctx)
	return decode[LogStats]("sl_log_stats", text, err)
}

// Vacuum deletes the sagas that ended more than olderThan ago in a terminal state, steps
// included, and returns how many it deleted. If ctx is done first, it returns an error that
// is both ErrCanceled and ctx.Err(), and the vacuum goes on.
func (r *Runtime) Vacuum(ctx context.Context, olderThan time.Duration) (uint64, error) {
	const fn = "sl_log_vacuum"
	if err := notBegun(ctx, fn); err != nil {
		return 0, err
	}
	if olderThan < 0 {
		return 0, errorf(C.SL_EINVAL, fn, "olderThan %v is negative", olderThan)
	}
	var deleted C.uint64_t
	err := r.await(ctx, fn, func() error {
		return r.call(fn, func() C.int { return C.sl_log_vacuum(r.rt, C.uint64_t(olderThan/time.Millisecond), &deleted) })
	}, nil)
	if err != nil {
		return 0, err
	}
	return uint64(deleted), nil
}

package sagalane

// #include "glue.h"
import "C"

import (
	"encoding/json"
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

// logText runs a sl_log_* call that hands out JSON text.
func (r *Runtime) logText(f func(out **C.char) C.int) (string, error) {
	var out *C.char
	if err := r.call(func() C.int { return f(&out) }); err != nil {
		return "", err
	}
	defer C.sl_free(unsafe.Pointer(out))
	return C.GoString(out), nil
}

func decode[T any](text string, err error) (T, error) {
	var v T
	if err != nil {
		return v, err
	}
	if err := json.Unmarshal([]byte(text), &v); err != nil {
		return v, errorf(C.SL_EJSON, "decoding the log's answer: %v", err)
	}
	return v, nil
}

// RecentSagasJSON is up to limit sagas, most recent first, as the log's JSON array.
func (r *Runtime) RecentSagasJSON(limit int) (string, error) {
	if limit < 0 || limit > 1<<31-1 {
		return "", errorf(C.SL_EINVAL, "limit %d is out of range", limit)
	}
	return r.logText(func(out **C.char) C.int { return C.sl_log_recent(r.rt, C.int(limit), out) })
}

// RecentSagas is up to limit sagas, most recent first.
func (r *Runtime) RecentSagas(limit int) ([]SagaSummary, error) {
	return decode[[]SagaSummary](r.RecentSagasJSON(limit))
}

// UnresolvedSagasJSON is the sagas running, compensating or failed, with their steps, as the
// log's JSON array.
func (r *Runtime) UnresolvedSagasJSON() (string, error) {
	return r.logText(func(out **C.char) C.int { return C.sl_log_unresolved(r.rt, out) })
}

// UnresolvedSagas is the sagas running, compensating or failed, with their steps.
func (r *Runtime) UnresolvedSagas() ([]SagaRecord, error) {
	return decode[[]SagaRecord](r.UnresolvedSagasJSON())
}

// LookupSagaJSON is saga id with its steps, as the log's JSON object; ErrNotFound when the
// log has no such saga.
func (r *Runtime) LookupSagaJSON(id uint64) (string, error) {
	return r.logText(func(out **C.char) C.int { return C.sl_log_saga(r.rt, C.uint64_t(id), out) })
}

// LookupSaga is saga id with its steps; ErrNotFound when the log has no such saga.
func (r *Runtime) LookupSaga(id uint64) (SagaRecord, error) {
	return decode[SagaRecord](r.LookupSagaJSON(id))
}

// RecentJobsJSON is up to limit lane jobs, most recent activity first, as the log's JSON
// array. lane "" lists every lane's jobs (lanes of earlier processes included), state "" jobs
// in any state; an unknown state is ErrInval. Rows stay until the lane sweeper purges them.
func (r *Runtime) RecentJobsJSON(lane, state string, limit int) (string, error) {
	if limit < 0 || limit > 1<<31-1 {
		return "", errorf(C.SL_EINVAL, "limit %d is out of range", limit)
	}
	var cLane, cState *C.char
	var err error
	if lane != "" {
		if cLane, err = cString("lane", lane); err != nil {
			return "", err
		}
		defer freeAll(cLane)
	}
	if state != "" {
		if cState, err = cString("state", state); err != nil {
			return "", err
		}
		defer freeAll(cState)
	}
	return r.logText(func(out **C.char) C.int { return C.sl_log_jobs(r.rt, cLane, cState, C.int(limit), out) })
}

// RecentJobs is up to limit lane jobs, most recent activity first (see RecentJobsJSON): what
// an operator sees of the jobs, those a restart marked failed included.
func (r *Runtime) RecentJobs(lane, state string, limit int) ([]JobRow, error) {
	return decode[[]JobRow](r.RecentJobsJSON(lane, state, limit))
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
func (r *Runtime) StatsJSON() (string, error) {
	return r.logText(func(out **C.char) C.int { return C.sl_log_stats(r.rt, out) })
}

// Stats is what the log holds, counted: sagas by state, lane jobs by lane and state, sizes.
func (r *Runtime) Stats() (LogStats, error) {
	return decode[LogStats](r.StatsJSON())
}

// Vacuum deletes the sagas that ended more than olderThan ago in a terminal state, steps
// included, and returns how many it deleted.
func (r *Runtime) Vacuum(olderThan time.Duration) (uint64, error) {
	if olderThan < 0 {
		return 0, errorf(C.SL_EINVAL, "olderThan %v is negative", olderThan)
	}
	var deleted C.uint64_t
	err := r.call(func() C.int { return C.sl_log_vacuum(r.rt, C.uint64_t(olderThan/time.Millisecond), &deleted) })
	return uint64(deleted), err
}

package sagalane

// #include "glue.h"
import "C"

import (
	"errors"
	"fmt"
)

// Error is a failure reported by sagalane: one of the SL_E* codes of sagalane.h, the C
// function that reported it and the detail it gave for this call.
//
// Compare an error with the sentinels using errors.Is, which matches on the code alone:
//
//	if errors.Is(err, sagalane.ErrNotFound) { ... }
//
// and use errors.As to read the fields.
type Error struct {
	Code int    // the negative SL_E* code, e.g. -5
	Name string // the code's name, e.g. "SL_ENOTFOUND"
	// Func is the C function that failed, e.g. "sl_saga_start". When the binding refused an
	// argument before calling C, it is the function it would have called. "" for a
	// sentinel.
	Func string
	// Message is the detail of this failure (sl_runtime_errmsg, or the binding's own); ""
	// when there is none, as for a sentinel.
	Message string
	cause   error
}

// Error reads "sagalane: FUNC: NAME (description): message".
func (e *Error) Error() string {
	s := "sagalane: "
	if e.Func != "" {
		s += e.Func + ": "
	}
	s += e.Name + " (" + describe(e.Code) + ")"
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Is reports whether target is an *Error with the same code, so that
// errors.Is(err, ErrNotFound) holds for every not-found failure whatever its function and
// message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Unwrap returns the error that caused this one, if any: the context's error for a call
// that gave up waiting, the error a SagaType.New refused its input with.
func (e *Error) Unwrap() error { return e.cause }

// The sentinels, one per SL_E* code of sagalane.h. Compare with errors.Is.
var (
	// ErrInvalid is SL_EINVAL: an argument is invalid (empty, out of range, a NUL byte).
	ErrInvalid = sentinel(C.SL_EINVAL)
	// ErrNoMemory is SL_ENOMEM: the library ran out of memory.
	ErrNoMemory = sentinel(C.SL_ENOMEM)
	// ErrJSON is SL_EJSON: JSON text is malformed (sagalane takes strict RFC 8259 JSON).
	ErrJSON = sentinel(C.SL_EJSON)
	// ErrUTF8 is SL_EUTF8: a string is not valid UTF-8.
	ErrUTF8 = sentinel(C.SL_EUTF8)
	// ErrNotFound is SL_ENOTFOUND: no saga type, lane, saga, job or target has that name or
	// id.
	ErrNotFound = sentinel(C.SL_ENOTFOUND)
	// ErrExist is SL_EEXIST: the name or id is already in use.
	ErrExist = sentinel(C.SL_EEXIST)
	// ErrClosed is SL_ECLOSED: the runtime is closed (or closing).
	ErrClosed = sentinel(C.SL_ECLOSED)
	// ErrInvalidState is SL_ESTATE: the call is not valid in the runtime's state (a saga
	// started before Start, a second Start, ...).
	ErrInvalidState = sentinel(C.SL_ESTATE)
	// ErrRefused is SL_EREFUSED: a callback refused (a SagaType.New, a target).
	ErrRefused = sentinel(C.SL_EREFUSED)
	// ErrLog is SL_ELOG: the log (SQLite) failed.
	ErrLog = sentinel(C.SL_ELOG)
	// ErrBusy is SL_EBUSY: another connection held the database locked for longer than
	// Options.BusyTimeout.
	ErrBusy = sentinel(C.SL_EBUSY)
	// ErrReadOnly is SL_EREADONLY: the database is read-only, or the runtime was opened
	// with Options.ReadOnly.
	ErrReadOnly = sentinel(C.SL_EREADONLY)
	// ErrCorrupt is SL_ECORRUPT: the file is not a sagalane database, is corrupt, or was
	// written by a newer sagalane.
	ErrCorrupt = sentinel(C.SL_ECORRUPT)
	// ErrDiskFull is SL_EFULL: the disk is full.
	ErrDiskFull = sentinel(C.SL_EFULL)
	// ErrUnhealthy is SL_EUNHEALTHY: the log could not record a saga's end, and new sagas
	// are refused.
	ErrUnhealthy = sentinel(C.SL_EUNHEALTHY)
	// ErrNotQueued is SL_ENOTQUEUED: the job is running, between retries or being
	// recorded, so it cannot be cancelled as a queued one.
	ErrNotQueued = sentinel(C.SL_ENOTQUEUED)
	// ErrCanceled is SL_ECANCELED: a job ended cancelled, or a call gave up waiting because
	// its context was done (the error then also matches the context's error).
	ErrCanceled = sentinel(C.SL_ECANCELED)
	// ErrJobFailed is SL_EJOBFAILED: the job failed; the message carries its error.
	ErrJobFailed = sentinel(C.SL_EJOBFAILED)
	// ErrEventLoop is SL_ELOOP: the event loop (libuv) failed.
	ErrEventLoop = sentinel(C.SL_ELOOP)
	// ErrCannotOpen is SL_ECANTOPEN: the database file cannot be opened (a missing
	// folder, no permission).
	ErrCannotOpen = sentinel(C.SL_ECANTOPEN)
	// ErrThreadLimit is SL_ETHREAD: a thread could not be started, for a process or user
	// thread limit.
	ErrThreadLimit = sentinel(C.SL_ETHREAD)
	// ErrAgain is SL_EAGAIN: too much is waiting already (e.g. sagas waiting to launch);
	// try again later.
	ErrAgain = sentinel(C.SL_EAGAIN)
	// ErrTimedOut is SL_ETIMEDOUT: a wait ended before what it waited for happened.
	ErrTimedOut = sentinel(C.SL_ETIMEDOUT)
	// ErrForked is SL_EFORKED: sagalane was called in a child process forked without exec,
	// where it can do nothing; exec first.
	ErrForked = sentinel(C.SL_EFORKED)
	// ErrLocked is SL_ELOCKED: another runtime has the log open for writing (one log, one
	// writer); the message names its process.
	ErrLocked = sentinel(C.SL_ELOCKED)
)

func sentinel(code C.int) *Error {
	return &Error{Code: int(code), Name: C.GoString(C.sl_err_name(code))}
}

// describe is the library's description of code.
func describe(code int) string { return C.GoString(C.sl_strerror(C.int(code))) }

// newError builds the error fn reported with code, message being the detail ("" for none).
func newError(code C.int, fn, message string) *Error {
	e := sentinel(code)
	e.Func, e.Message = fn, message
	return e
}

func errorf(code C.int, fn, format string, args ...any) *Error {
	return newError(code, fn, fmt.Sprintf(format, args...))
}

// codeOf is the SL_E* code to hand back to C for err: its own when it is an *Error, else
// fallback.
func codeOf(err error, fallback C.int) C.int {
	var e *Error
	if errors.As(err, &e) && e.Code < 0 {
		return C.int(e.Code)
	}
	return fallback
}

// messageOf is err's detail: the Message of an *Error (its description when it has none),
// else its text.
func messageOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		if e.Message == "" {
			return describe(e.Code)
		}
		return e.Message
	}
	return err.Error()
}

// errorName is the name sagalane.h gives code ("SL_EUNKNOWN" for a code it does not have),
// for the test that every code has a sentinel.
func errorName(code int) string { return C.GoString(C.sl_err_name(C.int(code))) }

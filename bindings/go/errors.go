package sagalane

// #include "glue.h"
import "C"

import (
	"errors"
	"fmt"
)

// Error is a failure reported by sagalane: one of the SL_E* codes of sagalane.h, its name,
// and the detail the library gave for this call.
type Error struct {
	Code    int    // the negative SL_E* code
	Name    string // e.g. "SL_ENOTFOUND"
	Message string // the detail (sl_runtime_errmsg), or the code's description
	cause   error
}

func (e *Error) Error() string {
	return "sagalane: " + e.Name + ": " + e.Message
}

// Is reports whether target is an *Error with the same code, so that
// errors.Is(err, ErrNotFound) holds for every not-found failure whatever its message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Unwrap returns the error that caused this one, if any: a context's error for a
// SubmitAndWait that gave up, the error a SagaType.New refused its input with.
func (e *Error) Unwrap() error { return e.cause }

// The sentinels, one per code in sagalane.h. Compare with errors.Is.
var (
	ErrInval     = sentinel(C.SL_EINVAL)
	ErrNoMem     = sentinel(C.SL_ENOMEM)
	ErrJSON      = sentinel(C.SL_EJSON)
	ErrUTF8      = sentinel(C.SL_EUTF8)
	ErrNotFound  = sentinel(C.SL_ENOTFOUND)
	ErrExist     = sentinel(C.SL_EEXIST)
	ErrClosed    = sentinel(C.SL_ECLOSED)
	ErrState     = sentinel(C.SL_ESTATE)
	ErrRefused   = sentinel(C.SL_EREFUSED)
	ErrLog       = sentinel(C.SL_ELOG)
	ErrBusy      = sentinel(C.SL_EBUSY)
	ErrReadOnly  = sentinel(C.SL_EREADONLY)
	ErrCorrupt   = sentinel(C.SL_ECORRUPT)
	ErrFull      = sentinel(C.SL_EFULL)
	ErrUnhealthy = sentinel(C.SL_EUNHEALTHY)
	ErrNotQueued = sentinel(C.SL_ENOTQUEUED)
	ErrCanceled  = sentinel(C.SL_ECANCELED)
	ErrJobFailed = sentinel(C.SL_EJOBFAILED)
	ErrLoop      = sentinel(C.SL_ELOOP)
	ErrCantOpen  = sentinel(C.SL_ECANTOPEN)
	ErrThread    = sentinel(C.SL_ETHREAD)
)

func sentinel(code C.int) *Error {
	return &Error{Code: int(code), Name: C.GoString(C.sl_err_name(code)), Message: C.GoString(C.sl_strerror(code))}
}

// newError builds the error for code with message as its detail ("" for the code's
// description).
func newError(code C.int, message string) *Error {
	e := sentinel(code)
	if message != "" {
		e.Message = message
	}
	return e
}

func errorf(code C.int, format string, args ...any) *Error {
	return newError(code, fmt.Sprintf(format, args...))
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

// messageOf is err's detail: the Message of an *Error, else its text.
func messageOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return err.Error()
}

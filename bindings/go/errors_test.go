package sagalane_test

import (
	"errors"
	"testing"

	sagalane "github.com/sagalane/sagalane/bindings/go"
)

// Every code sagalane.h defines has one sentinel, and each sentinel is its code.
func TestEveryCodeHasASentinel(t *testing.T) {
	sentinels := map[*sagalane.Error]string{
		sagalane.ErrInvalid:      "SL_EINVAL",
		sagalane.ErrNoMemory:     "SL_ENOMEM",
		sagalane.ErrJSON:         "SL_EJSON",
		sagalane.ErrUTF8:         "SL_EUTF8",
		sagalane.ErrNotFound:     "SL_ENOTFOUND",
		sagalane.ErrExist:        "SL_EEXIST",
		sagalane.ErrClosed:       "SL_ECLOSED",
		sagalane.ErrInvalidState: "SL_ESTATE",
		sagalane.ErrRefused:      "SL_EREFUSED",
		sagalane.ErrLog:          "SL_ELOG",
		sagalane.ErrBusy:         "SL_EBUSY",
		sagalane.ErrReadOnly:     "SL_EREADONLY",
		sagalane.ErrCorrupt:      "SL_ECORRUPT",
		sagalane.ErrDiskFull:     "SL_EFULL",
		sagalane.ErrUnhealthy:    "SL_EUNHEALTHY",
		sagalane.ErrNotQueued:    "SL_ENOTQUEUED",
		sagalane.ErrCanceled:     "SL_ECANCELED",
		sagalane.ErrJobFailed:    "SL_EJOBFAILED",
		sagalane.ErrEventLoop:    "SL_ELOOP",
		sagalane.ErrCannotOpen:   "SL_ECANTOPEN",
		sagalane.ErrThreadLimit:  "SL_ETHREAD",
		sagalane.ErrAgain:        "SL_EAGAIN",
		sagalane.ErrTimedOut:     "SL_ETIMEDOUT",
		sagalane.ErrForked:       "SL_EFORKED",
		sagalane.ErrLocked:       "SL_ELOCKED",
	}
	byCode := map[int]*sagalane.Error{}
	for e, name := range sentinels {
		if e.Name != name || sagalane.ErrorName(e.Code) != name {
			t.Errorf("sentinel %v has code %d and name %q, want %s", e, e.Code, e.Name, name)
		}
		if other, dup := byCode[e.Code]; dup {
			t.Errorf("%v and %v share code %d", e, other, e.Code)
		}
		byCode[e.Code] = e
		if e.Func != "" || e.Message != "" || e.Unwrap() != nil {
			t.Errorf("sentinel %s has a function, message or cause: %#v", name, e)
		}
	}
	codes := 0
	for code := -1; sagalane.ErrorName(code) != "SL_EUNKNOWN"; code-- {
		codes++
		if byCode[code] == nil {
			t.Errorf("no sentinel for %s (%d)", sagalane.ErrorName(code), code)
		}
	}
	if codes != len(sentinels) {
		t.Errorf("sagalane.h has %d codes, the binding %d sentinels", codes, len(sentinels))
	}
	if got, want := sagalane.ErrNotFound.Error(), "sagalane: SL_ENOTFOUND (no such name or id)"; got != want {
		t.Errorf("ErrNotFound reads %q, want %q", got, want)
	}
}

// An error says which C function failed, with which code, and why, and matches only its own
// code's sentinel.
func TestErrorCarriesFunctionCodeAndMessage(t *testing.T) {
	rt, _ := openRuntime(t, sagalane.Options{})
	mustStart(t, rt)

	err := rt.Publish("Thing", 0, `{"a":`)
	var e *sagalane.Error
	if !errors.As(err, &e) {
		t.Fatalf("Publish of malformed JSON: %T %v, want an *Error", err, err)
	}
	if e.Code != -3 || e.Name != "SL_EJSON" || e.Func != "sl_publish" || e.Message == "" {
		t.Errorf("Publish of malformed JSON: %#v, want code -3, SL_EJSON, sl_publish and a message", e)
	}
	if want := "sagalane: sl_publish: SL_EJSON (malformed JSON): " + e.Message; err.Error() != want {
		t.Errorf("error reads %q, want %q", err.Error(), want)
	}
	if !errors.Is(err, sagalane.ErrJSON) || errors.Is(err, sagalane.ErrInvalid) {
		t.Errorf("%v: want ErrJSON and nothing else", err)
	}

	// Refused by the binding before C is called: named after the function it would call.
	err = rt.Publish("a\x00b", 0, "")
	if !errors.As(err, &e) || e.Func != "sl_publish" || !errors.Is(err, sagalane.ErrInvalid) {
		t.Errorf("Publish of a type with a NUL: %#v, want ErrInvalid from sl_publish", err)
	}
	lane, err := rt.CreateLane(ctx, "l", sagalane.LaneOptions{Volatile: true})
	if err != nil {
		t.Fatal(err)
	}
	_, err = lane.Submit(ctx, sagalane.Job{}, nil)
	if !errors.As(err, &e) || e.Func != "sl_lane_submit" || e.Message != "the job has no Run function" {
		t.Errorf("Submit of a job without Run: %#v", err)
	}
	_, err = rt.FindLane("nowhere")
	if !errors.As(err, &e) || e.Func != "sl_lane_find" || !errors.Is(err, sagalane.ErrNotFound) {
		t.Errorf("FindLane of no lane: %#v", err)
	}
}

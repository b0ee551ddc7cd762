package sagalane

// #include "glue.h"
import "C"

import (
	"encoding/json"
	"sync"
	"time"
)

// Event types the runtime publishes.
const (
	// EventSagaStarted is published once a saga's running row is durable, tagged with the
	// saga; payload {"name": saga type}. Lifecycle events (this one, EventSagaCompleted and
	// EventSagaFailed) are never fed to sagas nor matched by triggers.
	EventSagaStarted = C.SL_EVENT_SAGA_STARTED
	// EventSagaCompleted is published once a saga ended with Done, tagged with the saga;
	// payload {"name": saga type}.
	EventSagaCompleted = C.SL_EVENT_SAGA_COMPLETED
	// EventSagaFailed is published once a saga failed (Fail, a timeout, a cancellation, a
	// refused command, a failed step), tagged with the saga; payload {"name": saga type,
	// "reason": text}, with "durable": false when its terminal row could not be written.
	EventSagaFailed = C.SL_EVENT_SAGA_FAILED
	// EventSagaActionFailed is published by StepFail, tagged with the saga; payload
	// {"reason", "step"}.
	EventSagaActionFailed = C.SL_EVENT_SAGA_ACTION_FAILED
	// EventLaneJobFinished answers a command sent to "lane:<name>" whose job finished,
	// tagged with the saga; payload {"lane", "job_id", "step", "result"} ("result" parsed
	// when it is JSON).
	EventLaneJobFinished = C.SL_EVENT_LANE_JOB_FINISHED
	// EventLaneJobFailed answers a command sent to "lane:<name>" whose job failed, tagged
	// with the saga; payload {"lane", "job_id", "step", "error", "attempts"}.
	EventLaneJobFailed = C.SL_EVENT_LANE_JOB_FAILED
	// EventLaneJobCancelled answers a command sent to "lane:<name>" whose job was
	// cancelled, tagged with the saga; payload {"lane", "job_id", "step"}.
	EventLaneJobCancelled = C.SL_EVENT_LANE_JOB_CANCELLED
	// EventLagged is delivered to a subscriber that fell too far behind, where the events
	// went missing: payload {"missed": N}, SagaID 0, Version 0. It is never published.
	EventLagged = C.SL_EVENT_LAGGED
)

// Event is an event on the bus, copied out of the library.
type Event struct {
	Type    string
	SagaID  uint64          // the saga whose command it answers; 0: untagged
	Payload json.RawMessage // JSON ("null" when there is none)
	Version uint64          // position in the bus's publication order, from 1
}

func goEvent(e *C.sl_event) Event {
	return Event{
		Type:    C.GoString(e._type),
		SagaID:  uint64(e.saga_id),
		Payload: json.RawMessage(C.GoString(e.payload_json)),
		Version: uint64(e.version),
	}
}

// Publish publishes an event. sagaID 0 publishes it untagged; else it answers that saga's
// command. payloadJSON "" publishes null. Safe from any goroutine and any callback.
func (r *Runtime) Publish(eventType string, sagaID uint64, payloadJSON string) error {
	const fn = "sl_publish"
	t, err := cString(fn, "event type", eventType)
	if err != nil {
		return err
	}
	p, err := cJSON(fn, "payload", payloadJSON)
	if err != nil {
		freeAll(t)
		return err
	}
	defer freeAll(t, p)
	return r.call(fn, func() C.int { return C.sl_publish(r.rt, t, C.uint64_t(sagaID), p) })
}

// Subscription is a subscriber's place on the bus.
type Subscription struct {
	r   *Runtime
	sub *C.sl_subscription
	h   C.uintptr_t
	fn  func(Event)
	lfn func(LifecycleEvent) // a lifecycle subscription's, instead of fn

	stop     chan struct{} // closed when the subscription ends: a channel send gives up
	stopOnce sync.Once
	ch       chan Event // SubscribeChan's channel, closed once delivery is over

	mu              sync.Mutex
	delivering      bool // fn is running
	releaseOnReturn bool
	released        bool
}

// Subscribe calls fn with every event published from now on, one at a time and in order, on
// the subscription's own delivery thread. A subscriber more than buffer events behind (0
// means 4096) loses the newest ones and then receives one EventLagged event.
func (r *Runtime) Subscribe(buffer int, fn func(Event)) (*Subscription, error) {
	if fn == nil {
		return nil, errorf(C.SL_EINVAL, "sl_subscribe", "Subscribe needs a function")
	}
	return r.subscribe(buffer, fn, nil)
}

// LifecycleEvent is an event of the log's durable lifecycle stream, copied out of the
// library.
type LifecycleEvent struct {
	Position uint64 // its place in the stream: one more than the event before it
	SagaID   uint64
	Type     string          // EventSagaStarted, EventSagaCompleted or EventSagaFailed
	Payload  json.RawMessage // as the bus carries it
	At       time.Time       // when its transaction committed
}

// SubscribeLifecycle calls fn with every lifecycle event after position after (0: every one
// the log holds), in order and exactly once each, then with each new one once it is durable,
// one at a time, on the subscription's own thread. Events it was away for (in an earlier
// process, before a crash, or while fn was slow) are read back from the log: it never lags
// and never loses an event. Store the Position of the last event handled, durably, to resume
// from it after a restart. Unsubscribe ends it.
func (r *Runtime) SubscribeLifecycle(after uint64, fn func(LifecycleEvent)) (*Subscription, error) {
	const name = "sl_lifecycle_subscribe"
	if fn == nil {
		return nil, errorf(C.SL_EINVAL, name, "SubscribeLifecycle needs a function")
	}
	s := &Subscription{r: r, lfn: fn, stop: make(chan struct{})}
	return r.start(name, s, func() C.int { return C.slgo_lifecycle_subscribe(r.rt, C.uint64_t(after), s.h, &s.sub) })
}

// SubscribeChan delivers every event published from now on to the returned channel, in
// order. The channel is closed once the subscription ends (Unsubscribe or Close); events not
// received by then are dropped. A reader that falls more than buffer events behind (0 means
// 4096) loses the newest ones and then receives one EventLagged event.
func (r *Runtime) SubscribeChan(buffer int) (*Subscription, <-chan Event, error) {
	ch := make(chan Event, 16)
	sub, err := r.subscribe(buffer, nil, ch)
	if err != nil {
		return nil, nil, err
	}
	return sub, ch, nil
}

func (r *Runtime) subscribe(buffer int, fn func(Event), ch chan Event) (*Subscription, error) {
	if buffer < 0 {
		return nil, errorf(C.SL_EINVAL, "sl_subscribe", "buffer %d is negative", buffer)
	}
	s := &Subscription{r: r, fn: fn, ch: ch, stop: make(chan struct{})}
	if ch != nil {
		s.fn = func(e Event) {
			select {
			case ch <- e:
			case <-s.stop:
			}
		}
	}
	return r.start("sl_subscribe", s, func() C.int { return C.slgo_subscribe(r.rt, C.size_t(buffer), s.h, &s.sub) })
}

// start gives s a handle, lists it, and subscribes it with call.
func (r *Runtime) start(name string, s *Subscription, call func() C.int) (*Subscription, error) {
	s.h = r.newHandle(s)
	// Listed before the call: the close that would release it may start at any time.
	r.mu.Lock()
	if r.closing {
		r.mu.Unlock()
		r.deleteHandle(s.h)
		return nil, errClosed(name)
	}
	r.subs[s] = struct{}{}
	r.mu.Unlock()
	if err := r.call(name, call); err != nil {
		r.mu.Lock()
		_, listed := r.subs[s]
		delete(r.subs, s)
		r.mu.Unlock()
		if listed {
			s.release()
		}
		return nil, err
	}
	return s, nil
}

// Unsubscribe ends the subscription: once it returns, the function is not called again
// (called from inside the function: once that returns). Buffered events are dropped. After
// Close it does nothing.
func (s *Subscription) Unsubscribe() {
	r := s.r
	r.mu.Lock()
	_, listed := r.subs[s]
	if r.closing || !listed {
		// Close ends it (or it already ended).
		r.mu.Unlock()
		return
	}
	delete(r.subs, s)
	r.mu.Unlock()
	s.stopOnce.Do(func() { close(s.stop) })
	C.sl_unsubscribe(s.sub)

	r.mu.Lock()
	if r.closing && !r.subsOver {
		// A close raced with the call, and the library may have ended the subscription
		// itself, still delivering: leave the release to the close.
		r.subs[s] = struct{}{}
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()
	s.mu.Lock()
	if s.delivering {
		// Called from inside fn: the userdata is ours once fn returns.
		s.releaseOnReturn = true
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	s.release()
}

// release deletes the handle once the library is done with it, and closes the channel.
func (s *Subscription) release() {
	s.mu.Lock()
	if s.released {
		s.mu.Unlock()
		return
	}
	s.released = true
	s.mu.Unlock()
	s.stopOnce.Do(func() { close(s.stop) })
	if s.ch != nil {
		close(s.ch)
	}
	s.r.deleteHandle(s.h)
}

// deliver runs on the delivery thread (trampolines.go).
func (s *Subscription) deliver(e *C.sl_event) { s.run(func() { s.fn(goEvent(e)) }) }

// deliverLifecycle runs on a lifecycle subscription's delivery thread (trampolines.go).
func (s *Subscription) deliverLifecycle(e *C.sl_lifecycle_event) {
	s.run(func() {
		s.lfn(LifecycleEvent{
			Position: uint64(e.position),
			SagaID:   uint64(e.saga_id),
			Type:     C.GoString(e._type),
			Payload:  json.RawMessage(C.GoString(e.payload_json)),
			At:       time.UnixMilli(int64(e.at_ms)),
		})
	})
}

// run calls the subscriber's function as one delivery.
func (s *Subscription) run(call func()) {
	s.mu.Lock()
	s.delivering = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.delivering = false
		release := s.releaseOnReturn
		s.mu.Unlock()
		if release {
			s.release()
		}
	}()
	func() {
		defer func() {
			if v := recover(); v != nil {
				s.r.reportPanic("subscriber", v)
			}
		}()
		call()
	}()
}

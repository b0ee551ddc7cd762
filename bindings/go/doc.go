// Package sagalane wraps sagalane's C API (sagalane.h): a durable saga runtime with an
// event bus, a SQLite log and lanes of background jobs, embedded in a Go program.
//
// # Errors
//
// Every failure is an *Error carrying the library's code. Compare with errors.Is against
// the sentinels (ErrNotFound, ErrJSON, ErrClosed, ...), which match on the code alone:
//
//	if _, err := rt.StartSaga("nope", ""); errors.Is(err, sagalane.ErrNotFound) { ... }
//
// # Callbacks and threads
//
// sagalane calls back into Go from its own threads; each callback runs on a goroutine bound
// to that thread for the duration of the call:
//
//   - Saga Start and OnEvent, trigger predicates and target functions: the runtime's event
//     loop thread. They must return quickly: hand slow work to a lane.
//   - SagaType.New: the goroutine that calls StartSaga, or the loop thread for a trigger.
//   - Subscribe: the subscription's own delivery thread, one event at a time, in order.
//   - Job.Run and command handlers: one of the lane's worker threads; they may block.
//   - Submit's done function, and LaneOptions.OnRecovered: a sagalane thread (a worker, the
//     log writer or the loop). They must return quickly.
//   - LaneOptions.Reconstruct: a sagalane thread, during CreateLane, which waits for it.
//
// A loop-thread callback must not wait for the loop: SubmitAndWait there never returns if
// the job's end needs the loop. Close may be called from any callback: it returns at once
// and the close finishes once the callback returned (see Runtime.Closed).
//
// A panic in any callback is recovered before it reaches C: it is reported to
// Options.OnPanic and turned into the failure the callback's kind allows (a failed saga,
// a refused command, a failed job, an event not delivered, a queued job not rebuilt).
//
// # Lanes across a restart
//
// A persisted lane logs its jobs' rows. When a process dies with jobs in a lane, the next
// CreateLane of that lane marks the jobs that were running failed ("lost on restart") and
// hands each queued one to LaneOptions.Reconstruct, which rebuilds it from its JobRecord
// (the Metadata it was submitted with says what to do) or refuses it; LaneOptions.OnRecovered
// then gets the rebuilt jobs' outcomes. Runtime.RecentJobs shows every row, the failed ones
// included.
//
// # Handles
//
// Every Go value the C side holds is a runtime/cgo.Handle, deleted exactly when the C API
// gives its userdata back: release callbacks, a saga's destroy, a job's done (a rebuilt
// job's too), the end of a subscription; Reconstruct's lives for its CreateLane. After Close
// returns (or Closed() is closed, when Close was called from a callback) none is left.
package sagalane

// Package sagalane is the Go binding of sagalane, an embeddable durable saga runtime: an
// event bus, sagas whose every step is written to a SQLite log before it is dispatched, and
// lanes of background jobs, running inside a Go program through cgo.
//
//	rt, err := sagalane.Open(ctx, sagalane.Options{Path: "app.db"})
//	...
//	defer rt.Close()
//	// Register saga types, triggers, targets and lanes, then:
//	err = rt.Start(ctx)
//	id, err := rt.StartSaga(ctx, "greet", `{"name":"world"}`) // once its row is durable
//	end, err := rt.WaitSaga(ctx, id)                          // end.State: SagaCompleted, ...
//
// The package links libsagalane.a through pkg-config (`#cgo pkg-config: sagalane-static`);
// see the README for setting that up.
//
// # Errors
//
// Every failure is an *Error carrying the SL_E* code, the C function that reported it and
// its message. Compare with errors.Is against the sentinels (ErrNotFound, ErrJSON,
// ErrClosed, ...), which match on the code alone:
//
//	if _, err := rt.StartSaga(ctx, "nope", ""); errors.Is(err, sagalane.ErrNotFound) { ... }
//
// # Contexts
//
// Every method that may block takes a context.Context first: Open, Start, Shutdown,
// AdvanceTime, StartSaga, WaitSaga, CancelSaga, CreateLane, Submit, SubmitBatch,
// SubmitAndWait, the log's reads and Vacuum. SubmitAsync does not block, and takes none.
// A context already done calls nothing and returns an error that is both ErrCanceled and the
// context's error. When the context ends while the method waits, SubmitAndWait gives up on
// its job (a queued job never runs; a running one sees its own context done). The C API
// cannot interrupt the other calls: the method stops waiting and returns the same kind of
// error, and the call goes on to its end on a goroutine of its own (each method says what
// that means for it). WaitSaga, which only waits, simply stops. Submit only checks its
// context before submitting: once a job is accepted, its done function must hear how it
// ended.
//
// A job's function (JobFunc) receives a context of its own, done once the job is cancelled:
// when the runtime closes, when a SubmitAndWait gives up on it, or on Lane.Interrupt. It is
// done too once the function returned.
//
// # Callbacks and threads
//
// sagalane calls back into Go from its own threads; each callback runs on a goroutine bound
// to that thread for the duration of the call:
//
//   - Saga Start and OnEvent, trigger predicates, target functions and StartSaga's OnEnd:
//     the runtime's event loop thread, one at a time. They must return quickly: hand slow
//     work to a lane.
//   - SagaType.New: the goroutine that calls StartSaga, or the loop thread for a trigger.
//   - Subscribe's and SubscribeLifecycle's functions: the subscription's own delivery thread,
//     one event at a time, in order.
//   - A Job's Run and a lane's command handler (JobFunc): one of the lane's worker threads;
//     they may block.
//   - Submit's (and SubmitBatch's, SubmitAsync's) done function, SubmitAsync's queued
//     function, and LaneOptions.OnRecovered: a sagalane thread (a worker, the log writer or
//     the loop). They must return quickly.
//   - LaneOptions.Reconstruct: a sagalane thread, during CreateLane, which waits for it.
//   - Options.OnPanic: the thread of the callback that panicked.
//
// A loop-thread callback must not wait for the loop: SubmitAndWait there never returns if
// the job's end needs the loop. CancelSaga and AdvanceTime called there take effect at once
// instead of waiting; StartSaga and WaitSaga fail with ErrInvalidState (start or wait from a
// goroutine of its own). Close may be called from any callback: it returns at once and the
// close finishes once the callback returned (see Runtime.Closed); Shutdown must not be.
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
// job's too), the end of a subscription; Reconstruct's lives for its CreateLane; an OnEnd's
// goes after it was called, or with the close for a saga still in flight. Once the
// close finished (Close returned on a host goroutine, Shutdown returned nil, or Closed() is
// closed) none is left.
package sagalane

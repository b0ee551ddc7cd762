// Package seeds defines, in Go, the two sagas of the terminal-pool launcher sagalane grew
// out of, and the host side that answers their commands:
//
//	pool_respawn_on_promote  When a pool window is promoted, spawn a replacement pool window
//	                         and finish once the host reports it added.
//	window_cleanup_cascade   When a window closes cleanly, reap its panes, then drain the
//	                         pool if it was the last window. Crash-flagged closes start
//	                         nothing: no host is left to answer. 30 s timeout.
//
// Spawning a window is slow work, so the host runs it as a job on a persisted lane whose
// completion publishes the echo the saga waits for.
package seeds

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	sagalane "github.com/sagalane/sagalane/bindings/go"
)

// The saga types' names, as the log stores them.
const (
	RespawnOnPromote     = "pool_respawn_on_promote"
	WindowCleanupCascade = "window_cleanup_cascade"
)

// WindowsLane is the lane that spawns windows.
const WindowsLane = "windows"

// poolRespawn spawns a replacement pool window.
type poolRespawn struct{}

func (poolRespawn) Start(sagalane.SagaContext) sagalane.Action {
	return sagalane.Issue("host", `{"cmd":"spawn_pool_window"}`)
}

func (poolRespawn) OnEvent(ctx sagalane.SagaContext, ev sagalane.Event) sagalane.Action {
	if ev.SagaID == ctx.ID && ev.Type == "PoolWindowAdded" {
		return sagalane.Done()
	}
	return sagalane.Wait()
}

// windowCleanup reaps a closed window's panes, then drains the pool if it was the last.
type windowCleanup struct {
	reaped bool
}

func (*windowCleanup) Start(sagalane.SagaContext) sagalane.Action {
	return sagalane.Issue("host", `{"cmd":"reap_panes"}`)
}

func (w *windowCleanup) OnEvent(ctx sagalane.SagaContext, ev sagalane.Event) sagalane.Action {
	if ev.SagaID != ctx.ID {
		return sagalane.Wait()
	}
	switch {
	case !w.reaped && ev.Type == "PanesReaped":
		w.reaped = true
		return sagalane.Issue("host", `{"cmd":"drain_pool_if_last"}`)
	case w.reaped && (ev.Type == "PoolDrained" || ev.Type == "PoolNotLast"):
		return sagalane.Done()
	}
	return sagalane.Wait()
}

// RespawnType is pool_respawn_on_promote.
func RespawnType() sagalane.SagaType {
	return sagalane.SagaType{
		Name: RespawnOnPromote,
		New:  func(json.RawMessage) (sagalane.Saga, error) { return poolRespawn{}, nil },
	}
}

// CleanupType is window_cleanup_cascade.
func CleanupType() sagalane.SagaType {
	return sagalane.SagaType{
		Name:    WindowCleanupCascade,
		New:     func(json.RawMessage) (sagalane.Saga, error) { return &windowCleanup{}, nil },
		Timeout: 30 * time.Second,
	}
}

// CleanClose accepts a WindowClosed payload unless it is flagged "crash_detected": true.
// A payload that is not an object, or has no flag, is a clean close.
func CleanClose(payload json.RawMessage) bool {
	var closed struct {
		CrashDetected bool `json:"crash_detected"`
	}
	_ = json.Unmarshal(payload, &closed)
	return !closed.CrashDetected
}

// SpawnWindow is the slow part of spawning a window: a lane job, off the loop thread.
func SpawnWindow(ctx context.Context, _ *sagalane.RunningJob) (string, error) {
	select {
	case <-time.After(2 * time.Millisecond):
		return `{"label":"pool-new"}`, nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// Install registers both saga types, their triggers (with predicate as the WindowClosed
// filter; nil means CleanClose), the "host" target and the windows lane, and returns the
// lane.
//
// ctx bounds the lane's creation, which reconciles what a previous process left in the log.
func Install(ctx context.Context, rt *sagalane.Runtime, predicate func(json.RawMessage) bool) (*sagalane.Lane, error) {
	if predicate == nil {
		predicate = CleanClose
	}
	if err := rt.RegisterSagaType(RespawnType()); err != nil {
		return nil, err
	}
	if err := rt.RegisterSagaType(CleanupType()); err != nil {
		return nil, err
	}
	if err := rt.AddTrigger("PoolWindowPromoted", RespawnOnPromote, nil); err != nil {
		return nil, err
	}
	if err := rt.AddTrigger("WindowClosed", WindowCleanupCascade, predicate); err != nil {
		return nil, err
	}
	windows, err := rt.CreateLane(ctx, WindowsLane, sagalane.LaneOptions{MaxConcurrent: 2})
	if err != nil {
		return nil, err
	}
	host := &host{rt: rt, windows: windows}
	if err := rt.RegisterTarget("host", host.command); err != nil {
		return nil, err
	}
	return windows, nil
}

// host answers the sagas' commands.
type host struct {
	rt      *sagalane.Runtime
	windows *sagalane.Lane
}

// command runs on the loop thread: it hands slow work off and returns.
func (h *host) command(cmd sagalane.Command) error {
	var c struct {
		Cmd string `json:"cmd"`
	}
	if err := json.Unmarshal(cmd.JSON, &c); err != nil {
		return err
	}
	switch c.Cmd {
	case "spawn_pool_window":
		// On the loop thread, with no caller to give up: nothing bounds the submit but itself.
		_, err := h.windows.Submit(context.Background(), sagalane.Job{Caller: "launcher", Run: SpawnWindow}, func(o sagalane.JobOutcome) {
			// Once the window exists, tell the saga that asked for it.
			if o.State == sagalane.JobFinished {
				_ = h.rt.Publish("PoolWindowAdded", cmd.SagaID, o.Text)
			} else {
				_ = h.rt.StepFail(cmd.SagaID, cmd.Step, "spawning the window: "+o.State.String()+" "+o.Text)
			}
		})
		return err
	case "reap_panes":
		return h.rt.Publish("PanesReaped", cmd.SagaID, `{"panes":3}`)
	case "drain_pool_if_last":
		return h.rt.Publish("PoolDrained", cmd.SagaID, "")
	}
	return fmt.Errorf("%w: unknown command %q", sagalane.ErrInvalid, c.Cmd)
}

package sagalane_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sagalane/sagalane/bindings/go"
)

// order reserves, charges, then ships; a refused ship fails it, and the charge and the
// reservation are undone, last first. Its steps are declared in IssueStep's JSON form.
type order struct{ refuse bool }

func (o *order) Start(ctx sagalane.SagaContext) sagalane.Action {
	return sagalane.IssueStep(`{"target":"host","command":{"cmd":"reserve"},"compensation":{"command":{"cmd":"release"}}}`)
}

func (o *order) OnEvent(ctx sagalane.SagaContext, ev sagalane.Event) sagalane.Action {
	switch {
	case ev.Type == "No":
		return sagalane.Fail("the card was declined")
	case ev.Type != "Ok":
		return sagalane.Wait()
	case ctx.NextStep == 1:
		return sagalane.IssueStep(`{"target":"host","command":{"cmd":"charge"},"timeout_ms":5000,"compensation":{"command":{"cmd":"refund"}}}`)
	case ctx.NextStep == 2:
		return sagalane.IssueStep(fmt.Sprintf(`{"target":"host","command":{"cmd":"ship","refuse":%v}}`, o.refuse))
	}
	return sagalane.Done()
}

func TestCompensationOperatorsKeysAndTheLifecycleStream(t *testing.T) {
	rt, _ := openRuntime(t, sagalane.Options{})
	if err := rt.RegisterSagaType(sagalane.SagaType{
		Name: "order", Timeout: 10 * time.Second, Recovery: sagalane.RecoverCompensate, CompensationTimeout: 5 * time.Second,
		New: func(input json.RawMessage) (sagalane.Saga, error) {
			return &order{refuse: strings.Contains(string(input), `"refuse":true`)}, nil
		},
	}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var sent []string
	failRelease := false
	if err := rt.RegisterTarget("host", func(c sagalane.Command) error {
		var command struct {
			Cmd    string `json:"cmd"`
			Refuse bool   `json:"refuse"`
		}
		if err := json.Unmarshal(c.JSON, &command); err != nil {
			return err
		}
		mu.Lock()
		sent = append(sent, fmt.Sprintf("%s#%d", command.Cmd, c.Step))
		fail := command.Cmd == "release" && failRelease
		if fail {
			failRelease = false
		}
		mu.Unlock()
		if fail {
			return rt.StepFail(c.SagaID, c.Step, "the stock service is down")
		}
		answer := "Ok"
		if command.Refuse {
			answer = "No"
		}
		return rt.Publish(answer, c.SagaID, fmt.Sprintf(`{"step":%d}`, c.Step))
	}); err != nil {
		t.Fatal(err)
	}
	mustStart(t, rt)

	id, err := rt.StartSaga(ctx, "order", `{"refuse":true}`, sagalane.IdempotencyKey("order-7"))
	if err != nil {
		t.Fatal(err)
	}
	end, err := rt.WaitSaga(ctx, id)
	if err != nil || end.State != sagalane.SagaCompensated {
		t.Fatalf("WaitSaga = %+v, %v; want compensated", end, err)
	}
	mu.Lock()
	if got := strings.Join(sent, " "); got != "reserve#0 charge#1 ship#2 refund#3 release#4" {
		t.Errorf("dispatched %s", got)
	}
	sent = nil
	mu.Unlock()
	if again, err := rt.StartSaga(ctx, "order", `{}`, sagalane.IdempotencyKey("order-7")); err != nil || again != id {
		t.Errorf("a start with a taken key = %d, %v; want %d", again, err, id)
	}
	if err := rt.RetryCompensation(ctx, id, ""); !errors.Is(err, sagalane.ErrInvalidState) {
		t.Errorf("RetryCompensation of a compensated saga = %v, want ErrInvalidState", err)
	}

	mu.Lock()
	failRelease = true
	mu.Unlock()
	stuck, err := rt.StartSaga(ctx, "order", `{"refuse":true}`)
	if err != nil {
		t.Fatal(err)
	}
	if end, err := rt.WaitSaga(ctx, stuck); err != nil || end.State != sagalane.SagaFailedCompensation {
		t.Fatalf("WaitSaga = %+v, %v; want failed_compensation", end, err)
	}
	if err := rt.RetryCompensation(ctx, stuck, "the stock service is back"); err != nil {
		t.Fatal(err)
	}
	if end, err := rt.WaitSaga(ctx, stuck); err != nil || end.State != sagalane.SagaCompensated {
		t.Fatalf("after RetryCompensation: %+v, %v; want compensated", end, err)
	}

	// Every lifecycle event once, in order, read back from a position.
	last, err := rt.LifecyclePosition()
	if err != nil || last != 8 {
		t.Fatalf("LifecyclePosition = %d, %v; want 8", last, err)
	}
	text, err := rt.LifecycleEventsJSON(ctx, 3, 100)
	if err != nil {
		t.Fatal(err)
	}
	var events []struct {
		Position uint64 `json:"position"`
		SagaID   uint64 `json:"saga_id"`
		Type     string `json:"type"`
	}
	if err := json.Unmarshal([]byte(text), &events); err != nil {
		t.Fatal(err)
	}
	var types []string
	for i, e := range events {
		if e.Position != uint64(i)+4 || e.SagaID != stuck {
			t.Errorf("event %d: %+v", i, e)
		}
		types = append(types, e.Type)
	}
	if got := strings.Join(types, " "); got != "SagaStarted SagaCompensating SagaFailed SagaCompensating SagaFailed" {
		t.Errorf("the second saga's events: %s", got)
	}

	// Pushed: a subscriber from position 3 gets the same five events, then the new ones.
	var got []sagalane.LifecycleEvent
	arrived := make(chan struct{}, 64)
	sub, err := rt.SubscribeLifecycle(3, func(e sagalane.LifecycleEvent) {
		mu.Lock()
		got = append(got, e)
		mu.Unlock()
		arrived <- struct{}{}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	third, err := rt.StartSaga(ctx, "order", `{}`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt.WaitSaga(ctx, third); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 7; i++ { // five from the log, the third saga's start and end
		select {
		case <-arrived:
		case <-time.After(waitTimeout):
			t.Fatalf("lifecycle events: %d of 7", i)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for i, e := range got {
		if e.Position != uint64(i)+4 || e.At.IsZero() || len(e.Payload) == 0 {
			t.Errorf("pushed event %d: %+v", i, e)
		}
	}
	if got[0].Type != "SagaStarted" || got[0].SagaID != stuck || got[5].SagaID != third || got[6].Type != "SagaCompleted" {
		t.Errorf("pushed events: %+v", got)
	}
}

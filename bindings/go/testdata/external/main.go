// Command user is a program in a module of its own that imports the binding by its module
// path, as a Go user's program does: it runs a saga to completion and prints how it ended.
// The binding's README shows it.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"time"

	sagalane "github.com/sagalane/sagalane/bindings/go"
)

// greeting asks the greeter lane for a greeting, and completes once the job's outcome comes
// back to it.
type greeting struct{ input json.RawMessage }

func (g greeting) Start(sagalane.SagaContext) sagalane.Action {
	return sagalane.Issue("lane:greeter", string(g.input))
}

func (greeting) OnEvent(_ sagalane.SagaContext, ev sagalane.Event) sagalane.Action {
	switch ev.Type {
	case sagalane.EventLaneJobFinished:
		return sagalane.Done()
	case sagalane.EventLaneJobFailed, sagalane.EventLaneJobCancelled:
		return sagalane.Fail(string(ev.Payload))
	}
	return sagalane.Wait()
}

// greet is the greeter lane's work, on one of its worker threads.
func greet(_ context.Context, job *sagalane.RunningJob) (string, error) {
	var cmd struct{ Name string }
	if err := json.Unmarshal(job.Metadata(), &cmd); err != nil {
		return "", err
	}
	return fmt.Sprintf(`{"greeting":"hello, %s"}`, cmd.Name), nil
}

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fmt.Println("sagalane", sagalane.Version())

	rt, err := sagalane.Open(ctx, sagalane.Options{})
	check(err)
	defer rt.Close()
	check(rt.RegisterSagaType(sagalane.SagaType{
		Name: "greet",
		New:  func(input json.RawMessage) (sagalane.Saga, error) { return greeting{input}, nil },
	}))
	greeter, err := rt.CreateLane(ctx, "greeter", sagalane.LaneOptions{Volatile: true})
	check(err)
	check(greeter.SetCommandHandler(greet))
	_, events, err := rt.SubscribeChan(0)
	check(err)
	check(rt.Start(ctx))

	id, err := rt.StartSaga("greet", `{"name":"world"}`)
	check(err)
	for ev := range events {
		if ev.SagaID == id && ev.Type == sagalane.EventSagaFailed {
			log.Fatalf("saga %d failed: %s", id, ev.Payload)
		}
		if ev.SagaID == id && ev.Type == sagalane.EventSagaCompleted {
			fmt.Printf("saga %d completed\n", id)
			break
		}
	}
	saga, err := rt.LookupSaga(ctx, id)
	check(err)
	fmt.Printf("log: saga %d %s %s, %d step(s)\n", saga.ID, saga.Name, saga.State, len(saga.Steps))
	fmt.Printf("log: step 0 output %s\n", saga.Steps[0].Output)
	check(rt.Shutdown(ctx))
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

// Command user is a program in a module of its own that imports the binding by its module
// path, as a Go user's program does: it runs a saga to completion and prints how it ended.
package main

import (
	"encoding/json"
	"fmt"
	"log"

	sagalane "github.com/sagalane/sagalane/bindings/go"
)

// greeting asks the greeter lane for a greeting and completes once the job's outcome comes
// back to it.
type greeting struct{ input json.RawMessage }

func (g greeting) Start(sagalane.SagaContext) sagalane.Action {
	return sagalane.Issue("lane:greeter", string(g.input))
}

func (greeting) OnEvent(ctx sagalane.SagaContext, ev sagalane.Event) sagalane.Action {
	switch ev.Type {
	case sagalane.EventLaneJobFinished:
		return sagalane.Done()
	case sagalane.EventLaneJobFailed, sagalane.EventLaneJobCancelled:
		return sagalane.Fail(string(ev.Payload))
	}
	return sagalane.Wait()
}

func main() {
	fmt.Println("sagalane", sagalane.Version())
	rt, err := sagalane.Open(sagalane.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer rt.Close()

	err = rt.RegisterSagaType(sagalane.SagaType{
		Name: "greet",
		New:  func(input json.RawMessage) (sagalane.Saga, error) { return greeting{input}, nil },
	})
	if err != nil {
		log.Fatal(err)
	}
	greeter, err := rt.CreateLane("greeter", sagalane.LaneOptions{Volatile: true})
	if err != nil {
		log.Fatal(err)
	}
	err = greeter.SetCommandHandler(func(job *sagalane.JobContext) (string, error) {
		var cmd struct{ Name string }
		if err := json.Unmarshal(job.Metadata(), &cmd); err != nil {
			return "", err
		}
		return fmt.Sprintf(`{"greeting":"hello, %s"}`, cmd.Name), nil
	})
	if err != nil {
		log.Fatal(err)
	}
	_, events, err := rt.SubscribeChan(0)
	if err != nil {
		log.Fatal(err)
	}
	if err := rt.Start(); err != nil {
		log.Fatal(err)
	}

	id, err := rt.StartSaga("greet", `{"name":"world"}`)
	if err != nil {
		log.Fatal(err)
	}
	for ev := range events {
		if ev.SagaID != id {
			continue
		}
		if ev.Type == sagalane.EventSagaFailed {
			log.Fatalf("saga %d failed: %s", id, ev.Payload)
		}
		if ev.Type == sagalane.EventSagaCompleted {
			fmt.Printf("saga %d completed\n", id)
			break
		}
	}
	saga, err := rt.LookupSaga(id)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("log: saga %d %s %s, %d step(s)\n", saga.ID, saga.Name, saga.State, len(saga.Steps))
	if len(saga.Steps) > 0 {
		fmt.Printf("log: step 0 output %s\n", saga.Steps[0].Output)
	}
}

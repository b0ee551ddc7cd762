package sagalane_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sagalane "github.com/sagalane/sagalane/bindings/go"
)

// oneCommand sends its input to target "host" and completes on the host's "Done".
type oneCommand struct{ input string }

func (s *oneCommand) Start(sagalane.SagaContext) sagalane.Action {
	return sagalane.Issue("host", s.input)
}

func (s *oneCommand) OnEvent(_ sagalane.SagaContext, ev sagalane.Event) sagalane.Action {
	if ev.Type == "Done" {
		return sagalane.Done()
	}
	return sagalane.Wait()
}

// pipeHost plays the host a runtime dials: a Unix-socket listener in this process.
type pipeHost struct {
	t        *testing.T
	listener net.Listener
	conn     net.Conn
	reader   *bufio.Reader
}

func listenHost(t *testing.T, path string) *pipeHost {
	t.Helper()
	listener, err := net.Listen("unix", path)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	return &pipeHost{t: t, listener: listener}
}

func (h *pipeHost) close() {
	if h.conn != nil {
		h.conn.Close()
	}
	h.listener.Close()
}

// frame reads the runtime's next frame.
func (h *pipeHost) frame() map[string]any {
	h.t.Helper()
	h.conn.SetReadDeadline(time.Now().Add(waitTimeout))
	line, err := h.reader.ReadString('\n')
	if err != nil {
		h.t.Fatalf("reading from the runtime: %v", err)
	}
	var frame map[string]any
	if err := json.Unmarshal([]byte(line), &frame); err != nil {
		h.t.Fatalf("a frame that is not JSON: %q: %v", line, err)
	}
	return frame
}

func (h *pipeHost) send(frame map[string]any) {
	h.t.Helper()
	text, _ := json.Marshal(frame)
	if _, err := h.conn.Write(append(text, '\n')); err != nil {
		h.t.Fatalf("writing to the runtime: %v", err)
	}
}

// accept takes the runtime's connection and answers its hello.
func (h *pipeHost) accept() {
	h.t.Helper()
	h.listener.(*net.UnixListener).SetDeadline(time.Now().Add(waitTimeout))
	conn, err := h.listener.Accept()
	if err != nil {
		h.t.Fatalf("accept: %v", err)
	}
	h.conn, h.reader = conn, bufio.NewReader(conn)
	hello := h.frame()
	if hello["type"] != "hello" || hello["version"] != float64(1) || fmt.Sprint(hello["targets"]) != "[host]" {
		h.t.Fatalf("not the hello expected: %v", hello)
	}
	h.send(map[string]any{"type": "welcome", "version": 1, "server": "go host", "max_frame": 1 << 20})
}

// answer reads a command and answers it with step.done "Done"; returns the command's "n".
func (h *pipeHost) answer() int {
	h.t.Helper()
	frame := h.frame()
	if frame["type"] != "command" || frame["target"] != "host" {
		h.t.Fatalf("not a command for host: %v", frame)
	}
	command := frame["command"].(map[string]any)
	h.send(map[string]any{"type": "step.done", "saga_id": frame["saga_id"], "step": frame["step"], "event": "Done",
		"payload": map[string]any{"n": command["n"]}})
	return int(command["n"].(float64))
}

func until(t *testing.T, what string, condition func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !condition() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func status(t *testing.T, rt *sagalane.Runtime) sagalane.TargetStatus {
	t.Helper()
	s, err := rt.TargetStatus("host")
	if err != nil {
		t.Fatalf("TargetStatus: %v", err)
	}
	return s
}

func registerOneCommand(t *testing.T, rt *sagalane.Runtime) {
	t.Helper()
	err := rt.RegisterSagaType(sagalane.SagaType{Name: "one_command", Timeout: 10 * time.Second,
		New: func(input json.RawMessage) (sagalane.Saga, error) { return &oneCommand{input: string(input)}, nil }})
	if err != nil {
		t.Fatal(err)
	}
}

func TestConnectTargetAnswersOverTheSocketAndBuffersWhileTheHostIsAway(t *testing.T) {
	dir, err := os.MkdirTemp("", "sl-go-target-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "host.sock")
	rt, _ := openRuntime(t, sagalane.Options{})
	registerOneCommand(t, rt)

	// Options and names are checked.
	for _, bad := range []sagalane.TargetOptions{{BufferExpiry: -time.Second}, {MaxFrame: 10},
		{ReconnectMin: 2 * time.Second, ReconnectMax: time.Second}, {MaxBuffered: 1 << 33}} {
		if err := rt.ConnectTarget("host", path, bad); !errors.Is(err, sagalane.ErrInvalid) {
			t.Errorf("ConnectTarget with %+v: %v, want ErrInvalid", bad, err)
		}
	}
	if err := rt.ConnectTarget("a:b", path, sagalane.TargetOptions{}); !errors.Is(err, sagalane.ErrInvalid) {
		t.Errorf("a name with ':': %v", err)
	}
	if err := rt.ConnectTarget("host", strings.Repeat("x", 200), sagalane.TargetOptions{}); !errors.Is(err, sagalane.ErrInvalid) {
		t.Errorf("a path too long: %v", err)
	}
	if _, err := rt.TargetStatus("host"); !errors.Is(err, sagalane.ErrNotFound) {
		t.Errorf("TargetStatus before ConnectTarget: %v, want ErrNotFound", err)
	}

	host := listenHost(t, path)
	opts := sagalane.TargetOptions{ReconnectMin: 10 * time.Millisecond, ReconnectMax: 50 * time.Millisecond}
	if err := rt.ConnectTarget("host", path, opts); err != nil {
		t.Fatal(err)
	}
	if err := rt.ConnectTarget("host", path, opts); !errors.Is(err, sagalane.ErrExist) {
		t.Errorf("a second ConnectTarget of host: %v, want ErrExist", err)
	}
	if err := rt.Start(ctx); err != nil {
		t.Fatal(err)
	}
	host.accept()
	until(t, "the connection", func() bool { return status(t, rt).Connected })

	var ids []uint64
	for n := 1; n <= 2; n++ {
		id, err := rt.StartSaga(ctx, "one_command", fmt.Sprintf(`{"n":%d}`, n))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if a, b := host.answer(), host.answer(); a != 1 || b != 2 {
		t.Errorf("commands in the order %d, %d", a, b)
	}
	for _, id := range ids {
		if end, err := rt.WaitSaga(ctx, id); err != nil || end.State != sagalane.SagaCompleted {
			t.Errorf("saga %d: %+v, %v", id, end, err)
		}
	}
	if s := status(t, rt); s.Sent != 2 || s.Awaiting != 0 || s.Connections != 1 || s.BadFrames != 0 {
		t.Errorf("after two answers: %+v", s)
	}

	// The host goes away; commands issued meanwhile wait, and reach it in order when it is back.
	host.close()
	until(t, "the disconnection", func() bool { return !status(t, rt).Connected })
	ids = ids[:0]
	for n := 3; n <= 4; n++ {
		id, err := rt.StartSaga(ctx, "one_command", fmt.Sprintf(`{"n":%d}`, n))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	until(t, "two buffered commands", func() bool { return status(t, rt).Buffered == 2 })
	host = listenHost(t, path)
	defer host.close()
	host.accept()
	if a, b := host.answer(), host.answer(); a != 3 || b != 4 {
		t.Errorf("buffered commands in the order %d, %d", a, b)
	}
	for _, id := range ids {
		if end, err := rt.WaitSaga(ctx, id); err != nil || end.State != sagalane.SagaCompleted {
			t.Errorf("saga %d: %+v, %v", id, end, err)
		}
	}
	if s := status(t, rt); !s.Connected || s.Buffered != 0 || s.Sent != 4 || s.Connections != 2 || s.Expired != 0 {
		t.Errorf("after the reconnection: %+v", s)
	}

	// What a host may not send is answered with an error frame and counted.
	host.send(map[string]any{"type": "saga.start", "saga": "one_command"})
	if refusal := host.frame(); refusal["type"] != "error" || refusal["code"] != "unexpected_type" {
		t.Errorf("answer to a saga.start: %v", refusal)
	}
	if s := status(t, rt); s.BadFrames != 1 {
		t.Errorf("bad frames: %d", s.BadFrames)
	}
}

func TestConnectTargetExpiresACommandNoHostTakes(t *testing.T) {
	dir, err := os.MkdirTemp("", "sl-go-target-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	rt, _ := openRuntime(t, sagalane.Options{})
	registerOneCommand(t, rt)
	// Nobody listens at the path.
	if err := rt.ConnectTarget("host", filepath.Join(dir, "nobody.sock"), sagalane.TargetOptions{BufferExpiry: 150 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if err := rt.Start(ctx); err != nil {
		t.Fatal(err)
	}
	id, err := rt.StartSaga(ctx, "one_command", `{"n":1}`)
	if err != nil {
		t.Fatal(err)
	}
	end, err := rt.WaitSaga(ctx, id)
	if err != nil || end.State != sagalane.SagaFailed || !strings.Contains(end.Reason, "host unreachable") {
		t.Errorf("a saga whose host never came: %+v, %v", end, err)
	}
	if s := status(t, rt); s.Expired != 1 || s.Buffered != 0 || s.Connected {
		t.Errorf("after the expiry: %+v", s)
	}
}

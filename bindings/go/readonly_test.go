package sagalane_test

import (
	"errors"
	"path/filepath"
	"testing"

	sagalane "github.com/sagalane/sagalane/bindings/go"
)

func TestReadOnlyDiagnostics(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.db")
	rt, rec := openRuntime(t, sagalane.Options{Path: path})
	quick := sagaFuncs{start: func(sagalane.SagaContext) sagalane.Action { return sagalane.Done() }}
	if err := rt.RegisterSagaType(sagaType("quick", quick)); err != nil {
		t.Fatal(err)
	}
	mustStart(t, rt)
	id, err := rt.StartSaga(ctx, "quick", "")
	if err != nil {
		t.Fatal(err)
	}
	rec.terminal(t, id)

	// A second, read-only connection while the first still owns the database.
	ro, err := sagalane.Open(ctx, sagalane.Options{Path: path, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer closeRuntime(t, ro)
	if _, err := ro.Subscribe(0, func(sagalane.Event) {}); err != nil {
		t.Fatalf("Subscribe on a read-only runtime: %v", err)
	}
	recent, err := ro.RecentSagas(ctx, 5)
	if err != nil || len(recent) != 1 || recent[0].ID != id || recent[0].State != "completed" {
		t.Errorf("RecentSagas read-only = %+v, %v", recent, err)
	}
	// sagalane.h documents SL_ESTATE here; the library answers SL_EREADONLY. Either tells
	// the caller it cannot start.
	if err := ro.Start(ctx); !errors.Is(err, sagalane.ErrInvalidState) && !errors.Is(err, sagalane.ErrReadOnly) {
		t.Errorf("Start of a read-only runtime: %v, want ErrState", err)
	}
	if _, err := ro.CreateLane(ctx, "x", sagalane.LaneOptions{}); !errors.Is(err, sagalane.ErrReadOnly) {
		t.Errorf("CreateLane on a read-only runtime: %v, want ErrReadOnly", err)
	}
}

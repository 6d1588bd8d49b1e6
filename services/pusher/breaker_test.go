package pusher

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/recordsync/record-sync/crm"
	"github.com/recordsync/record-sync/shared/config"
	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/natstest"
)

// TestNoPermitIsNoCRMFailure: requests not sent for want of a permit
// neither trip the circuit nor cost an attempt.
func TestNoPermitIsNoCRMFailure(t *testing.T) {
	b := newBreaker("hubspot", time.Minute, slog.New(slog.DiscardHandler))
	for range 2 * tripAfter {
		rs := b.push(2, func() []crm.Result {
			return notSent([]crm.Result{crm.FromError(context.DeadlineExceeded), crm.FromError(context.DeadlineExceeded)}, true)
		})
		if rs[0].Code != codeNoPermit || !notACRMFailure(rs[0]) {
			t.Fatalf("result %+v, want %s", rs[0], codeNoPermit)
		}
	}
	if s := b.cb.State(); s != gobreaker.StateClosed {
		t.Fatalf("circuit %s after requests that were never sent", s)
	}
	if rs := notSent([]crm.Result{crm.FromError(errors.New("connection refused"))}, false); rs[0].Code != "NETWORK" {
		t.Fatalf("a request that was sent: %+v", rs[0])
	}
}

// TestNewBreakerRewritesCircuit: a pusher that starts replaces the open
// circuit a stopped one left in KV sync_config with its own state.
func TestNewBreakerRewritesCircuit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv, "operator")
	if err := mesh.Ensure(ctx, js, mesh.Options{}); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, mesh.BucketConfig)
	if err != nil {
		t.Fatal(err)
	}
	store := config.NewStore(kv, config.Defaults{}, slog.New(slog.DiscardHandler))
	if err := store.ReportCircuit(ctx, config.Circuit{Target: "hubspot", State: gobreaker.StateOpen.String(), Since: time.Now()}); err != nil {
		t.Fatal(err)
	}
	b := newBreaker("hubspot", time.Minute, slog.New(slog.DiscardHandler))
	if s := b.state(ctx, store, "hubspot"); s != gobreaker.StateClosed {
		t.Fatalf("a new breaker is %s", s)
	}
	e, err := kv.Get(ctx, config.CircuitPrefix+"hubspot")
	if err != nil {
		t.Fatal(err)
	}
	var c config.Circuit
	if err := json.Unmarshal(e.Value(), &c); err != nil || c.State != gobreaker.StateClosed.String() {
		t.Fatalf("circuit in KV after a pusher started: %s (%v)", e.Value(), err)
	}
}

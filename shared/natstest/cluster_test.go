package natstest_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/recordsync/record-sync/shared/natstest"
)

// TestCluster checks the cluster helper: an R3 stream has a leader; with
// that server stopped another leads and the stream keeps taking writes;
// the stopped one comes back on its store; an isolated server loses its
// routes and a server that is not isolated keeps the stream writable.
func TestCluster(t *testing.T) {
	c := natstest.RunCluster(t)
	_, js := c.Connect(t, "operator")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t"}, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	leader := -1
	natstest.Eventually(t, 20*time.Second, "stream leader", func() bool { leader = c.StreamLeader("T"); return leader >= 0 })
	publish := func(what string) {
		t.Helper()
		natstest.Eventually(t, 30*time.Second, what, func() bool {
			pctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			_, err := js.Publish(pctx, "t", []byte("x"))
			return err == nil
		})
	}
	publish("publish")

	c.Stop(leader)
	natstest.Eventually(t, 20*time.Second, "a new leader", func() bool { l := c.StreamLeader("T"); return l >= 0 && l != leader })
	publish("publish without the old leader")
	c.Restart(leader)
	c.WaitMetaLeader()

	iso := c.StreamLeader("T")
	c.Isolate(iso)
	natstest.Eventually(t, 20*time.Second, "the isolated server loses its routes", func() bool {
		s := c.Server(iso)
		return s != nil && s.NumRoutes() == 0
	})
	natstest.Eventually(t, 30*time.Second, "a leader among the others", func() bool {
		for i := range 3 {
			if i != iso && c.Server(i).JetStreamIsStreamLeader(natstest.Account, "T") {
				return true
			}
		}
		return false
	})
	c.Heal(iso)
	natstest.Eventually(t, 30*time.Second, "routes again", func() bool { return c.Server(iso).NumRoutes() > 0 })
	publish("publish after healing")
	st, err := js.Stream(ctx, "T")
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().State.Msgs; n < 3 {
		t.Fatalf("%d messages, want 3 or more", n)
	}
}

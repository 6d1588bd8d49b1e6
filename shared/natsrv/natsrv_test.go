package natsrv_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/natsrv"
	"github.com/recordsync/record-sync/shared/natstest"
)

// services are the NATS users of the services (and of the edge's admin
// endpoints): none may manage JetStream.
var services = []string{"ingest", "admin", "rules", "pusher", "status"}

// setUp starts a server and does what `recordsync setup` does, as the
// operator.
func setUp(t *testing.T) (*natsrv.Server, jetstream.JetStream) {
	t.Helper()
	s := natstest.RunServer(t)
	_, jsOp := natstest.Connect(t, s, "operator")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := mesh.Ensure(ctx, jsOp, mesh.Options{}); err != nil {
		t.Fatal(err)
	}
	if err := mesh.EnsureConsumers(ctx, jsOp, []string{"hubspot"}, mesh.Options{}); err != nil {
		t.Fatal(err)
	}
	return s, jsOp
}

// connect connects as user; the refusals it gets are checked with
// LastError, not printed.
func connect(t *testing.T, s *natsrv.Server, user string) *nats.Conn {
	t.Helper()
	nc, err := s.Connect(user, nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// refused checks that the server refused what (`Publish to "subject"` or
// `Subscription to "subject"`) on nc: it answers a refused operation with
// -ERR before the PONG of a flush, so LastError says so once Flush
// returns.
func refused(t *testing.T, nc *nats.Conn, what string) {
	t.Helper()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	want := "Permissions Violation for " + what
	if err := nc.LastError(); !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), want) {
		t.Fatalf("%s was not refused: last error %v, want %q", what, err, want)
	}
}

// allowed checks that the server refused nothing on nc.
func allowed(t *testing.T, nc *nats.Conn, what string) {
	t.Helper()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := nc.LastError(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// TestPermissions publishes, as each service user, to subjects of its own
// job and of others': only the first are allowed.
func TestPermissions(t *testing.T) {
	s, _ := setUp(t)
	tests := []struct {
		name, user, subject string
		allowed             bool
	}{
		{"ingest publishes events", "ingest", mesh.SubjectIn, true},
		{"ingest may not write status", "ingest", "$KV.sync_status.x", false},
		{"ingest may not write config", "ingest", "$KV.sync_config.hubspot", false},
		{"ingest may not write rules", "ingest", "$KV.sync_rules.rules", false},
		{"ingest may not impersonate rules", "ingest", mesh.SubjectStatus("rules"), false},
		{"admin writes config", "admin", "$KV.sync_config.hubspot", true},
		{"admin writes rules", "admin", "$KV.sync_rules.rules", true},
		{"admin may not write circuits", "admin", "$KV.sync_config.circuit.hubspot", false},
		{"admin may not publish events", "admin", mesh.SubjectIn, false},
		{"status writes status", "status", "$KV.sync_status.x", true},
		{"status may not publish events", "status", mesh.SubjectIn, false},
		{"status may not route work", "status", mesh.SubjectPush("hubspot", 3), false},
		{"rules routes work", "rules", mesh.SubjectPush("hubspot", 3), true},
		{"pusher writes a record retry", "pusher", mesh.SubjectPushRecord("hubspot", 3, "c-1"), true},
		{"rules may not dead-letter", "rules", mesh.SubjectDLQ("hubspot", "c-1"), false},
		{"rules may not write rules", "rules", "$KV.sync_rules.rules", false},
		{"pusher dead-letters", "pusher", mesh.SubjectDLQ("hubspot", "c-1"), true},
		{"pusher reports its circuit", "pusher", "$KV.sync_config.circuit.hubspot", true},
		{"pusher may not write config", "pusher", "$KV.sync_config.hubspot", false},
		{"pusher may not write rules", "pusher", "$KV.sync_rules.rules", false},
		{"pusher may not write status", "pusher", "$KV.sync_status.x", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nc := connect(t, s, tt.user)
			if err := nc.Publish(tt.subject, []byte(`{}`)); err != nil {
				t.Fatal(err)
			}
			if tt.allowed {
				allowed(t, nc, tt.user+" publishing "+tt.subject)
			} else {
				refused(t, nc, fmt.Sprintf("Publish to %q", tt.subject))
			}
		})
	}
}

// TestNoServiceManagesJetStream tries, as each service user, what only
// `recordsync setup` (the operator) may do: purge, delete or reconfigure a
// stream, delete, create or reconfigure a consumer, read another service's
// consumer or forge its acks. Each is refused, and the operator sees
// every stream and consumer as it was.
func TestNoServiceManagesJetStream(t *testing.T) {
	s, jsOp := setUp(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Something to lose: an event and a status change.
	for _, subj := range []string{mesh.SubjectIn, mesh.SubjectStatus("rules")} {
		if _, err := jsOp.Publish(ctx, subj, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	shorter := fmt.Sprintf(`{"name":%q,"subjects":["sync.in","sync.in.batch"],"retention":"workqueue","max_age":1000000000,"storage":"file"}`, mesh.StreamIn)
	probes := []struct {
		name, subject, body string
		// not: the one user whose job this is
		not string
	}{
		{"purge SYNC_STATUS", "$JS.API.STREAM.PURGE." + mesh.StreamStatus, "", ""},
		{"delete KV_sync_status", "$JS.API.STREAM.DELETE.KV_" + mesh.BucketStatus, "", ""},
		{"purge KV_sync_config", "$JS.API.STREAM.PURGE.KV_" + mesh.BucketConfig, "", ""},
		{"delete a config value", "$JS.API.STREAM.MSG.DELETE.KV_" + mesh.BucketConfig, `{"seq":1}`, ""},
		{"delete SYNC_DLQ", "$JS.API.STREAM.DELETE." + mesh.StreamDLQ, "", ""},
		{"shorten SYNC_IN's max age", "$JS.API.STREAM.UPDATE." + mesh.StreamIn, shorter, ""},
		{"create a stream", "$JS.API.STREAM.CREATE.EVIL", `{"name":"EVIL","subjects":["sync.>"]}`, ""},
		{"delete a message", "$JS.API.STREAM.MSG.DELETE." + mesh.StreamIn, `{"seq":1}`, ""},
		{"delete the rules consumer", "$JS.API.CONSUMER.DELETE." + mesh.StreamIn + "." + mesh.ConsumerRules, "", ""},
		{"reconfigure the status consumer", "$JS.API.CONSUMER.CREATE." + mesh.StreamStatus + "." + mesh.ConsumerStatus, "", ""},
		{"reconfigure a pusher consumer", "$JS.API.CONSUMER.DURABLE.CREATE." + mesh.StreamPush + "." + mesh.ConsumerPusher("hubspot", 0), "", ""},
		{"create a consumer on SYNC_IN", "$JS.API.CONSUMER.CREATE." + mesh.StreamIn + ".spy." + mesh.SubjectIn, "", ""},
		{"create an ephemeral consumer on KV_sync_status", "$JS.API.CONSUMER.CREATE.KV_" + mesh.BucketStatus, "", ""},
		{"read the rules service's events", "$JS.API.CONSUMER.MSG.NEXT." + mesh.StreamIn + "." + mesh.ConsumerRules, `{"batch":1}`, "rules"},
		{"read the status service's changes", "$JS.API.CONSUMER.MSG.NEXT." + mesh.StreamStatus + "." + mesh.ConsumerStatus, `{"batch":1}`, "status"},
		{"read a pusher's work", "$JS.API.CONSUMER.MSG.NEXT." + mesh.StreamPush + "." + mesh.ConsumerPusher("hubspot", 0), `{"batch":1}`, "pusher"},
		{"read a record's pending retry", "$JS.API.STREAM.MSG.GET." + mesh.StreamPush, `{"last_by_subj":"sync.push.hubspot.0.c-1"}`, "pusher"},
		{"ack the rules service's events", "$JS.ACK." + mesh.StreamIn + "." + mesh.ConsumerRules + ".1.1.1.0.0", "+ACK", "rules"},
		{"step down a stream leader", "$JS.API.STREAM.LEADER.STEPDOWN." + mesh.StreamIn, "", ""},
	}
	for _, user := range services {
		for _, p := range probes {
			if p.not == user {
				continue
			}
			t.Run(user+" may not "+p.name, func(t *testing.T) {
				nc := connect(t, s, user)
				if err := nc.PublishRequest(p.subject, nc.NewInbox(), []byte(p.body)); err != nil {
					t.Fatal(err)
				}
				refused(t, nc, fmt.Sprintf("Publish to %q", p.subject))
			})
		}
	}
	// The pusher reads a record's pending retry back (a new owner of its
	// partition learns what it holds).
	_, jsPusher0 := natstest.Connect(t, s, "pusher")
	if _, err := jsPusher0.Publish(ctx, mesh.SubjectPushRecord("hubspot", 0, "c-1"), []byte(`{"items":[]}`)); err != nil {
		t.Fatal(err)
	}
	if st, err := jsPusher0.Stream(ctx, mesh.StreamPush); err != nil {
		t.Fatal(err)
	} else if _, err := st.GetLastMsgForSubject(ctx, mesh.SubjectPushRecord("hubspot", 0, "c-1")); err != nil {
		t.Errorf("the pusher reading a record's pending retry: %v", err)
	}
	// The pusher may create SYNC_RATELIMIT (a memory stream a restart
	// loses), but not over the one that exists with another configuration.
	_, jsPusher := natstest.Connect(t, s, "pusher")
	for _, cfg := range mesh.Streams(mesh.Options{}) {
		if cfg.Name != mesh.StreamRate {
			continue
		}
		cfg.MaxAge, cfg.Storage = time.Second, jetstream.FileStorage
		if _, err := jsPusher.CreateStream(ctx, cfg); !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			t.Errorf("pusher re-creating SYNC_RATELIMIT with another configuration: %v, want %v", err, jetstream.ErrStreamNameAlreadyInUse)
		}
	}
	// Everything is as setup left it.
	if st, err := jsOp.Stream(ctx, mesh.StreamRate); err != nil || st.CachedInfo().Config.MaxAge == time.Second {
		t.Errorf("SYNC_RATELIMIT: %v, max age %v", err, st.CachedInfo().Config.MaxAge)
	}
	for _, name := range []string{mesh.StreamIn, mesh.StreamStatus, mesh.StreamDLQ, "KV_" + mesh.BucketStatus} {
		st, err := jsOp.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		if name == mesh.StreamIn && st.CachedInfo().Config.MaxAge != 0 {
			t.Errorf("SYNC_IN's max age is %s", st.CachedInfo().Config.MaxAge)
		}
		if (name == mesh.StreamIn || name == mesh.StreamStatus) && st.CachedInfo().State.Msgs != 1 {
			t.Errorf("%s holds %d messages, want 1", name, st.CachedInfo().State.Msgs)
		}
	}
	for _, c := range mesh.Consumers([]string{"hubspot"}, mesh.Options{}) {
		if _, err := jsOp.Consumer(ctx, c.Stream, c.Config.Durable); err != nil {
			t.Errorf("consumer %s of %s: %v", c.Config.Durable, c.Stream, err)
		}
	}
	if _, err := jsOp.Stream(ctx, "EVIL"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("stream EVIL: %v", err)
	}
}

// TestPrivateInboxes checks that a service user may subscribe to its own
// inbox only, so that no one reads the deliveries another service pulls
// (every record's email among them): the rules service pulls an event, and
// an ingest connection that asked for every inbox received nothing.
func TestPrivateInboxes(t *testing.T) {
	s, _ := setUp(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, user := range services {
		for _, subj := range []string{">", "_INBOX.>", "_INBOX_*.>"} {
			t.Run(user+" may not subscribe to "+subj, func(t *testing.T) {
				nc := connect(t, s, user)
				if _, err := nc.SubscribeSync(subj); err != nil {
					t.Fatal(err)
				}
				refused(t, nc, fmt.Sprintf("Subscription to %q", subj))
			})
		}
		for _, other := range services {
			subj := natsrv.InboxPrefix(other) + ".>"
			t.Run(user+" on "+subj, func(t *testing.T) {
				nc := connect(t, s, user)
				if _, err := nc.SubscribeSync(subj); err != nil {
					t.Fatal(err)
				}
				if other == user {
					allowed(t, nc, user+" subscribing to its inbox")
				} else {
					refused(t, nc, fmt.Sprintf("Subscription to %q", subj))
				}
			})
		}
	}

	spy := connect(t, s, "ingest")
	var subs []*nats.Subscription
	for _, subj := range []string{"_INBOX.>", natsrv.InboxPrefix("rules") + ".>"} {
		sub, err := spy.SubscribeSync(subj)
		if err != nil {
			t.Fatal(err)
		}
		refused(t, spy, fmt.Sprintf("Subscription to %q", subj))
		subs = append(subs, sub)
	}
	_, jsIngest := natstest.Connect(t, s, "ingest")
	if _, err := jsIngest.Publish(ctx, mesh.SubjectIn, []byte(`{"record_id":"c-1","data":{"email":"ada@example.com"}}`)); err != nil {
		t.Fatalf("ingest publishing an event: %v", err)
	}
	rulesNC, js := natstest.Connect(t, s, "rules")
	if !strings.HasPrefix(rulesNC.NewInbox(), natsrv.InboxPrefix("rules")+".") {
		t.Fatalf("the rules connection's inbox is %s", rulesNC.NewInbox())
	}
	cons, err := js.Consumer(ctx, mesh.StreamIn, mesh.ConsumerRules)
	if err != nil {
		t.Fatal(err)
	}
	m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatalf("rules pulling its event: %v", err)
	}
	if !strings.Contains(string(m.Data()), "ada@example.com") || !strings.HasPrefix(m.Reply(), "$JS.ACK."+mesh.StreamIn+"."+mesh.ConsumerRules+".") {
		t.Fatalf("rules got %q (reply %s)", m.Data(), m.Reply())
	}
	if err := m.Ack(); err != nil {
		t.Fatal(err)
	}
	// A round trip to the server after the delivery: anything it would
	// have sent the spy came before the PONG.
	if err := spy.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, sub := range subs {
		if n, _, _ := sub.Pending(); n != 0 {
			t.Errorf("ingest read %d messages on %s", n, sub.Subject)
		}
	}
}

package app_test

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/status"
)

// TestOperatorCommands performs the NATS operations of docs/operators/nats-cli.md,
// "Operating with the nats CLI", as the operator of nats.env, to
// keep them true.
func TestOperatorCommands(t *testing.T) {
	// The runbook must still list every command this test performs, so
	// that the page and the test change together.
	const runbook = "../docs/operators/nats-cli.md"
	doc, err := os.ReadFile(runbook)
	if err != nil {
		t.Fatalf("the nats CLI runbook: %v", err)
	}
	for _, cmd := range []string{
		`nats req sync.in '{"record_id":"c-9","operation":"create","data":{"email":"c9@example.com"}}'`,
		"nats stream ls",
		"nats consumer info SYNC_PUSH pusher_hubspot",
		"nats consumer info SYNC_IN rules",
		"nats consumer info SYNC_GATHER rules",
		"nats consumer info SYNC_STATUS status",
		"nats kv get sync_status ",
		"nats kv get sync_rules rules --raw",
		`nats kv put sync_config hubspot '{"batch_size":50}'`,
		"nats stream get SYNC_REJECTED --last-for sync.rejected",
		"nats stream subjects SYNC_DLQ",
	} {
		if !strings.Contains(string(doc), cmd) {
			t.Errorf("%s no longer shows %q, which this test performs: change them together", runbook, cmd)
		}
	}

	s := startDev(t)
	ctx := context.Background()
	nc := s.operator()

	// nats req sync.in '{...}': JetStream answers with its ack.
	reply, err := nc.Request(mesh.SubjectIn, []byte(`{"record_id":"c-9","operation":"create","data":{"email":"c9@example.com"}}`), 5*time.Second)
	if err != nil || !strings.Contains(string(reply.Data), `"stream":"SYNC_IN"`) {
		t.Fatalf("nats req sync.in: %v %s", err, reply.Data)
	}
	s.waitState("c-9", "hubspot", status.StateSynced)

	// nats stream ls
	var names []string
	for name := range s.js.StreamNames(ctx).Name() {
		names = append(names, name)
	}
	for _, want := range []string{mesh.StreamIn, mesh.StreamGather, mesh.StreamPush, mesh.StreamStatus, mesh.StreamRejected, mesh.StreamDLQ, mesh.StreamStats} {
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Errorf("stream %s missing from %v", want, names)
		}
	}
	// nats consumer info SYNC_PUSH pusher_hubspot_0 / SYNC_IN rules / SYNC_GATHER rules / SYNC_STATUS status
	for stream, consumer := range map[string]string{mesh.StreamPush: mesh.ConsumerPusher("hubspot", 0), mesh.StreamIn: mesh.ConsumerRules,
		mesh.StreamGather: mesh.ConsumerRules, mesh.StreamStatus: mesh.ConsumerStatus} {
		c, err := s.js.Consumer(ctx, stream, consumer)
		if err != nil {
			t.Fatalf("nats consumer info %s %s: %v", stream, consumer, err)
		}
		if _, err := c.Info(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// nats kv get sync_status c-9 --raw
	e, err := s.kv.Get(ctx, "c-9")
	var rec status.Record
	if err != nil || json.Unmarshal(e.Value(), &rec) != nil || rec.Targets["hubspot"].State != status.StateSynced {
		t.Fatalf("nats kv get sync_status c-9: %v", err)
	}
	// nats kv get sync_rules rules --raw
	rulesKV, err := s.js.KeyValue(ctx, mesh.BucketRules)
	if err != nil {
		t.Fatal(err)
	}
	if e, err := rulesKV.Get(ctx, "rules"); err != nil || !strings.Contains(string(e.Value()), "require-email") {
		t.Fatalf("nats kv get sync_rules rules: %v", err)
	}
	// nats kv put sync_config hubspot '{"batch_size":50}' reaches the services.
	cfgKV, err := s.js.KeyValue(ctx, mesh.BucketConfig)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cfgKV.PutString(ctx, "hubspot", `{"batch_size":50}`); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.call("GET", "/v1/sync/config", adminKey, nil).Body["targets"].([]any)[0].(map[string]any)["batch_size"] != 50.0 {
		if time.Now().After(deadline) {
			t.Fatal("a config written with nats kv put was not applied")
		}
		waitTick(20 * time.Millisecond)
	}
	// nats stream get SYNC_REJECTED --last-for sync.rejected
	if _, err := nc.Request(mesh.SubjectIn, []byte(`{"record_id":"bad id","operation":"create"}`), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	rejected, err := s.js.Stream(ctx, mesh.StreamRejected)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		m, err := rejected.GetLastMsgForSubject(ctx, mesh.SubjectRejected)
		if err == nil && strings.Contains(m.Header.Get(mesh.HeaderReason), "body.record_id") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nats stream get SYNC_REJECTED --last-for sync.rejected: %v", err)
		}
		waitTick(20 * time.Millisecond)
	}
	// nats stream subjects SYNC_DLQ (empty here) and the counters.
	dlqStream, err := s.js.Stream(ctx, mesh.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dlqStream.Info(ctx, jetstreamSubjects()); err != nil {
		t.Fatalf("nats stream subjects SYNC_DLQ: %v", err)
	}
}

func jetstreamSubjects() jetstream.StreamInfoOpt { return jetstream.WithSubjectFilter(">") }

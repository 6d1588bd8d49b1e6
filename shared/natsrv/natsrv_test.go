package natsrv_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/natstest"
)

func TestPermissions(t *testing.T) {
	s := natstest.RunServer(t)
	_, jsOp := natstest.Connect(t, s, "operator")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := mesh.Ensure(ctx, jsOp, mesh.Options{}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, user, subject string
		allowed             bool
	}{
		{"ingest publishes events", "ingest", mesh.SubjectIn, true},
		{"ingest may not write status", "ingest", "$KV.sync_status.x", false},
		{"status writes status", "status", "$KV.sync_status.x", true},
		{"status may not publish events", "status", mesh.SubjectIn, false},
		{"rules routes work", "rules", mesh.SubjectPush("hubspot"), true},
		{"rules may not dead-letter", "rules", mesh.SubjectDLQ("hubspot", "c-1"), false},
		{"pusher dead-letters", "pusher", mesh.SubjectDLQ("hubspot", "c-1"), true},
		{"pusher may not write rules", "pusher", "$KV.sync_rules.rules", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nc, err := s.Connect(tt.user)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			if err := nc.Publish(tt.subject, []byte(`{}`)); err != nil {
				t.Fatal(err)
			}
			// The server answers a denied publish with -ERR before the PONG
			// of the flush, so LastError is set once Flush returns.
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			denied := errors.Is(nc.LastError(), nats.ErrPermissionViolation)
			if denied == tt.allowed {
				t.Fatalf("%s publishing %s: want allowed=%v, last error %v", tt.user, tt.subject, tt.allowed, nc.LastError())
			}
		})
	}
}

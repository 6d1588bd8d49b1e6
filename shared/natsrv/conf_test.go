package natsrv_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/recordsync/record-sync/shared/natsrv"
)

// TestStandaloneConf checks that nats.conf is a working configuration for
// a standalone `nats-server -c nats.conf`, which reads the RECORDSYNC_*
// references from its environment, in both profiles.
func TestStandaloneConf(t *testing.T) {
	for _, profile := range []string{natsrv.ProfileFast, natsrv.ProfileDurable} {
		t.Run(profile, func(t *testing.T) {
			interval, err := natsrv.SyncInterval(profile)
			if err != nil {
				t.Fatal(err)
			}
			t.Setenv("RECORDSYNC_NATS_LISTEN", "127.0.0.1:4333")
			t.Setenv("RECORDSYNC_NATS_STORE_DIR", t.TempDir())
			t.Setenv("RECORDSYNC_NATS_SYNC_INTERVAL", interval)
			for _, u := range natsrv.Users {
				// Starting with digits, which a nats.conf variable must
				// survive (an all-digit one would read as a number).
				t.Setenv("RECORDSYNC_NATS_"+strings.ToUpper(u)+"_PASSWORD", "0123abc-"+u)
			}
			opts, err := server.ProcessConfigFile(filepath.Join("..", "..", "nats.conf"))
			if err != nil {
				t.Fatalf("nats-server -c nats.conf: %v", err)
			}
			if opts.Port != 4333 || !opts.JetStream || opts.SyncAlways != (profile == natsrv.ProfileDurable) {
				t.Fatalf("port %d, jetstream %v, sync always %v", opts.Port, opts.JetStream, opts.SyncAlways)
			}
			users := map[string]string{}
			for _, u := range opts.Users {
				users[u.Username] = u.Password
			}
			for _, u := range natsrv.Users {
				if users[u] != "0123abc-"+u {
					t.Errorf("user %s has password %q", u, users[u])
				}
			}
		})
	}
}

package natsrv_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/recordsync/record-sync/shared/natsrv"
	"github.com/recordsync/record-sync/shared/natstest"
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

// TestStandaloneClusterConf checks that three `nats-server -c
// nats-cluster.conf`, each with its own RECORDSYNC_NATS_SERVER_NAME and
// cluster listen address and the same three routes, form a cluster with a
// JetStream meta leader.
func TestStandaloneClusterConf(t *testing.T) {
	var listens, routes []string
	for range natsrv.ClusterSize {
		a := natstest.FreeAddr(t)
		listens = append(listens, a)
		routes = append(routes, "nats-route://"+a)
	}
	var servers []*server.Server
	for i := range natsrv.ClusterSize {
		t.Setenv("RECORDSYNC_NATS_LISTEN", "127.0.0.1:-1")
		t.Setenv("RECORDSYNC_NATS_STORE_DIR", t.TempDir())
		t.Setenv("RECORDSYNC_NATS_SYNC_INTERVAL", "2m0s")
		for _, u := range natsrv.Users {
			t.Setenv("RECORDSYNC_NATS_"+strings.ToUpper(u)+"_PASSWORD", "pw-"+u)
		}
		t.Setenv("RECORDSYNC_NATS_SERVER_NAME", fmt.Sprintf("rs-%d", i+1))
		t.Setenv("RECORDSYNC_NATS_CLUSTER_NAME", "recordsync")
		t.Setenv("RECORDSYNC_NATS_CLUSTER_LISTEN", listens[i])
		for j, r := range routes {
			t.Setenv(fmt.Sprintf("RECORDSYNC_NATS_ROUTE_%d", j+1), r)
		}
		opts, err := server.ProcessConfigFile(filepath.Join("..", "..", "nats-cluster.conf"))
		if err != nil {
			t.Fatalf("nats-server -c nats-cluster.conf: %v", err)
		}
		if opts.ServerName != fmt.Sprintf("rs-%d", i+1) || opts.Cluster.Name != "recordsync" || len(opts.Routes) != 3 || !opts.JetStream || len(opts.Users) != len(natsrv.Users) {
			t.Fatalf("server %d: name %q, cluster %q, %d routes, jetstream %v, %d users", i, opts.ServerName, opts.Cluster.Name, len(opts.Routes), opts.JetStream, len(opts.Users))
		}
		opts.NoSigs, opts.NoLog = true, true
		s, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
		servers = append(servers, s)
	}
	for _, s := range servers {
		s.Start()
	}
	if err := natsrv.WaitMetaLeader(servers, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, s := range servers {
		if !s.JetStreamIsClustered() {
			t.Fatalf("%s is not clustered", s.Name())
		}
	}
}

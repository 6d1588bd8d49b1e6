package natstest

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	recordsync "github.com/recordsync/record-sync"
	"github.com/recordsync/record-sync/shared/natsrv"
)

// Account is the NATS account of the record-sync users in nats.conf.
const Account = "SYNC"

// Cluster is natsrv.ClusterSize in-process servers started from
// nats-cluster.conf, with JetStream on each and their stores in temporary
// directories, routed to each other on loopback. Its methods are not safe
// for concurrent use.
type Cluster struct {
	t testing.TB
	// Passwords are the users' passwords, the same on every server.
	Passwords map[string]string
	nodes     []*node
}

type node struct {
	cfg      natsrv.Config
	srv      *natsrv.Server
	isolated bool
}

// RunCluster starts a cluster and waits until it has a JetStream meta
// leader; the servers stop when the test ends.
func RunCluster(t testing.TB) *Cluster {
	t.Helper()
	return RunClusterWith(t, natsrv.Config{})
}

// RunClusterWith is RunCluster with base's profile and log; the rest is
// filled in.
func RunClusterWith(t testing.TB, base natsrv.Config) *Cluster {
	t.Helper()
	n := natsrv.ClusterSize
	c := &Cluster{t: t, Passwords: map[string]string{}}
	for _, u := range natsrv.Users {
		c.Passwords[u] = natsrv.RandomSecret()
	}
	listens := make([]string, n)
	routes := make([]string, n) // each server's own among them: it ignores it
	for i := range listens {
		listens[i] = FreeAddr(t)
		routes[i] = "nats-route://" + listens[i]
	}
	for i := range n {
		cfg := base
		cfg.Conf, cfg.ClusterConf = recordsync.NATSConf, recordsync.NATSClusterConf
		cfg.Listen, cfg.StoreDir, cfg.Passwords = FreeAddr(t), t.TempDir(), c.Passwords
		cfg.Cluster = natsrv.Cluster{Name: "recordsync-test", ServerName: "n" + strconv.Itoa(i+1), Listen: listens[i], Routes: routes}
		c.nodes = append(c.nodes, &node{cfg: cfg})
	}
	t.Cleanup(func() {
		for i := range c.nodes {
			c.Stop(i)
		}
	})
	// All at once: a clustered server waits for its peers before JetStream
	// is ready.
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, nd := range c.nodes {
		wg.Go(func() { nd.srv, errs[i] = natsrv.Start(nd.cfg) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("start cluster: %v", err)
	}
	c.WaitMetaLeader()
	return c
}

// Server returns server i (nil while it is stopped).
func (c *Cluster) Server(i int) *natsrv.Server { return c.nodes[i].srv }

// URL returns the client URLs of every server, comma-separated, as a
// service is given them.
func (c *Cluster) URL() string {
	urls := make([]string, len(c.nodes))
	for i, nd := range c.nodes {
		urls[i] = "nats://" + nd.cfg.Listen
	}
	return strings.Join(urls, ",")
}

// WaitMetaLeader waits until the running servers have a meta leader.
func (c *Cluster) WaitMetaLeader() {
	c.t.Helper()
	var running []*server.Server
	for _, nd := range c.nodes {
		if nd.srv != nil {
			running = append(running, nd.srv.Server)
		}
	}
	if err := natsrv.WaitMetaLeader(running, 60*time.Second); err != nil {
		c.t.Fatal(err)
	}
}

// Stop shuts server i down; its store stays for Restart.
func (c *Cluster) Stop(i int) {
	nd := c.nodes[i]
	if nd.srv == nil {
		return
	}
	nd.srv.Shutdown()
	nd.srv.WaitForShutdown()
	nd.srv = nil
}

// Restart starts server i again on its store, its client port and its
// cluster port.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	c.start(i, c.nodes[i].cfg)
}

func (c *Cluster) start(i int, cfg natsrv.Config) {
	c.t.Helper()
	nd := c.nodes[i]
	if nd.srv != nil {
		c.t.Fatalf("start server %d: it is running", i)
	}
	s, err := natsrv.Start(cfg)
	if err != nil {
		c.t.Fatalf("start server %d: %v", i, err)
	}
	nd.srv = s
}

// StreamLeader returns the index of the server that leads stream, or -1
// while none does.
func (c *Cluster) StreamLeader(stream string) int {
	for i, nd := range c.nodes {
		if nd.srv != nil && nd.srv.JetStreamIsStreamLeader(Account, stream) {
			return i
		}
	}
	return -1
}

// WaitCurrent waits until every running server holds a current replica of
// each of streams (of Account): after a restart, a server catches up
// before it counts towards a majority.
func (c *Cluster) WaitCurrent(streams ...string) {
	c.t.Helper()
	Eventually(c.t, 60*time.Second, "every replica current", func() bool {
		for _, nd := range c.nodes {
			for _, st := range streams {
				if nd.srv != nil && !nd.srv.JetStreamIsStreamCurrent(Account, st) {
					return false
				}
			}
		}
		return true
	})
}

// Isolate cuts server i off from the others: it is restarted on its store
// and its client port, with its cluster port moved to one nobody knows and
// no routes, so that it cannot reach the others nor they it, while its
// clients reconnect to it. The others keep retrying its old cluster port
// until Heal. (Its routes run between servers that gossip each other's
// addresses and open pooled connections to them: a proxy in the way of the
// configured routes alone would not cut them all.)
func (c *Cluster) Isolate(i int) {
	c.t.Helper()
	cfg := c.nodes[i].cfg
	// Its own new port, and two where nobody listens.
	cfg.Cluster.Listen = FreeAddr(c.t)
	cfg.Cluster.Routes = []string{"nats-route://" + cfg.Cluster.Listen, "nats-route://" + FreeAddr(c.t), "nats-route://" + FreeAddr(c.t)}
	c.Stop(i)
	c.start(i, cfg)
	c.nodes[i].isolated = true
}

// Heal ends Isolate: server i is restarted as it was and joins the others.
func (c *Cluster) Heal(i int) {
	c.t.Helper()
	if !c.nodes[i].isolated {
		return
	}
	c.Stop(i)
	c.Restart(i)
	c.nodes[i].isolated = false
}

// Connect connects to the cluster as user over TCP, reconnecting to any
// server for ever, and closes the connection when the test ends.
func (c *Cluster) Connect(t testing.TB, user string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(c.URL(), nats.UserInfo(user, c.Passwords[user]), nats.Name("natstest-"+user),
		nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("connect cluster as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// String names the cluster's servers for test logs.
func (c *Cluster) String() string {
	var b strings.Builder
	for _, nd := range c.nodes {
		fmt.Fprintf(&b, "%s=%s(running %v) ", nd.cfg.Cluster.ServerName, nd.cfg.Listen, nd.srv != nil)
	}
	return b.String()
}

package app_test

import (
	"testing"
	"time"

	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/natsrv"
	"github.com/recordsync/record-sync/shared/natstest"
)

// BenchmarkFailover measures, under a steady load (batches of 20 records
// to HubSpot and Salesforce every 50 ms), how long records stop reaching
// the CRMs after a fault, and how long statuses lag after a status kill
// (make bench-failover):
//
//   - server=single: a single NATS server SIGKILLed; "restart-to-flow-s"
//     is from its restart to the next record stored in a CRM (the outage
//     itself lasts as long as the server is down).
//   - server=r3-leader: the server leading SYNC_IN on an R3 cluster
//     stopped; "pause-s" is from the stop to the next record stored.
//   - status-kill: the status process SIGKILLed and started again;
//     "statuses-current-s" is from its restart until every status is
//     synced.
func BenchmarkFailover(b *testing.B) {
	b.Run("server=single", func(b *testing.B) {
		srv := natstest.StartProcess(b, natsrv.ProfileFast)
		sim := chaosSim(b)
		s := runServices(b, srv.URL(), srv.Passwords, sim, 1)
		op := operatorJS(b, srv.URL(), srv.Passwords)
		l := startLoad(b, s.http, "fs", 20, 50*time.Millisecond)
		progress(b, sim, 30*time.Second, "records pushed before the fault")
		b.ResetTimer()
		srv.Kill()
		l.waitRefused(b, "the edge refuses while NATS is down")
		srv.Start()
		b.ReportMetric(progress(b, sim, 60*time.Second, "pushing after the restart").Seconds(), "restart-to-flow-s")
		b.StopTimer()
		settle(b, l, s.http, sim, op, 2*time.Minute)
	})
	b.Run("server=r3-leader", func(b *testing.B) {
		c := natstest.RunCluster(b)
		sim := chaosSim(b)
		s := runServices(b, c.URL(), c.Passwords, sim, 3)
		_, op := c.Connect(b, "operator")
		l := startLoad(b, s.http, "fc", 20, 50*time.Millisecond)
		progress(b, sim, 30*time.Second, "records pushed before the fault")
		b.ResetTimer()
		c.Stop(c.StreamLeader(mesh.StreamIn))
		b.ReportMetric(progress(b, sim, 60*time.Second, "pushing after the leader's server stopped").Seconds(), "pause-s")
		b.StopTimer()
		settle(b, l, s.http, sim, op, 2*time.Minute)
	})
	b.Run("status-kill", func(b *testing.B) {
		bin := binary(b)
		srv := natstest.RunServer(b)
		sim := chaosSim(b)
		op := operatorJS(b, srv.ClientURL(), srv.Passwords)
		procs := startServiceProcesses(b, bin, srv.ClientURL(), srv.Passwords, sim.Addr, sim.Credentials)
		edge := procs["ingest"].metrics
		l := startLoad(b, edge, "fk", 20, 50*time.Millisecond)
		progress(b, sim, 30*time.Second, "records pushed before the fault")
		b.ResetTimer()
		l.stop()
		procs["status"].kill()
		procs["status"].start()
		b.ReportMetric(settle(b, l, edge, sim, op, 2*time.Minute).Seconds(), "statuses-current-s")
	})
}

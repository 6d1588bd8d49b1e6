// Package crmtest is the contract every CRM plugin keeps, run against the
// plugin's emulator: create, update, delete, a full batch, per-record
// failures, token renewal, 5xx, timeouts and 429s. Each plugin's tests call
// Run with a Harness.
package crmtest

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/recordsync/record-sync/crmsim"
	"github.com/recordsync/record-sync/services/pusher/crm"
	"github.com/recordsync/record-sync/shared/event"
	"github.com/recordsync/record-sync/shared/mapping"
)

// Harness is a plugin and its emulator.
type Harness struct {
	// Client is the plugin, pointed at nothing yet.
	Client crm.CRM
	// Sim is the emulator of the plugin's CRM.
	Sim crmsim.CRM
	// ExpireTokens ends the tokens the emulator issued (nil: the CRM's auth
	// does not expire, as HubSpot's private app tokens).
	ExpireTokens func()
	// Invalid returns data the CRM refuses for that record alone (nil: the
	// CRM refuses nothing a mapping lets through).
	Invalid func(i int) map[string]any
	// ObjectType is the object type of the records (default contact).
	ObjectType string
}

// Valid returns the data of valid record i.
func Valid(i int) map[string]any {
	return map[string]any{"email": fmt.Sprintf("r%d@example.com", i), "first_name": "First", "last_name": fmt.Sprint("Last", i), "company": "Acme"}
}

type fixture struct {
	h    Harness
	host string
	m    *mapping.Compiled
}

// Run runs the contract; newHarness returns a fresh plugin and emulator
// for each case.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	setup := func(t *testing.T) *fixture {
		t.Helper()
		h := newHarness(t)
		if h.ObjectType == "" {
			h.ObjectType = event.ObjectContact
		}
		srv, err := crmsim.NewServer(h.Sim)
		if err != nil {
			t.Fatal(err)
		}
		ts := httptest.NewServer(srv)
		t.Cleanup(ts.Close)
		t.Cleanup(func() { _ = h.Client.Close() })
		sc, ok := h.Client.Schema(h.ObjectType)
		if !ok {
			t.Fatalf("no schema for %s", h.ObjectType)
		}
		m, errs := mapping.Compile(sc.Default, sc, "default")
		if errs != nil {
			t.Fatalf("default mapping: %v", errs)
		}
		return &fixture{h: h, host: ts.URL + "/" + h.Sim.Name(), m: m}
	}
	t.Run("create, update, delete", func(t *testing.T) {
		f := setup(t)
		created := f.push(t, event.OpCreate, Valid(0), Valid(1))
		for i, r := range created {
			if r.Class != crm.OK || r.CRMID == "" {
				t.Fatalf("create %d: %+v", i, r)
			}
		}
		upd := Valid(0)
		upd["title"] = "CTO"
		again := f.push(t, event.OpUpdate, upd)
		if again[0].Class != crm.OK || again[0].CRMID != created[0].CRMID {
			t.Fatalf("update: %+v, created as %s", again[0], created[0].CRMID)
		}
		f.want(t, 2, 0)
		if del := f.push(t, event.OpDelete, Valid(0), Valid(1)); del[0].Class != crm.OK || del[1].Class != crm.OK {
			t.Fatalf("delete: %+v", del)
		}
		f.want(t, 0, 0)
		if del := f.push(t, event.OpDelete, Valid(7)); del[0].Class != crm.OK {
			t.Fatalf("delete of a record the CRM never had: %+v", del)
		}
	})
	t.Run("a full batch", func(t *testing.T) {
		f := setup(t)
		n := f.h.Client.MaxBatch()
		data := make([]map[string]any, n)
		for i := range data {
			data[i] = Valid(i)
		}
		for i, r := range f.push(t, event.OpCreate, data...) {
			if r.Class != crm.OK {
				t.Fatalf("record %d of %d: %+v", i, n, r)
			}
		}
		f.want(t, n, 0)
	})
	t.Run("a redelivered create makes no second record", func(t *testing.T) {
		f := setup(t)
		f.push(t, event.OpCreate, Valid(0))
		if r := f.push(t, event.OpCreate, Valid(0)); r[0].Class != crm.OK {
			t.Fatalf("second create: %+v", r)
		}
		f.want(t, 1, 0)
	})
	t.Run("per-record failure", func(t *testing.T) {
		f := setup(t)
		if f.h.Invalid == nil {
			t.Skip("this CRM refuses nothing a mapping lets through")
		}
		r := f.push(t, event.OpCreate, Valid(0), f.h.Invalid(1))
		if r[0].Class != crm.OK || r[1].Class != crm.Permanent || r[1].Code == "" || r[1].Message == "" {
			t.Fatalf("results: %+v", r)
		}
	})
	t.Run("concurrent pushes", func(t *testing.T) {
		// The pusher runs up to `concurrency` pushes of one plugin at once,
		// the first of them before any token is cached; with -race this
		// finds state the plugin shares unguarded.
		f := setup(t)
		const n = 8
		results := make([][]crm.Result, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { results[i] = f.push(t, event.OpCreate, Valid(i)) })
		}
		wg.Wait()
		for i, r := range results {
			if r[0].Class != crm.OK {
				t.Fatalf("push %d: %+v", i, r[0])
			}
		}
		f.want(t, n, 0)
	})
	t.Run("token renewal", func(t *testing.T) {
		f := setup(t)
		if f.h.ExpireTokens == nil {
			t.Skip("this CRM's credentials do not expire")
		}
		f.push(t, event.OpCreate, Valid(0))
		f.h.ExpireTokens()
		if r := f.push(t, event.OpCreate, Valid(1)); r[0].Class != crm.OK {
			t.Fatalf("after the token expired: %+v", r)
		}
	})
	t.Run("server errors and timeouts are transient", func(t *testing.T) {
		f := setup(t)
		for _, faults := range []crmsim.Faults{{Error5xx: 1}, {Timeout: 1}, {Down: true}} {
			f.h.Sim.Sim().SetFaults(faults)
			if r := f.push(t, event.OpCreate, Valid(0)); r[0].Class != crm.Transient || !r[0].Whole {
				t.Fatalf("with %+v: %+v", faults, r)
			}
		}
	})
	t.Run("429 is rate limited with a time to wait", func(t *testing.T) {
		f := setup(t)
		f.h.Sim.Sim().SetFaults(crmsim.Faults{RateLimit: 1, RateWindowMS: 60_000})
		f.push(t, event.OpCreate, Valid(0))
		r := f.push(t, event.OpCreate, Valid(1))
		if r[0].Class != crm.RateLimited || r[0].RetryAfter <= 0 {
			t.Fatalf("past the quota: %+v", r)
		}
		if st := f.h.Sim.Sim().Stats(f.h.Sim.Stored()); st.MaxRequestsInWindow > 1 {
			t.Fatalf("requests past the quota were served: %+v", st)
		}
	})
}

// push maps data as the pusher would and pushes it.
func (f *fixture) push(t *testing.T, op event.Operation, data ...map[string]any) []crm.Result {
	t.Helper()
	recs := make([]crm.Record, len(data))
	for i, d := range data {
		id := fmt.Sprint("r-", d["email"])
		id = strings.NewReplacer("@", "_").Replace(id)
		ev := &event.Event{RecordID: id, EventID: "e-" + id, ObjectType: f.h.ObjectType, Operation: op, Data: d, OccurredAt: time.Now()}
		fields, err := f.m.Apply(d)
		if err != nil {
			t.Fatal(err)
		}
		key, err := f.h.Client.Identify(ev, fields)
		if err != nil {
			t.Fatal(err)
		}
		recs[i] = crm.Record{Event: ev, Identity: key, Fields: fields}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res := f.h.Client.Push(ctx, f.host, recs)
	if len(res) != len(recs) {
		t.Fatalf("%d results for %d records", len(res), len(recs))
	}
	return res
}

// want checks what the emulator holds.
func (f *fixture) want(t *testing.T, stored, duplicates int) {
	t.Helper()
	st := f.h.Sim.Sim().Stats(f.h.Sim.Stored())
	if st.RecordsStored != stored || st.DuplicatesCreated != duplicates {
		t.Fatalf("the CRM holds %d records with %d duplicates; want %d and %d", st.RecordsStored, st.DuplicatesCreated, stored, duplicates)
	}
}

// Package crmtest is the contract every CRM plugin keeps, run against the
// plugin's emulator: a table of named cases (create, update, delete, a
// full batch, per-record failures, concurrent pushes, token renewal, 5xx,
// timeouts, 429s, permits, a cancelled context, Close during a push).
// Each plugin's tests call Run with a Harness. A case that needs more of
// the plugin than crm.CRM (reading records back, when the interface has
// it) joins Cases; a plugin's own cases go to Run as extra ones.
package crmtest

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recordsync/record-sync/crm"
	"github.com/recordsync/record-sync/crmsim"
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

// Case is one named case of the contract, run against a fresh plugin and
// emulator.
type Case struct {
	Name string
	Run  func(t *testing.T, f *Fixture)
}

// Fixture is a case's plugin, served emulator and default mapping.
type Fixture struct {
	H Harness
	// Host is the emulated CRM's API host, as a target's api_host.
	Host string
	m    *mapping.Compiled
}

// Valid returns the data of valid record i.
func Valid(i int) map[string]any {
	return map[string]any{"email": fmt.Sprintf("r%d@example.com", i), "first_name": "First", "last_name": fmt.Sprint("Last", i), "company": "Acme"}
}

// Run runs the contract's cases, then the plugin's own extra ones;
// newHarness returns a fresh plugin and emulator for each case.
func Run(t *testing.T, newHarness func(t *testing.T) Harness, extra ...Case) {
	for _, c := range append(Cases(), extra...) {
		t.Run(c.Name, func(t *testing.T) { c.Run(t, setup(t, newHarness)) })
	}
}

// setup serves a fresh harness's emulator until the test ends.
func setup(t *testing.T, newHarness func(t *testing.T) Harness) *Fixture {
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
	return &Fixture{H: h, Host: ts.URL + "/" + h.Sim.Name(), m: m}
}

// Cases returns the contract's cases.
func Cases() []Case {
	return []Case{
		{"create, update, delete", createUpdateDelete},
		{"a full batch", fullBatch},
		{"a redelivered create makes no second record", redeliveredCreate},
		{"per-record failure", perRecordFailure},
		{"concurrent pushes", concurrentPushes},
		{"token renewal", tokenRenewal},
		{"server errors and timeouts are transient", serverErrors},
		{"429 is rate limited with a time to wait", rateLimited},
		{"every request waits for a permit", permits},
		{"a cancelled context sends nothing", cancelledContext},
		{"a context ending during the push", contextEndsInFlight},
		{"Close during a push", closeDuringPush},
		{"read back (crm.Reader)", readBack},
	}
}

// readBack: a plugin that reads (crm.Reader) gets back what it pushed, by
// identity and by CRM id, finds nothing for a record it never wrote or
// deleted, and its reads wait for permits as pushes do.
func readBack(t *testing.T, f *Fixture) {
	r, ok := f.H.Client.(crm.Reader)
	if !ok {
		t.Skip(f.H.Client.Name() + " does not read records back (no crm.Reader)")
	}
	if r.MaxRead() < 1 {
		t.Fatalf("MaxRead %d", r.MaxRead())
	}
	data := []map[string]any{Valid(0), Valid(1), Valid(2)}
	data[1]["title"] = "CTO"
	pushed := f.Push(t, event.OpCreate, data[0], data[1])
	for i, p := range pushed {
		if p.Class != crm.OK {
			t.Fatalf("create %d: %+v", i, p)
		}
	}
	keys := f.Records(t, event.OpUpdate, data...)
	keys[1].CRMID = pushed[1].CRMID // read by the CRM's id; 0 by identity; 2 was never written
	var permits countingPermits
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got, err := r.Read(ctx, crm.Endpoint{Host: f.Host, Permits: &permits}, keys)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(keys) {
		t.Fatalf("%d remotes for %d keys", len(got), len(keys))
	}
	if permits.n.Load() == 0 {
		t.Fatal("the read took no permit")
	}
	for i := range 2 {
		if !got[i].Found || got[i].CRMID != pushed[i].CRMID {
			t.Fatalf("record %d: %+v; want found with CRM id %s", i, got[i], pushed[i].CRMID)
		}
		if d := crm.Diff(keys[i].Fields, got[i].Fields); len(d) > 0 {
			t.Fatalf("record %d reads back different from what was pushed: %+v", i, d)
		}
	}
	if got[2].Found {
		t.Fatalf("a record never written reads as %+v", got[2])
	}
	if del := f.Push(t, event.OpDelete, data[0]); del[0].Class != crm.OK {
		t.Fatalf("delete: %+v", del[0])
	}
	got, err = r.Read(ctx, crm.Endpoint{Host: f.Host}, keys[:1])
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Found {
		t.Fatalf("a deleted record reads as %+v", got[0])
	}
	f.H.Sim.Sim().SetFaults(crmsim.Faults{Error5xx: 1})
	var re *crm.ReadError
	if _, err := r.Read(ctx, crm.Endpoint{Host: f.Host}, keys[1:2]); !errors.As(err, &re) || re.Result.Class != crm.Transient {
		t.Fatalf("a read the CRM fails with 5xx: %v; want a transient *crm.ReadError", err)
	}
}

// countingPermits grants every permit and counts them.
type countingPermits struct{ n atomic.Int64 }

func (p *countingPermits) Wait(context.Context) error {
	p.n.Add(1)
	return nil
}

func createUpdateDelete(t *testing.T, f *Fixture) {
	created := f.Push(t, event.OpCreate, Valid(0), Valid(1))
	for i, r := range created {
		if r.Class != crm.OK || r.CRMID == "" {
			t.Fatalf("create %d: %+v", i, r)
		}
	}
	upd := Valid(0)
	upd["title"] = "CTO"
	again := f.Push(t, event.OpUpdate, upd)
	if again[0].Class != crm.OK || again[0].CRMID != created[0].CRMID {
		t.Fatalf("update: %+v, created as %s", again[0], created[0].CRMID)
	}
	f.Want(t, 2, 0)
	if del := f.Push(t, event.OpDelete, Valid(0), Valid(1)); del[0].Class != crm.OK || del[1].Class != crm.OK {
		t.Fatalf("delete: %+v", del)
	}
	f.Want(t, 0, 0)
	if del := f.Push(t, event.OpDelete, Valid(7)); del[0].Class != crm.OK {
		t.Fatalf("delete of a record the CRM never had: %+v", del)
	}
}

func fullBatch(t *testing.T, f *Fixture) {
	n := f.H.Client.MaxBatch()
	data := make([]map[string]any, n)
	for i := range data {
		data[i] = Valid(i)
	}
	for i, r := range f.Push(t, event.OpCreate, data...) {
		if r.Class != crm.OK {
			t.Fatalf("record %d of %d: %+v", i, n, r)
		}
	}
	f.Want(t, n, 0)
}

func redeliveredCreate(t *testing.T, f *Fixture) {
	f.Push(t, event.OpCreate, Valid(0))
	if r := f.Push(t, event.OpCreate, Valid(0)); r[0].Class != crm.OK {
		t.Fatalf("second create: %+v", r)
	}
	f.Want(t, 1, 0)
}

func perRecordFailure(t *testing.T, f *Fixture) {
	if f.H.Invalid == nil {
		t.Skip("this CRM refuses nothing a mapping lets through")
	}
	r := f.Push(t, event.OpCreate, Valid(0), f.H.Invalid(1))
	if r[0].Class != crm.OK || r[1].Class != crm.Permanent || r[1].Code == "" || r[1].Message == "" || r[1].Whole {
		t.Fatalf("results: %+v", r)
	}
}

// concurrentPushes: the pusher runs up to `concurrency` pushes of one
// plugin at once, the first of them before any token is cached; with
// -race this finds state the plugin shares unguarded.
func concurrentPushes(t *testing.T, f *Fixture) {
	const n = 8
	results := make([][]crm.Result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { results[i] = f.Push(t, event.OpCreate, Valid(i)) })
	}
	wg.Wait()
	for i, r := range results {
		if r[0].Class != crm.OK {
			t.Fatalf("push %d: %+v", i, r[0])
		}
	}
	f.Want(t, n, 0)
}

func tokenRenewal(t *testing.T, f *Fixture) {
	if f.H.ExpireTokens == nil {
		t.Skip("this CRM's credentials do not expire")
	}
	f.Push(t, event.OpCreate, Valid(0))
	f.H.ExpireTokens()
	if r := f.Push(t, event.OpCreate, Valid(1)); r[0].Class != crm.OK {
		t.Fatalf("after the token expired: %+v", r)
	}
}

func serverErrors(t *testing.T, f *Fixture) {
	for _, faults := range []crmsim.Faults{{Error5xx: 1}, {Timeout: 1}, {Down: true}} {
		f.H.Sim.Sim().SetFaults(faults)
		if r := f.Push(t, event.OpCreate, Valid(0)); r[0].Class != crm.Transient || !r[0].Whole {
			t.Fatalf("with %+v: %+v", faults, r)
		}
	}
}

func rateLimited(t *testing.T, f *Fixture) {
	f.H.Sim.Sim().SetFaults(crmsim.Faults{RateLimit: 1, RateWindowMS: 60_000})
	f.Push(t, event.OpCreate, Valid(0))
	r := f.Push(t, event.OpCreate, Valid(1))
	if r[0].Class != crm.RateLimited || r[0].RetryAfter <= 0 {
		t.Fatalf("past the quota: %+v", r)
	}
	if st := f.H.Sim.Sim().Stats(f.H.Sim.Stored()); st.MaxRequestsInWindow > 1 {
		t.Fatalf("requests past the quota were served: %+v", st)
	}
}

// limiter counts its permits, calls each (when set) first, and refuses
// with err (when set).
type limiter struct {
	n    atomic.Int64
	each func()
	err  error
}

func (l *limiter) Wait(context.Context) error {
	if l.err != nil {
		return l.err
	}
	l.n.Add(1)
	if l.each != nil {
		l.each()
	}
	return nil
}

// permits: a plugin sends no API request without a permit of the
// endpoint's limiter, so that it cannot bypass the pusher's rate limit.
func permits(t *testing.T, f *Fixture) {
	closed := &limiter{err: errors.New("no permits")}
	for i, r := range f.PushTo(t, context.Background(), crm.Endpoint{Host: f.Host, Permits: closed}, event.OpCreate, Valid(0), Valid(1)) {
		if r.Class != crm.Transient || !r.Whole {
			t.Fatalf("record %d without a permit: %+v", i, r)
		}
	}
	f.Want(t, 0, 0)
	open := &limiter{}
	for i, r := range f.PushTo(t, context.Background(), crm.Endpoint{Host: f.Host, Permits: open}, event.OpCreate, Valid(0), Valid(1)) {
		if r.Class != crm.OK {
			t.Fatalf("record %d with permits: %+v", i, r)
		}
	}
	if open.n.Load() == 0 {
		t.Fatal("records written without a permit taken")
	}
	f.Want(t, 2, 0)
}

// cancelledContext: a Push whose ctx has ended sends nothing and settles
// every record as a transient whole-request failure.
func cancelledContext(t *testing.T, f *Fixture) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for i, r := range f.PushTo(t, ctx, crm.Endpoint{Host: f.Host}, event.OpCreate, Valid(0), Valid(1)) {
		if r.Class != crm.Transient || !r.Whole || r.Code != crm.CodeCanceled {
			t.Fatalf("record %d: %+v", i, r)
		}
	}
	f.Want(t, 0, 0)
	if st := f.H.Sim.Sim().Stats(0); len(st.RequestsByStatus) != 0 {
		t.Fatalf("requests sent under a cancelled context: %+v", st.RequestsByStatus)
	}
}

// contextEndsInFlight: a ctx that ends while the CRM is slow to answer
// ends the push with a transient whole-request failure for every record.
func contextEndsInFlight(t *testing.T, f *Fixture) {
	f.Push(t, event.OpCreate, Valid(9)) // a token in hand: the slow part is the write
	f.H.Sim.Sim().SetFaults(crmsim.Faults{LatencyMS: 1000})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	for i, r := range f.PushTo(t, ctx, crm.Endpoint{Host: f.Host}, event.OpCreate, Valid(0), Valid(1)) {
		if r.Class != crm.Transient || !r.Whole {
			t.Fatalf("record %d: %+v", i, r)
		}
	}
}

// closeDuringPush: Close while a push is on its way does not cut it
// short: the push settles every record as it would have.
func closeDuringPush(t *testing.T, f *Fixture) {
	var once sync.Once
	l := &limiter{each: func() { once.Do(func() { _ = f.H.Client.Close() }) }}
	for i, r := range f.PushTo(t, context.Background(), crm.Endpoint{Host: f.Host, Permits: l}, event.OpCreate, Valid(0), Valid(1)) {
		if r.Class != crm.OK {
			t.Fatalf("record %d: %+v", i, r)
		}
	}
	f.Want(t, 2, 0)
}

// Push maps data as the pusher would and pushes it to the emulator.
func (f *Fixture) Push(t *testing.T, op event.Operation, data ...map[string]any) []crm.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return f.PushTo(t, ctx, crm.Endpoint{Host: f.Host}, op, data...)
}

// PushTo is Push under ctx to ep.
func (f *Fixture) PushTo(t *testing.T, ctx context.Context, ep crm.Endpoint, op event.Operation, data ...map[string]any) []crm.Result {
	t.Helper()
	recs := f.Records(t, op, data...)
	res := f.H.Client.Push(ctx, ep, recs)
	if len(res) != len(recs) {
		t.Fatalf("%d results for %d records", len(res), len(recs))
	}
	for i, r := range res {
		if r.Class == crm.Unset {
			t.Fatalf("result %d left unset: %+v", i, r)
		}
	}
	return res
}

// Records maps data as the pusher would, for op.
func (f *Fixture) Records(t *testing.T, op event.Operation, data ...map[string]any) []crm.Record {
	t.Helper()
	recs := make([]crm.Record, len(data))
	for i, d := range data {
		id := fmt.Sprint("r-", d["email"])
		id = strings.NewReplacer("@", "_").Replace(id)
		ev := &event.Event{RecordID: id, EventID: "e-" + id, ObjectType: f.H.ObjectType, Operation: op, Data: d, OccurredAt: time.Now()}
		fields, err := f.m.Apply(d)
		if err != nil {
			t.Fatal(err)
		}
		key, err := f.H.Client.Identify(ev, fields)
		if err != nil {
			t.Fatal(err)
		}
		recs[i] = crm.Record{Event: ev, Identity: key, Fields: fields}
	}
	return recs
}

// Want checks what the emulator holds.
func (f *Fixture) Want(t *testing.T, stored, duplicates int) {
	t.Helper()
	st := f.H.Sim.Sim().Stats(f.H.Sim.Stored())
	if st.RecordsStored != stored || st.DuplicatesCreated != duplicates {
		t.Fatalf("the CRM holds %d records with %d duplicates; want %d and %d", st.RecordsStored, st.DuplicatesCreated, stored, duplicates)
	}
}

// Package crmsim is the CRM emulator: it serves Salesforce, HubSpot and
// Outreach, each under its prefix, with the real APIs' paths, auth,
// validation, bodies and rate limits, plus the test controls under /_sim/
// (faults, stats, reset) that DESIGN.md names.
package crmsim

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/recordsync/record-sync/shared/fastjson"
	"github.com/recordsync/record-sync/shared/httpbody"
)

// Faults is what PUT /_sim/{crm}/faults sets. Probabilities are 0..1.
type Faults struct {
	Error5xx          float64 `json:"error_5xx"`
	RateLimited       float64 `json:"rate_limited"`
	Timeout           float64 `json:"timeout"`
	PartialBatchError float64 `json:"partial_batch_error"`
	LatencyMS         int     `json:"latency_ms"`
	Down              bool    `json:"down"`
	// RateLimit requests are allowed per RateWindowMS; past it the CRM
	// answers as the real one does when its limit is hit. 0 keeps the CRM's
	// own default.
	RateLimit    int `json:"rate_limit"`
	RateWindowMS int `json:"rate_window_ms"`
}

// Stats is what GET /_sim/{crm}/stats answers.
type Stats struct {
	RequestsByStatus    map[string]int `json:"requests_by_status"`
	RecordsStored       int            `json:"records_stored"`
	DuplicatesCreated   int            `json:"duplicates_created"`
	MaxRequestsInWindow int            `json:"max_requests_in_window"`
	// MaxConcurrent is the most API requests the CRM had in hand at once.
	MaxConcurrent int `json:"max_concurrent_requests"`
	// ConnectionsOpened counts the connections whose first request came to
	// this CRM (on a server set up with Server.ConnContext): a client that
	// keeps its connections opens about as many as it sends requests at
	// once, however many requests it sends.
	ConnectionsOpened int `json:"connections_opened"`
}

// Quota is the emulated rate limit state a CRM reports in its headers.
type Quota struct {
	Limit     int
	Remaining int
	Window    time.Duration
	Reset     time.Time
}

// Sim holds the faults, quota window and counters of one emulated CRM. The
// CRM's handlers call Admit first and Count after answering.
type Sim struct {
	defaultLimit  int
	defaultWindow time.Duration

	mu          sync.Mutex
	faults      Faults
	windowStart time.Time
	inWindow    int
	maxInWindow int
	inFlight    int
	maxInFlight int
	conns       int
	byStatus    map[int]int
	duplicates  int
	rng         *rand.Rand
	history     *history
	historyErr  error // the first write that the history could not keep
	writes      int64
}

// Write is one write the CRM applied to a record identity, as GET
// /_sim/{crm}/history lists them: in the order applied.
type Write struct {
	// Seq orders every write of the CRM.
	Seq int64     `json:"seq"`
	At  time.Time `json:"at"`
	// Op is the API operation: upsert, create, update or archive.
	Op string `json:"op"`
	// ID is the CRM's id of the record written.
	ID string `json:"id"`
	// Values are the fields the write carried.
	Values map[string]any `json:"values,omitempty"`
}

// History bounds: writes kept per identity (the latest), and identities.
const (
	MaxHistoryPerIdentity = 1000
	MaxHistoryIdentities  = 1_000_000
)

// NewSim returns the state of a CRM whose own quota is limit requests per
// window.
func NewSim(limit int, window time.Duration) *Sim {
	s := &Sim{defaultLimit: limit, defaultWindow: window}
	s.history, _ = openHistory("") // if it fails, every write reports errNoHistory
	s.resetLocked()
	return s
}

// KeepHistoryIn moves the history of writes to the file at path (see
// HistoryPath), empty.
func (s *Sim) KeepHistoryIn(path string) error {
	h, err := openHistory(path)
	if err != nil {
		return fmt.Errorf("crmsim history: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.history
	s.history = h
	return s.closeHistory(old)
}

// Close closes the history's file.
func (s *Sim) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.closeHistory(s.history)
	s.history = nil
	return err
}

func (s *Sim) closeHistory(h *history) error {
	if h == nil {
		return nil
	}
	if err := h.close(); err != nil {
		return fmt.Errorf("crmsim history: %w", err)
	}
	return nil
}

func (s *Sim) resetLocked() {
	s.faults = Faults{}
	s.windowStart = time.Time{}
	s.inWindow, s.maxInWindow, s.duplicates, s.maxInFlight, s.conns = 0, 0, 0, s.inFlight, 0
	s.byStatus = map[int]int{}
	s.historyErr, s.writes = s.history.reset(), 0
	s.rng = rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
}

// Reset clears faults and counters.
func (s *Sim) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resetLocked()
}

// SetFaults replaces the faults.
func (s *Sim) SetFaults(f Faults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = f
}

// Faults returns the current faults.
func (s *Sim) Faults() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults
}

// Verdict is what Admit decided for a request.
type Verdict int

// Verdicts, checked by the CRM handler in this order.
const (
	// Serve: handle the request normally.
	Serve Verdict = iota
	// Down: the CRM is unreachable; the handler answers nothing useful.
	Down
	// Limited: the quota is exhausted or a rate-limit fault fired.
	Limited
	// Fail5xx: answer a server error.
	Fail5xx
)

// Admission is the outcome of Admit for one request.
type Admission struct {
	Verdict Verdict
	Quota   Quota
	// TimeoutAfter: apply the request, then do not answer in time.
	Timeout bool
	// Partial: fail some items of a batch.
	Partial float64
}

// Admit counts a request against the quota and rolls the fault dice.
func (s *Sim) Admit() Admission {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.faults
	if f.Down {
		return Admission{Verdict: Down}
	}
	limit, window := s.defaultLimit, s.defaultWindow
	if f.RateLimit > 0 {
		limit = f.RateLimit
	}
	if f.RateWindowMS > 0 {
		window = time.Duration(f.RateWindowMS) * time.Millisecond
	}
	now := time.Now()
	if now.Sub(s.windowStart) >= window {
		s.windowStart, s.inWindow = now, 0
	}
	q := Quota{Limit: limit, Window: window, Reset: s.windowStart.Add(window)}
	if s.inWindow >= limit {
		q.Remaining = 0
		return Admission{Verdict: Limited, Quota: q}
	}
	s.inWindow++
	s.maxInWindow = max(s.maxInWindow, s.inWindow)
	q.Remaining = limit - s.inWindow
	a := Admission{Verdict: Serve, Quota: q, Partial: f.PartialBatchError}
	switch r := s.rng.Float64(); {
	case r < f.Error5xx:
		a.Verdict = Fail5xx
	case r < f.Error5xx+f.RateLimited:
		a.Verdict = Limited
	case r < f.Error5xx+f.RateLimited+f.Timeout:
		a.Timeout = true
	}
	return a
}

// Roll reports true with probability p, for per-item faults.
func (s *Sim) Roll(p float64) bool {
	if p <= 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rng.Float64() < p
}

// Latency waits for the configured latency, or until the request ends.
func (s *Sim) Latency(r *http.Request) {
	ms := s.Faults().LatencyMS
	if ms <= 0 {
		return
	}
	t := time.NewTimer(time.Duration(ms) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
	}
}

// Enter records that an API request arrived, the first on its connection
// when newConn; Leave that it was answered (with status, 0 when none was
// written).
func (s *Sim) Enter(newConn bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if newConn {
		s.conns++
	}
	s.inFlight++
	s.maxInFlight = max(s.maxInFlight, s.inFlight)
}

// Leave records that a request Enter counted was answered with status (0:
// nothing was written).
func (s *Sim) Leave(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inFlight--
	if status != 0 {
		s.byStatus[status]++
	}
}

// Duplicate records a create for an identity already stored.
func (s *Sim) Duplicate() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.duplicates++
}

// Wrote records a write the CRM applied to identity (the key the CRM
// knows the record by: HubSpot's email, Salesforce's external id). values
// are copied.
func (s *Sim) Wrote(identity, op, id string, values map[string]any) {
	cp := make(map[string]any, len(values))
	for k, v := range values {
		cp[k] = v
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	kept, err := s.history.add(identity, Write{Seq: s.writes + 1, At: time.Now().UTC(), Op: op, ID: id, Values: cp})
	if kept {
		s.writes++
	}
	if err != nil && s.historyErr == nil {
		s.historyErr = fmt.Errorf("crmsim history: %w", err)
	}
}

// History returns the writes applied to identity, oldest first. A write
// the history could not keep or read is reported by HistoryErr.
func (s *Sim) History(identity string) []Write {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, err := s.history.get(identity)
	if err != nil && s.historyErr == nil {
		s.historyErr = fmt.Errorf("crmsim history: %w", err)
	}
	return w
}

// HistoryErr is the first failure to keep or read the history since the
// last Reset: the history is then incomplete.
func (s *Sim) HistoryErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.historyErr
}

// Stats returns the counters; stored is the CRM's record count.
func (s *Sim) Stats(stored int) Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{RequestsByStatus: map[string]int{}, RecordsStored: stored, DuplicatesCreated: s.duplicates, MaxRequestsInWindow: s.maxInWindow,
		MaxConcurrent: s.maxInFlight, ConnectionsOpened: s.conns}
	for code, n := range s.byStatus {
		st.RequestsByStatus[strconv.Itoa(code)] = n
	}
	return st
}

// Hang holds a request that was applied but must look timed out to the
// client: it answers only after the client has given up, or after a minute.
func Hang(r *http.Request) {
	t := time.NewTimer(time.Minute)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
	}
}

// Answer finishes a request the CRM applied: with the JSON answer v, or,
// when timeout is set, with none in time (Hang), as an ambiguous network
// failure would. v nil writes no body.
func Answer(w http.ResponseWriter, r *http.Request, timeout bool, status int, ct string, v any) {
	if timeout {
		Hang(r)
		return
	}
	if v == nil {
		w.WriteHeader(status)
		return
	}
	WriteJSON(w, status, ct, v)
}

// WriteJSON writes v as JSON with status and content type ct, with its
// Content-Length, as the real APIs send it (without one, net/http sends an
// answer past 4 KB chunked, and a client cannot size its buffer).
func WriteJSON(w http.ResponseWriter, status int, ct string, v any) {
	b, err := fastjson.Marshal(v)
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(b)
	_, _ = w.Write([]byte{'\n'})
}

// ReadJSON decodes the body of r, at most 32 MB, into v; the error reads as
// encoding/json words it.
func ReadJSON(w http.ResponseWriter, r *http.Request, v any) error {
	b, err := httpbody.Read(http.MaxBytesReader(w, r.Body, 32<<20), r.ContentLength)
	if err != nil {
		return err
	}
	return fastjson.Unmarshal(b, v)
}

// StatusRecorder remembers the status a handler wrote.
type StatusRecorder struct {
	http.ResponseWriter
	Status int
}

// WriteHeader implements http.ResponseWriter.
func (r *StatusRecorder) WriteHeader(code int) {
	if r.Status == 0 {
		r.Status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *StatusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Write implements http.ResponseWriter.
func (r *StatusRecorder) Write(b []byte) (int, error) {
	if r.Status == 0 {
		r.Status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Refuse closes the connection without an answer, as an unreachable CRM
// looks to a client.
func Refuse(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	_ = conn.Close()
}

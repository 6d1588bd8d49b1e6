package crmsim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
)

// CRM is one emulated CRM API.
type CRM interface {
	// Name is the CRM's prefix and target name ("hubspot").
	Name() string
	// Sim is the CRM's fault, quota and counter state.
	Sim() *Sim
	// Register adds the CRM's API routes under prefix ("/hubspot") to mux.
	Register(mux *http.ServeMux, prefix string)
	// Stored is how many records the CRM holds.
	Stored() int
	// Reset drops every stored record, from its data dir too.
	Reset() error
	// Credentials are what a client needs to authenticate, as written to
	// credentials.json.
	Credentials() any
	// Close writes out and closes the CRM's records file, if it has one.
	Close() error
}

// Factory builds one emulated CRM: the emulator server is built from a
// list of them (see Open), so that adding a CRM to the emulator is one
// package that exports a Factory and one line in that list.
type Factory struct {
	// Name is the CRM's target name and URL prefix ("hubspot").
	Name string
	// New returns the CRM that accepts creds (the CRM's entry of
	// credentials.json; nil or incomplete: it makes new sandbox
	// credentials, or completes them) and keeps its records under dir
	// ("": in memory only).
	New func(creds json.RawMessage, dir string) (CRM, error)
}

// Validate reports a factory that cannot build a CRM.
func (f Factory) Validate() error {
	switch {
	case f.Name == "" || strings.ContainsAny(f.Name, "/ "):
		return fmt.Errorf("crmsim factory: name %q must be one path segment", f.Name)
	case f.New == nil:
		return fmt.Errorf("crmsim factory %s: New is nil", f.Name)
	}
	return nil
}

// Open builds one CRM from each factory, with the sandbox credentials of
// <dir>/credentials.json (new ones for a CRM that has none, written back)
// and its records kept in <dir>/<name>.db; dir "" keeps no credentials
// and each CRM's records in a temporary file, gone with the process.
// Duplicate names are an error.
func Open(dir string, factories ...Factory) (*Server, error) {
	stored := map[string]json.RawMessage{}
	if dir != "" {
		b, err := os.ReadFile(filepath.Join(dir, "credentials.json"))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("crmsim credentials: %w", err)
		}
		if err == nil && json.Unmarshal(b, &stored) != nil {
			stored = map[string]json.RawMessage{} // a damaged file is replaced
		}
	}
	crms := make([]CRM, 0, len(factories))
	closeAll := func() {
		for _, c := range crms {
			_ = c.Close()
		}
	}
	for _, f := range factories {
		if err := f.Validate(); err != nil {
			closeAll()
			return nil, err
		}
		c, err := f.New(stored[f.Name], dir)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("crmsim %s: %w", f.Name, err)
		}
		crms = append(crms, c)
	}
	s, err := NewServer(crms...)
	if err != nil {
		closeAll()
		return nil, err
	}
	if dir != "" {
		if _, err := s.WriteCredentials(dir); err != nil {
			closeAll()
			return nil, err
		}
	}
	return s, nil
}

// Close closes every CRM's records file.
func (s *Server) Close() error {
	var errs []error
	for _, c := range s.crms {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// Names returns the CRMs served, sorted.
func (s *Server) Names() []string {
	return slices.Sorted(maps.Keys(s.crms))
}

// RecordsPath is where a CRM named name keeps its records under dir.
func RecordsPath(dir, name string) string {
	if dir == "" {
		return ""
	}
	return filepath.Join(dir, name+".db")
}

// Server serves every CRM under its prefix and the /_sim/ controls.
type Server struct {
	crms map[string]CRM
	mux  *http.ServeMux
}

// NewServer returns a server for crms; duplicate names are an error.
func NewServer(crms ...CRM) (*Server, error) {
	s := &Server{crms: map[string]CRM{}, mux: http.NewServeMux()}
	for _, c := range crms {
		if _, dup := s.crms[c.Name()]; dup {
			return nil, fmt.Errorf("crmsim: CRM %q registered twice", c.Name())
		}
		s.crms[c.Name()] = c
		c.Register(s.mux, "/"+c.Name())
	}
	s.mux.HandleFunc("PUT /_sim/{crm}/faults", s.putFaults)
	s.mux.HandleFunc("GET /_sim/{crm}/faults", s.getFaults)
	s.mux.HandleFunc("GET /_sim/{crm}/stats", s.stats)
	s.mux.HandleFunc("POST /_sim/{crm}/reset", s.reset)
	s.mux.HandleFunc("GET /_sim/{crm}/history", s.history)
	return s, nil
}

// ServeHTTP counts every CRM API request: how many are in hand at once,
// and the status each was answered with.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	c, ok := s.crms[name]
	if !ok {
		s.mux.ServeHTTP(w, r)
		return
	}
	rec := &StatusRecorder{ResponseWriter: w}
	used, _ := r.Context().Value(connKey{}).(*atomic.Bool)
	c.Sim().Enter(used != nil && !used.Swap(true))
	s.mux.ServeHTTP(rec, r)
	c.Sim().Leave(rec.Status)
}

type connKey struct{}

// ConnContext marks each connection, so that the stats count the
// connections clients open (connections_opened): set it as the
// http.Server's ConnContext.
func (s *Server) ConnContext(ctx context.Context, _ net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, new(atomic.Bool))
}

func (s *Server) crm(w http.ResponseWriter, r *http.Request) (CRM, bool) {
	c, ok := s.crms[r.PathValue("crm")]
	if !ok {
		http.Error(w, "unknown CRM "+r.PathValue("crm"), http.StatusNotFound)
	}
	return c, ok
}

func (s *Server) putFaults(w http.ResponseWriter, r *http.Request) {
	c, ok := s.crm(w, r)
	if !ok {
		return
	}
	var f Faults
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		http.Error(w, "faults: "+err.Error(), http.StatusBadRequest)
		return
	}
	for name, p := range map[string]float64{"error_5xx": f.Error5xx, "rate_limited": f.RateLimited, "timeout": f.Timeout, "partial_batch_error": f.PartialBatchError} {
		if p < 0 || p > 1 {
			http.Error(w, name+" must be a probability from 0 to 1", http.StatusBadRequest)
			return
		}
	}
	c.Sim().SetFaults(f)
	WriteJSON(w, http.StatusOK, "application/json", f)
}

func (s *Server) getFaults(w http.ResponseWriter, r *http.Request) {
	if c, ok := s.crm(w, r); ok {
		WriteJSON(w, http.StatusOK, "application/json", c.Sim().Faults())
	}
}

func (s *Server) stats(w http.ResponseWriter, r *http.Request) {
	if c, ok := s.crm(w, r); ok {
		WriteJSON(w, http.StatusOK, "application/json", c.Sim().Stats(c.Stored()))
	}
}

// history answers GET /_sim/{crm}/history?identity=: the writes applied to
// one record identity, in order, with the values each carried.
func (s *Server) history(w http.ResponseWriter, r *http.Request) {
	c, ok := s.crm(w, r)
	if !ok {
		return
	}
	id := r.URL.Query().Get("identity")
	if id == "" {
		http.Error(w, "history: the query parameter identity is required", http.StatusBadRequest)
		return
	}
	writes := c.Sim().History(id)
	if len(writes) == 0 {
		writes = c.Sim().History(strings.ToLower(id)) // HubSpot keys emails in lower case
	}
	if err := c.Sim().HistoryErr(); err != nil {
		http.Error(w, "history: "+err.Error(), http.StatusInternalServerError)
		return
	}
	WriteJSON(w, http.StatusOK, "application/json", map[string]any{"identity": id, "writes": writes})
}

func (s *Server) reset(w http.ResponseWriter, r *http.Request) {
	if c, ok := s.crm(w, r); ok {
		if err := c.Reset(); err != nil {
			http.Error(w, "reset: "+err.Error(), http.StatusInternalServerError)
			return
		}
		c.Sim().Reset()
		w.WriteHeader(http.StatusNoContent)
	}
}

// WriteCredentials writes every CRM's sandbox credentials to
// <dir>/credentials.json, readable by the owner only.
func (s *Server) WriteCredentials(dir string) (string, error) {
	creds := map[string]any{}
	for name, c := range s.crms {
		creds[name] = c.Credentials()
	}
	b, err := json.MarshalIndent(creds, "", "  ")
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("crmsim credentials: %w", err)
	}
	path := filepath.Join(dir, "credentials.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return "", fmt.Errorf("crmsim credentials: %w", err)
	}
	return path, nil
}

package crmsim

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
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
	// Reset drops every stored record.
	Reset()
	// Credentials are what a client needs to authenticate, as written to
	// credentials.json.
	Credentials() any
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

func (s *Server) reset(w http.ResponseWriter, r *http.Request) {
	if c, ok := s.crm(w, r); ok {
		c.Reset()
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

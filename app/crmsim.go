package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/recordsync/record-sync/crmsim"
	"github.com/recordsync/record-sync/crmsim/hubspot"
	"github.com/recordsync/record-sync/crmsim/outreach"
	"github.com/recordsync/record-sync/crmsim/salesforce"
)

// CRMSim is a running CRM emulator.
type CRMSim struct {
	Addr        string
	Credentials string
	srv         *http.Server
	done        chan error
}

// StartCRMSim serves the emulator on addr (port 0 picks one), with the
// sandbox credentials kept in <dataDir>/crmsim/credentials.json so that a
// restart keeps them.
func StartCRMSim(addr, dataDir string, log *slog.Logger) (*CRMSim, error) {
	dir := filepath.Join(dataDir, "crmsim")
	creds, err := simCredentials(filepath.Join(dir, "credentials.json"))
	if err != nil {
		return nil, err
	}
	sf, err := salesforce.New(creds.Salesforce)
	if err != nil {
		return nil, err
	}
	sim, err := crmsim.NewServer(hubspot.New(creds.HubSpot), sf, outreach.New(creds.Outreach))
	if err != nil {
		return nil, err
	}
	path, err := sim.WriteCredentials(dir)
	if err != nil {
		return nil, err
	}
	ln, err := new(net.ListenConfig).Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("crmsim listen: %w", err)
	}
	c := &CRMSim{Addr: ln.Addr().String(), Credentials: path, done: make(chan error, 1),
		srv: &http.Server{Handler: sim, ReadHeaderTimeout: 5 * time.Second, ConnContext: sim.ConnContext}}
	go func() { c.done <- c.srv.Serve(ln) }()
	log.Info("crmsim_listening", "addr", c.Addr, "credentials", path)
	return c, nil
}

// Stop shuts the emulator down.
func (c *CRMSim) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := c.srv.Shutdown(ctx)
	if serr := <-c.done; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// simCredentials returns the sandbox credentials stored in path, and new
// ones for the CRMs that have none yet, so that a restart keeps them.
func simCredentials(path string) (simCreds, error) {
	var creds simCreds
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return creds, err
	}
	if err == nil {
		_ = json.Unmarshal(b, &creds) // a damaged file is replaced
	}
	if fresh := hubspot.NewCredentials(); creds.HubSpot.Token == "" {
		creds.HubSpot = fresh
	} else if creds.HubSpot.RefreshToken == "" { // a file from before the OAuth alternative
		creds.HubSpot.OAuthClient = fresh.OAuthClient
	}
	if creds.Salesforce.PrivateKey == "" {
		if creds.Salesforce, err = salesforce.NewCredentials(); err != nil {
			return creds, err
		}
	}
	if creds.Outreach.RefreshToken == "" {
		creds.Outreach = outreach.NewCredentials()
	}
	return creds, nil
}

// simCreds is the emulator's credentials.json.
type simCreds struct {
	HubSpot    hubspot.Credentials    `json:"hubspot"`
	Salesforce salesforce.Credentials `json:"salesforce"`
	Outreach   outreach.Credentials   `json:"outreach"`
}

// RunCRMSim serves the emulator until ctx ends.
func RunCRMSim(ctx context.Context, env Env, log *slog.Logger) error {
	c, err := StartCRMSim(env.CRMSimAddr, env.DataDir, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "CRM emulator on http://%s (/salesforce /hubspot /outreach, controls under /_sim/)\ncredentials: %s\n", c.Addr, c.Credentials)
	<-ctx.Done()
	return c.Stop()
}

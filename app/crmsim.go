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
	"github.com/recordsync/record-sync/shared/natsrv"
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
	token, err := hubspotToken(filepath.Join(dir, "credentials.json"))
	if err != nil {
		return nil, err
	}
	sim, err := crmsim.NewServer(hubspot.New(token))
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
		srv: &http.Server{Handler: sim, ReadHeaderTimeout: 5 * time.Second}}
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

// hubspotToken returns the token stored in path, or a new one.
func hubspotToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "pat-na1-" + natsrv.RandomSecret(), nil
	}
	if err != nil {
		return "", err
	}
	var creds struct {
		HubSpot hubspot.Credentials `json:"hubspot"`
	}
	if err := json.Unmarshal(b, &creds); err != nil || creds.HubSpot.Token == "" {
		return "pat-na1-" + natsrv.RandomSecret(), nil
	}
	return creds.HubSpot.Token, nil
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

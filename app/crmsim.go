package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/recordsync/record-sync/crmsim"
	"github.com/recordsync/record-sync/crmsim/hubspot"
	"github.com/recordsync/record-sync/crmsim/outreach"
	"github.com/recordsync/record-sync/crmsim/salesforce"
)

// Emulators are the CRMs the emulator serves: adding one is a package
// that exports a crmsim.Factory and a line here.
func Emulators() []crmsim.Factory {
	return []crmsim.Factory{
		hubspot.Factory(),
		salesforce.Factory(),
		outreach.Factory(),
	}
}

// CRMSim is a running CRM emulator.
type CRMSim struct {
	Addr        string
	Credentials string
	srv         *http.Server
	sim         *crmsim.Server
	done        chan error
}

// StartCRMSim serves the emulator on addr (port 0 picks one), with the
// sandbox credentials kept in <dataDir>/crmsim/credentials.json and each
// CRM's records in <dataDir>/crmsim/<crm>.db, so that a restart keeps
// both.
func StartCRMSim(addr, dataDir string, log *slog.Logger) (*CRMSim, error) {
	dir := filepath.Join(dataDir, "crmsim")
	sim, err := crmsim.Open(dir, Emulators()...)
	if err != nil {
		return nil, err
	}
	ln, err := new(net.ListenConfig).Listen(context.Background(), "tcp", addr)
	if err != nil {
		_ = sim.Close()
		return nil, fmt.Errorf("crmsim listen: %w", err)
	}
	c := &CRMSim{Addr: ln.Addr().String(), Credentials: filepath.Join(dir, "credentials.json"), done: make(chan error, 1), sim: sim,
		srv: &http.Server{Handler: sim, ReadHeaderTimeout: 5 * time.Second, ConnContext: sim.ConnContext}}
	go func() { c.done <- c.srv.Serve(ln) }()
	log.Info("crmsim_listening", "addr", c.Addr, "credentials", c.Credentials, "crms", strings.Join(sim.Names(), ","))
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
	return errors.Join(err, c.sim.Close())
}

// RunCRMSim serves the emulator until ctx ends.
func RunCRMSim(ctx context.Context, env Env, log *slog.Logger) error {
	c, err := StartCRMSim(env.CRMSimAddr, env.DataDir, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "CRM emulator on http://%s (/%s, controls under /_sim/)\ncredentials: %s\n", c.Addr, strings.Join(c.sim.Names(), " /"), c.Credentials)
	<-ctx.Done()
	return c.Stop()
}

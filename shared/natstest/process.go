package natstest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"testing"
	"time"

	recordsync "github.com/recordsync/record-sync"
	"github.com/recordsync/record-sync/shared/natsrv"
)

// childEnv carries the configuration of a server run by a child process.
const childEnv = "RECORDSYNC_NATSTEST_SERVER"

// childConfig is what a child server needs; the rest comes from nats.conf.
type childConfig struct {
	Listen    string            `json:"listen"`
	StoreDir  string            `json:"store_dir"`
	Profile   string            `json:"profile"`
	Passwords map[string]string `json:"passwords"`
}

const readyLine = "natstest server ready"

// ServeIfChild runs the server a test started with StartProcess when this
// process is that child (its TestMain calls ServeIfChild first), and
// exits; otherwise it returns at once. The server stops cleanly on
// SIGTERM; SIGKILL kills it with nothing flushed, as it kills a real one.
func ServeIfChild() {
	raw := os.Getenv(childEnv)
	if raw == "" {
		return
	}
	var c childConfig
	if err := json.Unmarshal([]byte(raw), &c); err != nil {
		fmt.Fprintln(os.Stderr, "natstest child:", err)
		os.Exit(2)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, os.Interrupt)
	s, err := natsrv.Start(natsrv.Config{Conf: recordsync.NATSConf, Listen: c.Listen, StoreDir: c.StoreDir, Profile: c.Profile, Passwords: c.Passwords})
	if err != nil {
		fmt.Fprintln(os.Stderr, "natstest child:", err)
		os.Exit(1)
	}
	fmt.Println(readyLine)
	<-sigs
	s.Shutdown()
	s.WaitForShutdown()
	os.Exit(0)
}

// Process is a NATS server from nats.conf in a child process (the test
// binary itself, see ServeIfChild), so that a test can kill it as an
// operator's server dies: SIGKILL, then start it again on the same store
// and port.
type Process struct {
	t   testing.TB
	cfg childConfig
	cmd *exec.Cmd
	// Passwords are the users' passwords.
	Passwords map[string]string
}

// StartProcess starts a server in a child process on a free port with its
// store in a temporary directory, and kills it when the test ends.
func StartProcess(t testing.TB, profile string) *Process {
	t.Helper()
	p := &Process{t: t, cfg: childConfig{Listen: FreeAddr(t), StoreDir: t.TempDir(), Profile: profile, Passwords: map[string]string{}}}
	for _, u := range natsrv.Users {
		p.cfg.Passwords[u] = natsrv.RandomSecret()
	}
	p.Passwords = p.cfg.Passwords
	t.Cleanup(func() {
		if p.cmd != nil {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
	})
	p.Start()
	return p
}

// Pid is the server process's id, "" when it is not running.
func (p *Process) Pid() string {
	if p.cmd == nil {
		return ""
	}
	return strconv.Itoa(p.cmd.Process.Pid)
}

// URL is the server's client URL.
func (p *Process) URL() string { return "nats://" + p.cfg.Listen }

// Start starts the server (again) and waits until it takes connections.
func (p *Process) Start() {
	p.t.Helper()
	raw, err := json.Marshal(p.cfg)
	if err != nil {
		p.t.Fatal(err)
	}
	// The child lives until Kill or Stop, not a context.
	cmd := exec.CommandContext(context.Background(), os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(raw))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		p.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	if err := AwaitLine(out, readyLine, 60*time.Second); err != nil {
		if errors.Is(err, ErrEnded) {
			_ = cmd.Wait()
		}
		p.t.Fatalf("natstest server process: %v", err)
	}
	p.cmd = cmd
}

// Kill kills the server with SIGKILL: nothing is flushed or closed.
func (p *Process) Kill() { p.signal(syscall.SIGKILL) }

// Stop stops the server with SIGTERM, cleanly.
func (p *Process) Stop() { p.signal(syscall.SIGTERM) }

func (p *Process) signal(sig syscall.Signal) {
	p.t.Helper()
	if p.cmd == nil {
		p.t.Fatal("natstest server process is not running")
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
	_ = p.cmd.Wait()
	p.cmd = nil
}

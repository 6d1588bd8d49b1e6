package natstest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// FreeAddr returns a loopback address with a port nothing listens on now,
// for a server or a child process to listen on; never one it returned
// before in this process (a port closed at once may come back from the
// next Listen: a run here got two cluster routes to one address).
func FreeAddr(t testing.TB) string {
	t.Helper()
	for {
		ln, err := new(net.ListenConfig).Listen(context.Background(), "tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		_ = ln.Close()
		given.Lock()
		fresh := !given.addrs[addr]
		given.addrs[addr] = true
		given.Unlock()
		if fresh {
			return addr
		}
	}
}

// given is every address FreeAddr returned.
var given = struct {
	sync.Mutex
	addrs map[string]bool
}{addrs: map[string]bool{}}

// ErrEnded is AwaitLine's error when the output ended before the line.
var ErrEnded = errors.New("exited before it was ready")

// AwaitLine reads r, a child process's output, until a line contains
// want, and keeps reading the rest in the background so that the child
// never blocks on it. It returns ErrEnded when r ends first, and an error
// after timeout.
func AwaitLine(r io.Reader, want string, timeout time.Duration) error {
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(r)
		said := false
		for sc.Scan() {
			if !said && strings.Contains(sc.Text(), want) {
				said = true
				ready <- true
			}
		}
		if !said {
			ready <- false
		}
	}()
	select {
	case ok := <-ready:
		if !ok {
			return ErrEnded
		}
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("not ready after %s", timeout)
	}
}

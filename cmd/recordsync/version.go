package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Set by the linker: make build passes -X main.buildVersion=... and
// -X main.buildCommit=... (git describe, git rev-parse HEAD).
var (
	buildVersion string
	buildCommit  string
)

// buildInfo is what `recordsync version` prints.
type buildInfo struct {
	Version, Commit, Time string
	Modified              bool
	Go, Platform          string
	NATSServer, NATSGo    string
}

// version returns the linker's values, or else what the Go toolchain
// recorded in the binary (module version, VCS revision and time).
func version() buildInfo {
	b := buildInfo{Version: buildVersion, Commit: buildCommit, Go: runtime.Version(),
		Platform: runtime.GOOS + "/" + runtime.GOARCH, NATSServer: server.VERSION, NATSGo: nats.Version}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if b.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			b.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if b.Commit == "" {
					b.Commit = s.Value
				}
			case "vcs.time":
				b.Time = s.Value
			case "vcs.modified":
				b.Modified = s.Value == "true"
			}
		}
	}
	if b.Version == "" {
		b.Version = "devel"
	}
	if b.Commit == "" {
		b.Commit = "unknown"
	}
	return b
}

func versionText() string {
	b := version()
	var sb strings.Builder
	fmt.Fprintf(&sb, "recordsync %s\n", b.Version)
	commit := b.Commit
	if b.Modified && !strings.HasSuffix(commit, "-dirty") {
		commit += " (modified)"
	}
	fmt.Fprintf(&sb, "  commit       %s\n", commit)
	if b.Time != "" {
		fmt.Fprintf(&sb, "  commit time  %s\n", b.Time)
	}
	fmt.Fprintf(&sb, "  go           %s %s\n", b.Go, b.Platform)
	fmt.Fprintf(&sb, "  nats-server  v%s (embedded by dev; servers of a cluster should run the same or newer)\n", b.NATSServer)
	fmt.Fprintf(&sb, "  nats.go      v%s\n", b.NATSGo)
	return sb.String()
}

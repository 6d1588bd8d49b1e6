package app

import (
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// MemoryShare is the share of a container's memory limit that
// RECORDSYNC_MEMORY_LIMIT=auto gives the Go runtime's soft limit: the rest
// is for what the runtime does not count (the kernel's page cache of the
// NATS store files in dev, memory-mapped files, thread stacks of cgo).
const MemoryShare = 0.8

// Memory limits of RECORDSYNC_MEMORY_LIMIT other than a size.
const (
	MemoryLimitAuto int64 = 0  // 80% of the container's limit, if any
	MemoryLimitOff  int64 = -1 // none
)

// parseMemoryLimit reads RECORDSYNC_MEMORY_LIMIT: auto, off, or a size as
// GOMEMLIMIT takes it (a number of bytes with B, KiB, MiB, GiB or TiB).
func parseMemoryLimit(v string) (int64, error) {
	switch v {
	case "", "auto":
		return MemoryLimitAuto, nil
	case "off":
		return MemoryLimitOff, nil
	}
	n, err := parseSize(v)
	switch {
	case err != nil:
		return 0, fmt.Errorf("want auto, off, or a size such as 400MiB or 2GiB")
	case n < 64<<20:
		return 0, fmt.Errorf("at least 64MiB, or auto or off")
	}
	return n, nil
}

// sizeUnits are the units of a size, largest first.
var sizeUnits = []struct {
	suffix string
	mult   int64
}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}

// parseSize reads a size as GOMEMLIMIT takes it: a positive whole number
// of B, KiB, MiB, GiB or TiB.
func parseSize(v string) (int64, error) {
	for _, u := range sizeUnits {
		if num, ok := strings.CutSuffix(v, u.suffix); ok {
			n, err := strconv.ParseInt(num, 10, 64)
			if err != nil || n <= 0 || n > (1<<62)/u.mult {
				break
			}
			return n * u.mult, nil
		}
	}
	return 0, fmt.Errorf("want a size such as 32MiB or 1GiB")
}

// formatSize writes n in the largest unit that divides it.
func formatSize(n int64) string {
	for _, u := range sizeUnits {
		if n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

// SetMemoryLimit sets the Go runtime's soft memory limit from limit (a
// size, MemoryLimitAuto or MemoryLimitOff) unless GOMEMLIMIT is set, and
// returns the limit in force (0: none) and where it comes from. With a
// limit, the garbage collector works harder as the heap nears it, instead
// of letting it grow to three times what is live (GCPercent): a process in
// a container stays inside the container.
func SetMemoryLimit(limit int64) (int64, string) {
	if v := os.Getenv("GOMEMLIMIT"); v != "" {
		return debug.SetMemoryLimit(-1), "GOMEMLIMIT"
	}
	switch limit {
	case MemoryLimitOff:
		return 0, "off"
	case MemoryLimitAuto:
		c := containerLimit()
		if c == 0 {
			return 0, "auto: no container limit"
		}
		limit = int64(float64(c) * MemoryShare)
		debug.SetMemoryLimit(limit)
		return limit, "auto: 80% of the container's " + strconv.FormatInt(c>>20, 10) + " MiB"
	}
	debug.SetMemoryLimit(limit)
	return limit, "RECORDSYNC_MEMORY_LIMIT"
}

// containerLimit is the memory limit of the process's cgroup (v2, or v1),
// 0 when there is none.
func containerLimit() int64 {
	for _, path := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil || n <= 0 || n >= 1<<60 { // "max", or v1's "unlimited"
			return 0
		}
		return n
	}
	return 0
}

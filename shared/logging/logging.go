// Package logging builds the process's slog JSON logger.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// New returns a JSON logger writing to w at level ("debug", "info", "warn",
// "error"; info when empty or unknown) and the LevelVar that changes it at
// runtime.
func New(w io.Writer, level string) (*slog.Logger, *slog.LevelVar) {
	lv := new(slog.LevelVar)
	lv.Set(ParseLevel(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lv})), lv
}

// ParseLevel parses a level name; unknown names are info.
func ParseLevel(s string) slog.Level {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug
	case "warn", "warning":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// Open returns the writer logs go to: w, and also the file at path when
// path is not empty (appended to, created 0600). close closes the file.
func Open(w io.Writer, path string) (out io.Writer, closeFile func() error, err error) {
	if path == "" {
		return w, func() error { return nil }, nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("log file: %w", err)
	}
	return io.MultiWriter(w, f), f.Close, nil
}

// Levels are the level names New and ParseLevel take.
var Levels = []string{"debug", "info", "warn", "error"}

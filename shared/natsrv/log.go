package natsrv

import (
	"fmt"
	"log/slog"
	"strings"
)

// serverLog passes the embedded server's warnings and errors to slog;
// notices are debug, so that a normal start stays quiet.
type serverLog struct{ log *slog.Logger }

func (l serverLog) Noticef(format string, v ...any) {
	l.log.Debug("nats_server", "detail", fmt.Sprintf(format, v...))
}

func (l serverLog) Warnf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if strings.HasPrefix(msg, "Plaintext passwords detected") {
		// nats.conf takes them from the environment by design; see
		// docs/operators/running.md.
		l.log.Debug("nats_server", "detail", msg)
		return
	}
	l.log.Warn("nats_server", "detail", msg)
}

func (l serverLog) Fatalf(format string, v ...any) {
	l.log.Error("nats_server_fatal", "detail", fmt.Sprintf(format, v...))
}

func (l serverLog) Errorf(format string, v ...any) {
	l.log.Error("nats_server", "detail", fmt.Sprintf(format, v...))
}

func (l serverLog) Debugf(string, ...any) {}

func (l serverLog) Tracef(string, ...any) {}

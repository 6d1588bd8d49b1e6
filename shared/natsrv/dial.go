package natsrv

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// Dial connects to an external NATS server at url as a service, with the
// user's private inbox prefix (InboxPrefix) and opts. user and password may
// be empty when the server needs none; the connection then keeps the
// default _INBOX prefix, which nats.conf allows the operator only.
func Dial(url, name, user, password string, opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{
		nats.Name("recordsync-" + name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
	}, opts...)
	if user != "" {
		opts = append(opts, userOptions(user, password)...)
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect nats %s: %w", maskUserInfo(url), explainAuth(err, user, password))
	}
	return nc, nil
}

// ErrAuth is wrapped by the error Dial returns when the server refuses the
// user or its password; it also wraps nats.ErrAuthorization.
var ErrAuth = errors.New("nats refused the credentials")

// explainAuth names, for a refused connection, the user and the variables
// to check, instead of the server's bare "Authorization Violation".
func explainAuth(err error, user, password string) error {
	if !errors.Is(err, nats.ErrAuthorization) {
		return err
	}
	switch {
	case user == "":
		return fmt.Errorf("%w (%w): no user given: set RECORDSYNC_NATS_USER and RECORDSYNC_NATS_PASSWORD", ErrAuth, err)
	case password == "":
		return fmt.Errorf("%w (%w): user %q without a password: set RECORDSYNC_NATS_PASSWORD to the server's password for %s (nats.conf reads it from RECORDSYNC_NATS_%s_PASSWORD)",
			ErrAuth, err, user, user, strings.ToUpper(user))
	}
	return fmt.Errorf("%w (%w): user %q or its password is wrong: check RECORDSYNC_NATS_USER and RECORDSYNC_NATS_PASSWORD against the server's user %s (nats.conf reads its password from RECORDSYNC_NATS_%s_PASSWORD)",
		ErrAuth, err, user, user, strings.ToUpper(user))
}

// maskUserInfo hides a password in a URL such as nats://u:p@host:4222.
func maskUserInfo(u string) string {
	at := strings.LastIndex(u, "@")
	scheme := strings.Index(u, "://")
	if at < 0 || scheme < 0 || scheme > at {
		return u
	}
	if user, _, ok := strings.Cut(u[scheme+3:at], ":"); ok {
		return u[:scheme+3] + user + ":***" + u[at:]
	}
	return u
}

// ErrorLog logs the asynchronous errors of a connection, a permissions
// violation among them (what the server refused, and to which user).
func ErrorLog(log *slog.Logger) nats.Option {
	return nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
		attrs := []any{"error", err.Error(), "user", nc.Opts.User}
		if sub != nil {
			attrs = append(attrs, "subject", sub.Subject)
		}
		if errors.Is(err, nats.ErrPermissionViolation) {
			log.Error("nats_permission_denied", attrs...)
			return
		}
		log.Warn("nats_async_error", attrs...)
	})
}

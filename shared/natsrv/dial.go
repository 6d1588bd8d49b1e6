package natsrv

import (
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// Dial connects to an external NATS server at url as a service. user and
// password may be empty when url carries them or the server needs none.
func Dial(url, name, user, password string) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name("recordsync-" + name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
	}
	if user != "" {
		opts = append(opts, nats.UserInfo(user, password))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect nats %s: %w", url, err)
	}
	return nc, nil
}

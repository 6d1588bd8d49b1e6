package status

import (
	"time"

	"github.com/nats-io/nats.go"
)

// ackPlusACK is the body that acknowledges a JetStream message when
// published to its reply subject, as jetstream.Msg.Ack sends it; ackWPI
// says it is still in progress, as jetstream.Msg.InProgress does, which
// restarts its AckWait; nakRetry asks for it again in a second, as
// jetstream.Msg.NakWithDelay(time.Second) does.
var (
	ackPlusACK = []byte("+ACK")
	ackWPI     = []byte("+WPI")
	nakRetry   = []byte(`-NAK {"delay": 1000000000}`)
)

// delayedAcks acknowledges status changes only once the KV writes they
// caused are on disk. With KV sync_status in async persist mode, a write is
// acknowledged while still in the server's memory and synced within the
// server's sync_interval: a change acked before that could be lost with its
// write in a crash. Held back, it is redelivered instead and applied again,
// which changes nothing that was kept. Only the reply subject of each
// message is kept, not its data.
type delayedAcks struct {
	nc      *nats.Conn
	delay   time.Duration
	pending []delayedAck // in the order they fall due
}

type delayedAck struct {
	reply string
	due   time.Time
}

// ack acknowledges the message of reply now when there is no delay, else
// once the delay has passed.
func (d *delayedAcks) ack(reply string, now time.Time) error {
	if d.delay <= 0 {
		return d.nc.Publish(reply, ackPlusACK)
	}
	d.pending = append(d.pending, delayedAck{reply: reply, due: now.Add(d.delay)})
	return nil
}

// flush sends the acks due at now and returns when the next falls due.
func (d *delayedAcks) flush(now time.Time) (next time.Time, ok bool) {
	i := 0
	for ; i < len(d.pending) && !d.pending[i].due.After(now); i++ {
		// A lost ack only means a redelivery, applied as a no-op.
		_ = d.nc.Publish(d.pending[i].reply, ackPlusACK)
	}
	d.pending = d.pending[i:]
	if len(d.pending) == 0 {
		return time.Time{}, false
	}
	return d.pending[0].due, true
}

// keepAlive tells JetStream that the changes waiting for their ack are
// still in hand.
func (d *delayedAcks) keepAlive() {
	for _, p := range d.pending {
		// A lost one only means a redelivery, applied as a no-op.
		_ = d.nc.Publish(p.reply, ackWPI)
	}
}

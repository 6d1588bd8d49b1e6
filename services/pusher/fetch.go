package pusher

import (
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/recordsync/record-sync/shared/config"
	"github.com/recordsync/record-sync/shared/mesh"
)

// How much a round takes.
//
// A round pushes about roundItems(tc) items: enough for concurrency full
// batches. Its messages carry from one item each (a trickle of single
// events, a record's retry) to mesh.MaxWorkItems each (a backlog), and a
// fetch counts messages, so a fetch is bounded by bytes as well: about
// roundOf items' worth, at the size the partition's recent items had.
// Items vary far less in size than messages vary in items, so a round of
// a backlog after a round of single-item retries takes about as many items
// as the one before, not up to two hundred times as many, as it did when a
// fetch was sized by the items per message of the last round. What a
// target's pushers hold is thereby about partitions x roundOf items,
// whatever the backlog.

// defaultItemBytes is what an item is taken to weigh before a partition has
// seen any: about a contact of a dozen fields with its headers' share.
const defaultItemBytes = 1024

// roundItems is how many items a round of tc pushes: concurrency full
// batches.
func roundItems(tc config.Target) int { return tc.BatchSize * max(tc.Concurrency, 1) }

// roundOf is the byte bound of a fetch for want items: want items, or a
// full work message if that is more (a target that pushes one record at a
// time still takes a message whole), at the partition's item size, with a
// quarter to spare.
func (p *partition) roundOf(want int) int {
	size := p.itemBytes
	if size <= 0 {
		size = defaultItemBytes
	}
	return int(float64(max(want, mesh.MaxWorkItems)) * size * 1.25)
}

// pull fetches the next messages of a round that wants want items: at most
// want messages and roundOf(want) bytes, waiting at most wait for them.
//
// JetStream never splits a message: one larger than the bytes left ends
// the fetch, and when it is the first, the fetch returns nothing, at once
// (a 409 that the client does not pass on). An empty fetch that ends well
// before its wait is taken for that, and the next pull takes one message
// whatever its size, so that an unusually large message never stalls the
// partition.
func (p *partition) pull(want int, wait time.Duration) ([]jetstream.Msg, error) {
	opts := []jetstream.FetchOpt{jetstream.FetchMaxWait(wait), jetstream.FetchPriorityGroup(mesh.PushGroup)}
	bounded := !p.oversized
	if bounded {
		opts = append(opts, jetstream.FetchMaxBytes(p.roundOf(want)))
	} else {
		want = 1
	}
	start := time.Now()
	batch, err := p.cons.Fetch(want, opts...)
	if err != nil {
		return nil, err
	}
	var msgs []jetstream.Msg
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	err = batch.Error()
	p.oversized = bounded && len(msgs) == 0 && err == nil && time.Since(start) < wait/2
	return msgs, err
}

// learnItemBytes remembers how many bytes the items of msgs took on
// average, as JetStream counts a message's size (subject, reply, headers
// and data).
func (p *partition) learnItemBytes(msgs []jetstream.Msg) {
	bytes, items := 0, 0
	for _, m := range msgs {
		bytes += msgBytes(m)
		items += mesh.Count(m)
	}
	if items > 0 {
		p.itemBytes = float64(bytes) / float64(items)
	}
}

// msgBytes is about the size JetStream counts for m against a fetch's
// byte bound: its subject, reply subject, headers as written and data.
func msgBytes(m jetstream.Msg) int {
	n := len(m.Subject()) + len(m.Reply()) + len(m.Data())
	if h := m.Headers(); len(h) > 0 {
		n += len("NATS/1.0\r\n\r\n")
		for k, vs := range h {
			for _, v := range vs {
				n += len(k) + len(": \r\n") + len(v)
			}
		}
	}
	return n
}

package pusher

import (
	"math"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/recordsync/record-sync/shared/config"
	"github.com/recordsync/record-sync/shared/mesh"
)

// How much a round takes.
//
// A round pushes about roundItems(tc) items: enough for concurrency full
// batches. A fetch counts messages, which carry from one item each (a
// trickle of single events) to mesh.MaxWorkItems each (a backlog), so the
// partition learns how many items its work messages carried and asks for
// that many fewer messages. A record's own subject (a retry, a deferral)
// carries one item whatever the flow is: those messages are left out of
// what is learned. Learned from them, a round of retries after a CRM came
// back made the next fetch take as many backlog messages as it wanted
// items, up to 200 times too many (a 1,000,000-record backlog drained with
// the pushers holding 590 MB).
//
// A fetch is not bounded by bytes: with a pinned consumer the server
// checks a message against the byte budget before it adds the pin header,
// while nats.go counts the header and ends the fetch first, so that the
// server goes on sending messages that nobody reads, each given back only
// after the AckWait.

// roundItems is how many items a round of tc pushes: concurrency full
// batches.
func roundItems(tc config.Target) int { return tc.BatchSize * max(tc.Concurrency, 1) }

// fetchSize is about enough messages for want items, given how many items
// the partition's recent work messages carried.
func (p *partition) fetchSize(want int) int {
	return min(max(int(math.Ceil(float64(want)/max(p.itemsPerMsg, 1))), 1), want)
}

// learnItemsPerMsg remembers how many items the work messages of msgs
// carried on average; the messages of record subjects do not count.
func (p *partition) learnItemsPerMsg(msgs []jetstream.Msg) {
	n, items := 0, 0
	for _, m := range msgs {
		if !isRecordSubject(m.Subject()) {
			n++
			items += mesh.Count(m)
		}
	}
	if n > 0 {
		p.itemsPerMsg = float64(items) / float64(n)
	}
}

// pull fetches the next messages of a round that wants want items, waiting
// at most wait for them.
func (p *partition) pull(want int, wait time.Duration) ([]jetstream.Msg, error) {
	batch, err := p.cons.Fetch(p.fetchSize(want), jetstream.FetchMaxWait(wait), jetstream.FetchPriorityGroup(mesh.PushGroup))
	if err != nil {
		return nil, err
	}
	var msgs []jetstream.Msg
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	return msgs, batch.Error()
}

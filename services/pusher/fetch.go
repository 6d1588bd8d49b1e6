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
// What is learned lags a change in the flow by one round: after a trickle
// of single events (one item a message) a backlog's first round would take
// as many messages as it wants items, each of up to mesh.MaxWorkItems. So
// a round's first fetch asks for at most enough messages for overFetch
// times its items, were each full; only when all of those came at once and
// carried fewer items than the round wants does a second fetch, sized by
// what they carried, take the rest. A round then holds at most overFetch
// times its items, unless the flow turns from single items to full
// messages within one round's second fetch.
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

// overFetch bounds the items a round's first fetch may bring, as a
// multiple of the items the round wants.
const overFetch = 4

// firstFetch is how many messages a round's first fetch asks for, out of
// the size it wants in all: at most enough for overFetch times want items
// of full messages.
func firstFetch(want, size int) int {
	return min(size, max(1, (overFetch*want+mesh.MaxWorkItems-1)/mesh.MaxWorkItems))
}

// secondFetch is how many messages a round that wants want items, and asked
// for size messages, fetches after its first fetch brought got (every one
// it asked for): none when they carry want items or size was asked, else as
// many as the items got carried per message say the rest needs.
func secondFetch(want, size int, got []jetstream.Msg) int {
	items := 0
	for _, m := range got {
		items += mesh.Count(m)
	}
	if items >= want || len(got) >= size {
		return 0
	}
	return min(size-len(got), max(1, (want-items)*len(got)/max(items, 1)))
}

// pull fetches the next messages of a round that wants want items, waiting
// at most wait for them in all: a first fetch bounded by firstFetch, and a
// second (secondFetch) when the first brought every message it asked for at
// once.
func (p *partition) pull(want int, wait time.Duration) ([]jetstream.Msg, error) {
	deadline := time.Now().Add(wait)
	size := p.fetchSize(want)
	first := firstFetch(want, size)
	msgs, err := p.fetch(first, wait)
	if err != nil || len(msgs) < first {
		return msgs, err
	}
	left := time.Until(deadline)
	rest := secondFetch(want, size, msgs)
	if rest == 0 || left < time.Millisecond {
		return msgs, nil
	}
	more, err := p.fetch(rest, left)
	return append(msgs, more...), err
}

// fetch takes up to n messages of the partition, waiting at most wait.
func (p *partition) fetch(n int, wait time.Duration) ([]jetstream.Msg, error) {
	batch, err := p.cons.Fetch(n, jetstream.FetchMaxWait(wait), jetstream.FetchPriorityGroup(mesh.PushGroup))
	if err != nil {
		return nil, err
	}
	var msgs []jetstream.Msg
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	return msgs, batch.Error()
}

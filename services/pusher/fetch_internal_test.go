package pusher

import (
	"strconv"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recordsync/record-sync/shared/mesh"
)

// fakeMsg is a delivered message as far as a fetch's sizing reads it: its
// subject and its item count.
type fakeMsg struct {
	jetstream.Msg
	subject string
	items   int
}

func (m fakeMsg) Subject() string { return m.subject }
func (m fakeMsg) Headers() nats.Header {
	return nats.Header{mesh.HeaderCount: []string{strconv.Itoa(m.items)}}
}

// msgs returns n messages of items items each on subject.
func msgs(n, items int, subject string) []jetstream.Msg {
	out := make([]jetstream.Msg, n)
	for i := range out {
		out[i] = fakeMsg{subject: subject, items: items}
	}
	return out
}

// TestFetchSizeFollowsWorkMessages: a round asks for about as many
// messages as its items need, as the partition's work messages ran; a
// round of a record's retries (one item each, on their record subjects)
// leaves that alone, so that the next fetch of a backlog does not take as
// many messages as it wants items.
func TestFetchSizeFollowsWorkMessages(t *testing.T) {
	const work, record = "sync.push.hubspot.3", "sync.push.hubspot.3.rk-1"
	p := &partition{}
	steps := []struct {
		what  string
		round []jetstream.Msg
		want  int // messages fetched for 800 items next
	}{
		{"nothing seen yet", nil, 800},
		{"a backlog's work messages of 100 items", msgs(8, 100, work), 8},
		{"a round of retries on record subjects", msgs(40, 1, record), 8},
		{"a round of backlog and retries", append(msgs(2, 50, work), msgs(30, 1, record)...), 16},
		{"a trickle of single events", msgs(5, 1, work), 800},
	}
	for _, s := range steps {
		p.learnItemsPerMsg(s.round)
		if got := p.fetchSize(800); got != s.want {
			t.Errorf("after %s: fetch %d messages for 800 items, want %d", s.what, got, s.want)
		}
	}
	if got := p.fetchSize(1); got != 1 {
		t.Errorf("a probe fetches %d messages, want 1", got)
	}
}

// TestRoundFetchesAreBounded: a round's first fetch brings at most
// overFetch times its items, however few items the partition's messages
// carried before; a second fetch, sized by what the first brought, takes
// the rest only when the first brought all it asked for and too few items.
func TestRoundFetchesAreBounded(t *testing.T) {
	const work = "sync.push.hubspot.3"
	cases := []struct {
		name       string
		want, size int
		first      int
		got        []jetstream.Msg // what the first fetch brought
		second     int
	}{
		{"after a trickle, a backlog's full messages", 400, 400, 8, msgs(8, 200, work), 0},
		{"a backlog of single events", 400, 400, 8, msgs(8, 1, work), 392},
		{"messages of 20 items", 400, 400, 8, msgs(8, 20, work), 12},
		{"as the partition's messages ran: one fetch", 400, 7, 7, msgs(7, 60, work), 0},
		{"a probe", 1, 1, 1, msgs(1, 1, work), 0},
		{"a record's retries, one item each", 400, 20, 8, msgs(8, 1, work+".rk-1"), 12},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			first := firstFetch(c.want, c.size)
			if first != c.first {
				t.Fatalf("first fetch %d messages, want %d", first, c.first)
			}
			if first*mesh.MaxWorkItems > overFetch*c.want+mesh.MaxWorkItems {
				t.Fatalf("a first fetch of %d full messages brings more than %d times %d items", first, overFetch, c.want)
			}
			if got := secondFetch(c.want, c.size, c.got); got != c.second {
				t.Fatalf("second fetch %d messages, want %d", got, c.second)
			}
		})
	}
}

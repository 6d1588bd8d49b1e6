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

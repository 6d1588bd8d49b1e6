package pusher

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/recordsync/record-sync/shared/mesh"
)

// Order and ownership.
//
// A target's work is split by record into partitions (mesh.Partition), each
// with its own consumer pinned by JetStream to one pusher process at a time
// (mesh.PushConsumers). Every pusher pulls from every partition; the one
// JetStream pins a partition to handles its messages in rounds, one round
// after the other, and the others' pull requests wait. That owner keeps the
// events of a record in order:
//
//   - Within a round, a record's items are folded into one write (coalesce)
//     and records that are one CRM identity go in successive requests.
//   - A record whose push must be retried, or that is deferred (below), is
//     blocked: its items go to its record subject,
//     sync.push.<target>.<p>.<record key>, due at its
//     Recordsync-Not-Before. A later event of a blocked record is not
//     pushed: it is folded into a new message there, written from the last
//     one, so it can never overtake the retry. The last message of a record
//     subject holds everything; an earlier one still there is acked unread
//     when it comes (replaced). (No rollup: see mesh.PublishRecordWorkAsync.)
//     The subject's messages are the block, so a new owner learns every
//     block of a partition from the stream when it takes it
//     (blocksFromStream).
//   - An event older than one already attempted for its record (by this
//     owner, or by anyone per the status) is not pushed: a message
//     redelivered after its pusher died, or a retry overtaken while no
//     owner knew of it, is dropped as superseded.
//
// No head-of-line blocking: a round pushes each CRM identity at most once
// (one wave). Records beyond it that share an identity (10,000 records with
// one email are one HubSpot contact) are deferred to their record subjects,
// spread over the next rounds, so that the rest of the partition keeps its
// normal latency.
//
// Failover: a pusher renews its pins by pulling (also while it pushes, see
// keepAlive). When it dies, JetStream unpins its partitions after the
// PinnedTTL and pins each to a pusher still pulling; its unacked messages
// are redelivered after the AckWait, which is shorter, so they come first.

// partition is what the owner of one partition keeps between rounds. Only
// the partition's own loop touches it, except lost.
type partition struct {
	n    int
	cons jetstream.Consumer
	// pin is the pin id of the last messages received: a new one means
	// this process has (again) become the owner.
	pin string
	// blocked holds, by record key, the records with a message on their
	// record subject, and its content when known.
	blocked map[string]*recordWork
	// applied is the occurred_at of the last event pushed per record id,
	// forgotten when it grows past maxApplied (the status has it too).
	applied map[string]time.Time
	// done is, by record key, the stream sequence of the last record
	// message settled since the record was unblocked: an earlier one that
	// comes after it is a copy left behind (forgotten with applied).
	done map[string]uint64
	// itemsPerMsg is how many items the partition's recent work messages
	// carried (see learnItemsPerMsg).
	itemsPerMsg float64
	// lost is set when a pull request learns that the pin moved on while
	// this process was pushing.
	lost atomic.Bool
	// cooldown: until then, a released partition is not pulled.
	cooldown time.Time
	// checked is when this process, at its fair share, last asked whether
	// the partition is pinned at all; orphan says it was not.
	checked time.Time
	orphan  bool
}

// Balance: JetStream pins a partition to whichever pusher is waiting
// first, so one process may end up with all of them. Once a second, a
// process counts the pushers pulling one of its partitions (the consumer's
// waiting pull requests, plus itself); an owner with more than its fair
// share (ceil(partitions / pushers)) unpins partitions, between rounds,
// and leaves each alone for two PinnedTTLs, so that another pusher takes
// it.
// A pusher at its fair share pulls the partitions it does not own only for
// at most one byte (so that it is counted but never pinned), so a released
// partition goes to one below it. At most one partition per
// process is released per balanceEvery.
//
// (Counting waiting pull requests needs no registry of pushers; a
// pusher's requests vanish when its connection does.)
const balanceEvery = 100 * time.Millisecond

// fairShare is the most partitions this process should own.
func (w *Worker) fairShare() int {
	n := max(w.pushers.Load(), 1)
	return int((int64(w.push.Partitions) + n - 1) / n)
}

// mayPull reports whether the loop of partition p pulls now. A process at
// its fair share still takes a partition that nobody owns (its owner died,
// and the others may not have counted it gone yet): it asks once a second.
func (w *Worker) mayPull(ctx context.Context, p *partition, now time.Time) bool {
	if p.pin != "" {
		return true
	}
	if now.Before(p.cooldown) {
		return false
	}
	if w.Owned() < w.fairShare() {
		return true
	}
	if now.Sub(p.checked) >= time.Second {
		p.checked = now
		ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
		info, err := p.cons.Info(ictx)
		cancel()
		p.orphan = err == nil && (len(info.PriorityGroups) == 0 || info.PriorityGroups[0].PinnedClientID == "") && info.NumPending+uint64(info.NumAckPending) > 0
	}
	return p.orphan
}

// balance counts the pushers (once a second per process, from p's
// consumer) and releases p when this process owns more than its share.
func (w *Worker) balance(ctx context.Context, p *partition) {
	if p.pin == "" {
		return
	}
	now := time.Now()
	if last := w.counted.Load(); now.UnixNano()-last >= int64(time.Second) && w.counted.CompareAndSwap(last, now.UnixNano()) {
		ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
		info, err := p.cons.Info(ictx)
		cancel()
		if err == nil {
			// This loop is not pulling now: every waiting request is
			// another pusher's.
			w.pushers.Store(int64(info.NumWaiting) + 1)
		}
	}
	if w.Owned() <= w.fairShare() {
		return
	}
	last := w.released.Load()
	if now.UnixNano()-last < int64(balanceEvery) || !w.released.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	s, err := w.js.Stream(ctx, mesh.StreamPush)
	if err == nil {
		err = s.UnpinConsumer(ctx, mesh.ConsumerPusher(w.crm.Name(), p.n), mesh.PushGroup)
	}
	if err != nil {
		w.log.Warn("partition_release_failed", "partition", p.n, "error", err.Error())
		return
	}
	w.log.Info("partition_released", "partition", p.n, "owned", w.Owned()-1, "pushers", w.pushers.Load())
	p.pin, p.cooldown = "", now.Add(2*w.push.PinnedTTL)
	w.owned.Add(-1)
}

// Owned returns how many of the target's partitions are pinned to this
// process, as far as it knows.
func (w *Worker) Owned() int { return int(w.owned.Load()) }

// apiTimeout bounds one JetStream API request of a round (stream info, a
// record subject's last message, a status read). A request whose answer
// was lost with a server (sent just before it stopped) is never answered:
// without its own deadline it would wait for the round's, minutes during
// which the partition takes no work and its pin lapses.
const apiTimeout = 5 * time.Second

// apiContext is ctx bounded for one JetStream API request.
func apiContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, apiTimeout)
}

// maxApplied bounds partition.applied and partition.done, per partition:
// a process may own every partition of every target (16 each by default),
// so at 100,000 they held 90 MB in a 3-minute soak. A record forgotten
// here is looked up in its status when it must be checked.
const maxApplied = 10_000

// recordWork is a record's message on its record subject: the last one,
// which holds all that any earlier one still there does.
type recordWork struct {
	items     []mesh.Item
	notBefore time.Time
	known     bool // items and notBefore are what the stream holds
	// last is the stream sequence of the last message (0: unknown).
	last uint64
	// msgs is how many messages the subject held when the owner took
	// the partition (0: unknown).
	msgs uint64
	// held is the last message, when this owner has it in hand (given
	// back until due): once a message written from it is stored, it is
	// acked, so that joins do not pile up unacked messages.
	held jetstream.Msg
}

func newPartition(n int, cons jetstream.Consumer) *partition {
	return &partition{n: n, cons: cons, blocked: map[string]*recordWork{}, applied: map[string]time.Time{}, done: map[string]uint64{}}
}

// consumers returns the consumers of the target's partitions, creating
// those missing. When the consumers are made by `recordsync setup`, this is
// where the pusher would only look them up.
func (w *Worker) consumers(ctx context.Context) ([]jetstream.Consumer, error) {
	cs, err := mesh.BindPushConsumers(ctx, w.js, w.crm.Name(), mesh.Options{Push: w.push})
	if err != nil {
		return nil, fmt.Errorf("pusher %s: %w", w.crm.Name(), err)
	}
	return cs, nil
}

// takeOver resets what the previous ownership knew and reads the
// partition's blocks from the stream.
func (w *Worker) takeOver(ctx context.Context, p *partition, pin string) error {
	had := p.pin != ""
	p.pin = pin
	p.applied = map[string]time.Time{}
	p.blocked = map[string]*recordWork{}
	p.done = map[string]uint64{}
	p.lost.Store(false)
	if err := w.blocksFromStream(ctx, p); err != nil {
		p.pin = "" // try again with the next round
		if had {
			w.owned.Add(-1) // no longer counted as owned: mayPull lets it pull again
		}
		return err
	}
	w.log.Info("partition_owned", "partition", p.n, "again", had, "blocked_records", len(p.blocked))
	if !had {
		w.owned.Add(1)
	}
	return nil
}

// blocksFromStream fills p.blocked with the records that have a message
// on their record subject.
func (w *Worker) blocksFromStream(ctx context.Context, p *partition) error {
	ctx, cancel := apiContext(ctx)
	defer cancel()
	s, err := w.js.Stream(ctx, mesh.StreamPush)
	if err != nil {
		return fmt.Errorf("stream %s: %w", mesh.StreamPush, err)
	}
	prefix := mesh.SubjectPush(w.crm.Name(), p.n) + "."
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(prefix+"*"))
	if err != nil {
		return fmt.Errorf("stream %s: %w", mesh.StreamPush, err)
	}
	for subj, n := range info.State.Subjects {
		if n > 0 {
			p.blocked[strings.TrimPrefix(subj, prefix)] = &recordWork{msgs: n}
		}
	}
	return nil
}

// recordWorkOf returns the message on the record subject of key, read from
// the stream when this owner did not publish it; nil when there is none.
func (w *Worker) recordWorkOf(ctx context.Context, p *partition, key string) (*recordWork, error) {
	rw := p.blocked[key]
	if rw == nil || rw.known {
		return rw, nil
	}
	ctx, cancel := apiContext(ctx)
	defer cancel()
	s, err := w.js.Stream(ctx, mesh.StreamPush)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", mesh.StreamPush, err)
	}
	m, err := s.GetLastMsgForSubject(ctx, mesh.SubjectPushRecord(w.crm.Name(), p.n, key))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		delete(p.blocked, key)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read record work %s: %w", key, err)
	}
	var work mesh.Work
	if err := mesh.DecodeWork(m.Data, &work); err != nil {
		return nil, fmt.Errorf("decode record work %s: %w", key, err)
	}
	rw.items, rw.known, rw.last = work.Items, true, m.Sequence
	if t, err := time.Parse(time.RFC3339Nano, m.Header.Get(mesh.HeaderNotBefore)); err == nil {
		rw.notBefore = t
	}
	return rw, nil
}

// replaced reports whether m, a message on the record subject of key,
// has a later one there, or is older than the last one settled. Each record
// message is written from the one before it (see
// mesh.PublishRecordWorkAsync), so a replaced one holds nothing the last
// does not: it is acknowledged unread.
func (w *Worker) replaced(ctx context.Context, p *partition, key string, m jetstream.Msg) (bool, error) {
	meta, err := m.Metadata()
	if err != nil {
		return false, nil //nolint:nilerr // not a JetStream message: handled as the last
	}
	seq := meta.Sequence.Stream
	rw := p.blocked[key]
	if rw == nil {
		// Not blocked: a copy left behind after the record's last message
		// was settled, or (its ack lost) one this owner does not know of.
		return seq <= p.done[key], nil
	}
	if !rw.known && rw.msgs == 1 {
		// The only one the owner found there when it took the partition.
		rw.last = seq
		return false, nil
	}
	if rw.last == 0 {
		if rw, err = w.recordWorkOf(ctx, p, key); err != nil || rw == nil {
			return false, err
		}
	}
	return seq < rw.last, nil
}

// isRecordSubject reports whether subject is a record subject (five
// tokens: sync.push.<target>.<p>.<key>).
func isRecordSubject(subject string) bool { return strings.Count(subject, ".") == 4 }

// recordKeyOf returns the record key of a record subject.
func recordKeyOf(subject string) string { return subject[strings.LastIndexByte(subject, '.')+1:] }

// slots bounds the CRM requests in flight in this process, over all its
// partitions (the target's concurrency is per process).
type slots struct {
	mu   sync.Mutex
	used int
	wake chan struct{}
}

func newSlots() *slots { return &slots{wake: make(chan struct{})} }

// acquire waits until fewer than limit requests are in flight.
func (s *slots) acquire(ctx context.Context, limit int) error {
	for {
		s.mu.Lock()
		if s.used < max(limit, 1) {
			s.used++
			s.mu.Unlock()
			return nil
		}
		ch := s.wake
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (s *slots) release() {
	s.mu.Lock()
	s.used--
	close(s.wake)
	s.wake = make(chan struct{})
	s.mu.Unlock()
}

package status

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/recordsync/record-sync/shared/fastjson"
	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/status"
)

// pullBytes bounds what the status process pulls ahead of its rounds, in
// bytes, beside the count (a message may be up to mesh.MaxStatusBytes).
const pullBytes = 8 << 20

// writeChunk is how many records a round writes at once: each is in
// memory decoded and encoded until its write is acked, and a round of a
// backlog writes tens of thousands.
const writeChunk = 2000

// consume gathers status changes and writes them: a record whose targets
// have all moved past "queued" at once, one with a target still queued
// when that target moves on or the hold passes (Hold, or BusyHold in a
// backlog). A message is acked once every record it carried is written and
// on disk (see delayedAcks), and naked when one of them could not be
// written. Every third of AckWait, every message held or waiting for its
// ack is reported in progress, so that only a process that died leaves its
// changes to wait for AckWait. Acks still held back at a stop are not
// sent: those changes come again and change nothing. A fault of JetStream
// is waited out (see mesh.Follower).
func (s *Service) consume(ctx context.Context, cons jetstream.Consumer) error {
	f := &mesh.Follower{Name: mesh.ConsumerStatus, Buffer: 1024, MaxBytes: pullBytes, Waits: s.cfg.Waits, Log: s.log}
	it, err := f.Start(cons)
	if err != nil {
		return err
	}
	h := &holder{held: map[string]*pendingWrite{}, inHand: map[*inHand]struct{}{}}
	work := context.WithoutCancel(ctx)
	every := s.cfg.AckWait / 3
	nextKeep := time.Now().Add(every)
	for ctx.Err() == nil {
		wait := time.Until(nextKeep)
		if due, ok := h.nextDue(s.hold(h)); ok {
			wait = min(wait, time.Until(due))
		}
		if due, ok := s.acks.flush(time.Now()); ok {
			wait = min(wait, time.Until(due))
		}
		cctx, cancel := context.WithTimeout(ctx, max(wait, time.Millisecond))
		msgs, err := mesh.Collect(cctx, it, s.cfg.MaxChanges, s.cfg.Linger, mesh.Count)
		cancel()
		if len(msgs) > 0 {
			f.Resumed()
		}
		if err != nil && ctx.Err() == nil {
			if it = f.Failed(ctx, it, err); it == nil {
				break
			}
		}
		s.round(work, h, msgs, false)
		if now := time.Now(); !now.Before(nextKeep) {
			s.keepAlive(h)
			nextKeep = now.Add(every)
		}
	}
	if it == nil {
		return nil
	}
	// Stop pulling, take what the client holds, and write everything.
	it.Drain()
	dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		msgs, err := mesh.Collect(dctx, it, s.cfg.MaxChanges, s.cfg.Linger, mesh.Count)
		if err != nil || len(msgs) == 0 {
			break
		}
		s.round(dctx, h, msgs, false)
	}
	s.round(dctx, h, nil, true)
	return nil
}

// keepAlive reports every message in hand in progress: those holding
// records not written yet, and those written and waiting for their ack.
func (s *Service) keepAlive(h *holder) {
	nc := s.js.Conn()
	for in := range h.inHand {
		_ = nc.Publish(in.reply, ackWPI) // a lost one only risks a redelivery, applied as a no-op
	}
	s.acks.keepAlive()
}

// holder keeps the records waiting for their final state, in the order
// they came, and the messages their changes came in.
type holder struct {
	held   map[string]*pendingWrite
	order  []*pendingWrite // held records by since; written ones are skipped
	inHand map[*inHand]struct{}
	busy   bool // in a backlog (see Config.BusyHold)
}

// inHand is a message whose changes are held: what settling it takes,
// and not its data, which decoding copied into the changes (a backlog
// holds tens of thousands of records).
type inHand struct {
	subject, reply string
	records        int  // its records not written yet
	failed         bool // a write of one of its records failed
}

// hold is how long a record is held now, given what h holds; it also
// notes when h enters or leaves a backlog.
func (s *Service) hold(h *holder) time.Duration {
	switch n := len(h.held); {
	case n > s.cfg.BusyAt:
		h.busy = true
	case n < s.cfg.BusyAt/10:
		h.busy = false
	}
	if h.busy {
		return s.cfg.BusyHold
	}
	return s.cfg.Hold
}

// oldest returns the record held longest, dropping from the front of
// order those already written.
func (h *holder) oldest() *pendingWrite {
	for len(h.order) > 0 {
		if w := h.order[0]; h.held[w.key] == w {
			return w
		}
		h.order[0] = nil
		h.order = h.order[1:]
	}
	return nil
}

// nextDue returns when the oldest held record must be written, if held
// for hold.
func (h *holder) nextDue(hold time.Duration) (time.Time, bool) {
	if w := h.oldest(); w != nil {
		return w.since.Add(hold), true
	}
	return time.Time{}, false
}

// take removes w from what is held and adds it to due.
func (h *holder) take(due []*pendingWrite, w *pendingWrite) []*pendingWrite {
	delete(h.held, w.key)
	return append(due, w)
}

// round adds msgs to what is held, writes what is due (everything with
// all), and settles the messages whose records are all written.
func (s *Service) round(ctx context.Context, h *holder, msgs []jetstream.Msg, all bool) {
	now := time.Now()
	var touched []*pendingWrite // the records these messages changed
	seen := map[string]bool{}   // the records of one message
	for _, m := range msgs {
		b := mesh.StatusBatch{Changes: make([]status.Change, 0, mesh.Count(m))}
		if err := fastjson.Unmarshal(m.Data(), &b); err != nil {
			s.log.Error("message_terminated", "subject", m.Subject(), "error", err.Error())
			_ = m.TermWithReason(fmt.Sprintf("undecodable status batch: %v", err))
			continue
		}
		clear(seen)
		var in *inHand
		for i := range b.Changes {
			c := &b.Changes[i] // held in place: the batch lives as long as its changes
			key := status.Key(c.RecordID)
			w := h.held[key]
			if w == nil {
				w = &pendingWrite{key: key, since: now, changes: make([]*status.Change, 0, 4)}
				h.held[key] = w
				h.order = append(h.order, w)
			}
			w.changes = append(w.changes, c)
			if !seen[key] {
				seen[key] = true
				if in == nil {
					in = &inHand{subject: m.Subject(), reply: m.Reply()}
					h.inHand[in] = struct{}{}
				}
				w.msgs = append(w.msgs, in)
				in.records++
				touched = append(touched, w)
			}
		}
		if in == nil {
			_ = m.Ack()
		}
	}
	// Only a change makes a record ready, so only the records these
	// messages touched can be; the others are due by age, oldest first.
	var due []*pendingWrite
	for _, w := range touched {
		if h.held[w.key] == w && s.settled(w) {
			due = h.take(due, w)
		}
	}
	for hold := s.hold(h); ; {
		w := h.oldest()
		if w == nil || !all && now.Sub(w.since) < hold && len(h.held) <= s.cfg.MaxHeld {
			break
		}
		due = h.take(due, w)
	}
	if len(due) == 0 {
		return
	}
	// A round of a backlog writes hundreds of thousands of records, for
	// longer than AckWait: what is in hand is kept alive meanwhile, or
	// JetStream would hand out again every message not yet acked (all of
	// the last AckDelay). Nothing changes h.inHand or s.acks while write runs.
	stopKeep := mesh.Every(s.cfg.AckWait/3, func() { s.keepAlive(h) })
	failed := map[*pendingWrite]error{}
	for chunk := range slices.Chunk(due, writeChunk) {
		maps.Copy(failed, s.write(ctx, chunk))
		for _, w := range chunk {
			w.rec, w.changes = status.Record{}, nil // written: the cache has what the next write needs
		}
	}
	stopKeep()
	for _, w := range due {
		for _, in := range w.msgs {
			if _, bad := failed[w]; bad {
				in.failed = true
			}
			if in.records--; in.records > 0 {
				continue
			}
			var err error
			if in.failed {
				err = s.js.Conn().Publish(in.reply, nakRetry)
			} else {
				err = s.acks.ack(in.reply, now)
			}
			if err != nil {
				s.log.Warn("settle_failed", "subject", in.subject, "error", err.Error())
			}
			delete(h.inHand, in)
		}
	}
}

// settled reports whether every target of w's record has gone past
// "queued" (pushed, retrying, skipped or failed), counting the targets its
// held changes name and those the record last written still shows queued:
// the record is worth writing now rather than holding for the others.
func (s *Service) settled(w *pendingWrite) bool {
	// Records have a few targets and a few held changes: scanning them
	// beats building a map for each record of each round.
	moved := func(target string) (named, past bool) {
		for _, c := range w.changes {
			if c.Target == target {
				named = true
				if !isQueued(c.State) {
					return true, true
				}
			}
		}
		return named, false
	}
	for _, c := range w.changes {
		if _, past := moved(c.Target); !past {
			return false
		}
	}
	settled := true
	s.cache.view(w.key, func(rec *status.Record) {
		for name, t := range rec.Targets {
			if named, _ := moved(name); !named && isQueued(t.State) {
				settled = false
			}
		}
	})
	return settled
}

// isQueued reports whether st is a state before any push.
func isQueued(st status.State) bool { return st == status.StateQueued || st == status.StateAccepted }

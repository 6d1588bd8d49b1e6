package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/recordsync/record-sync/shared/event"
	"github.com/recordsync/record-sync/shared/mesh"
)

// Group commit of single events.
//
// A single event (POST /v1/sync/) is not stored alone: the edge's gatherer
// takes every event waiting when its previous message was acknowledged
// (and, under load, those that arrive within GatherWait, if set), up to MaxBatch
// events or what a message may hold, and publishes them as one message on
// sync.in.gathered (stream SYNC_GATHER). Each request is answered once that
// message is acknowledged, with its own duplicate flag and status URL. An
// idle edge publishes an event at once; under load, many requests share a
// store write (and, in the durable profile, an fsync).
//
// Deduplication by event id. JetStream dedupes whole messages (by
// Nats-Msg-Id), so the gatherer dedupes the events: SYNC_GATHER keeps its
// messages for the duplicate window after the rules service has routed
// them (rules trims the stream itself), and each message lists the event
// ids its requests gave in the HeaderEventIDs header. So the stream is the
// record of the ids accepted in the window. Each publish names the message
// it follows (Nats-Expected-Last-Subject-Sequence): the publish of an edge
// that has not read every message stored before is refused; that edge reads
// what it missed, answers the events found there as duplicates, and tries
// again with the rest. Of two edges given one event id at one moment, one
// stores it and the other answers duplicate; an edge that starts reads the
// window back before it publishes. Within one message an id is stored
// once, a second request with it answered duplicate.
//
// A request whose event the gatherer has not yet taken when the request
// ends (its client gone, or the edge stopping) is answered as not
// accepted, and its event is never published.

// HeaderEventIDs lists, space-separated, the event ids that the requests
// of a gathered message gave (the ids the edge made up itself are left
// out: no other request can carry them).
const HeaderEventIDs = "Recordsync-Event-Ids"

// gatherQueueTimeout bounds how long a request waits for the gatherer to
// take its event.
const gatherQueueTimeout = 15 * time.Second

// gatherPublishTimeout bounds one gathered message's publish, its retries
// after a conflict included.
const gatherPublishTimeout = 10 * time.Second

// States of a gathered request.
const (
	reqWaiting   int32 = iota // in the queue
	reqTaken                  // the gatherer will answer it
	reqAbandoned              // its request ended first; never published
)

// gatherReq is one single event waiting to be stored.
type gatherReq struct {
	ev       *event.Event
	raw      []byte // its encoding
	trace    []byte // its request's trace context, as JSON (nil: none)
	clientID bool   // the request gave its event id
	state    atomic.Int32
	done     chan gatherResult // the gatherer's answer, once
}

type gatherResult struct {
	duplicate bool
	err       error
}

// errNotAccepted answers a request whose event was not published.
var errNotAccepted = huma.ErrorWithHeaders(huma.Error503ServiceUnavailable("the event could not be stored in time; nothing was accepted, retry"),
	http.Header{"Retry-After": {"1"}})

// gatherer publishes single events in gathered messages. Its fields below
// stop belong to its loop (run).
type gatherer struct {
	js        jetstream.JetStream
	log       *slog.Logger
	in        chan *gatherReq
	maxEvents int
	maxBytes  func() int
	wait      time.Duration
	stop      context.CancelFunc
	stopped   chan struct{}
	m         *gatherMetrics
	waiting   atomic.Int64 // requests waiting for their message

	stream    jetstream.Stream
	seen      *seen
	ready     bool      // the window has been read back
	last      uint64    // the last message of SYNC_GATHER read or written
	lastRound time.Time // when the last publish ended
	held      *gatherReq
}

// startGatherer starts a gatherer; close stops it.
func startGatherer(js jetstream.JetStream, log *slog.Logger, maxEvents int, maxBytes func() int, wait time.Duration, m *gatherMetrics) *gatherer {
	ctx, cancel := context.WithCancel(context.Background())
	g := &gatherer{js: js, log: log, in: make(chan *gatherReq, 2*maxEvents), maxEvents: maxEvents, maxBytes: maxBytes, wait: wait,
		stop: cancel, stopped: make(chan struct{}), m: m}
	go g.run(ctx)
	return g
}

// close stops the gatherer at once: what it holds and has not begun to
// publish is answered as not accepted. A publish under way is finished.
func (g *gatherer) close() {
	g.stop()
	<-g.stopped
}

// add stores r's event in a gathered message and returns whether it was a
// duplicate, once the message is acknowledged.
func (g *gatherer) add(ctx context.Context, r *gatherReq) gatherResult {
	r.done = make(chan gatherResult, 1)
	g.waiting.Add(1)
	defer g.waiting.Add(-1)
	timeout := time.NewTimer(gatherQueueTimeout)
	defer timeout.Stop()
	select {
	case g.in <- r:
	case <-ctx.Done():
		return gatherResult{err: errNotAccepted}
	case <-timeout.C:
		return gatherResult{err: errNotAccepted}
	case <-g.stopped:
		return gatherResult{err: errNotAccepted}
	}
	select {
	case res := <-r.done:
		return res
	case <-ctx.Done():
	case <-timeout.C:
	case <-g.stopped:
	}
	if r.state.CompareAndSwap(reqWaiting, reqAbandoned) {
		return gatherResult{err: errNotAccepted}
	}
	return <-r.done // taken: the gatherer answers it within its publish's bound
}

func (g *gatherer) run(ctx context.Context) {
	defer close(g.stopped)
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		if !g.ready {
			if err := g.load(ctx); err != nil {
				g.log.Warn("gather_load_failed", "error", err.Error(), "retry_in", backoff.String())
				select {
				case <-ctx.Done():
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, 5*time.Second)
				continue
			}
			backoff = 100 * time.Millisecond
		}
		round := g.collect(ctx)
		if ctx.Err() != nil {
			answer(round, gatherResult{err: errNotAccepted})
			break
		}
		if len(round) > 0 {
			g.publish(round)
			g.lastRound = time.Now()
		}
	}
	if g.held != nil {
		answer([]*gatherReq{g.held}, gatherResult{err: errNotAccepted})
		g.held = nil
	}
}

// take claims r for the round; false when its request has ended.
func take(r *gatherReq) bool { return r.state.CompareAndSwap(reqWaiting, reqTaken) }

// collect returns the next round: the events waiting, and under load those
// that arrive within the wait, as many as one message holds. It blocks
// until there is one event, or ctx ends.
func (g *gatherer) collect(ctx context.Context) []*gatherReq {
	var round []*gatherReq
	limit := g.maxBytes()
	size := len(`{"events":[],"traces":[]}`)
	// add puts r in the round; false when the round is full (r waits for
	// the next one).
	add := func(r *gatherReq) bool {
		n := len(r.raw) + len(r.trace) + 3
		if r.clientID {
			n += len(r.ev.EventID) + 1 // in HeaderEventIDs
		}
		if len(round) > 0 && (len(round) == g.maxEvents || size+n > limit) {
			g.held = r
			return false
		}
		round = append(round, r)
		size += n
		return true
	}
	if g.held != nil {
		r := g.held
		g.held = nil
		add(r)
	}
	for len(round) == 0 {
		select {
		case r := <-g.in:
			if take(r) {
				add(r)
			}
		case <-ctx.Done():
			return nil
		}
	}
	start := time.Now()
	for {
		select {
		case r := <-g.in:
			if take(r) && !add(r) {
				return round
			}
			continue
		default:
		}
		break
	}
	if g.wait <= 0 || start.Sub(g.lastRound) >= g.wait || g.held != nil {
		return round // idle (or full): publish at once
	}
	timer := time.NewTimer(g.wait)
	defer timer.Stop()
	for {
		select {
		case r := <-g.in:
			if take(r) && !add(r) {
				return round
			}
		case <-timer.C:
			return round
		case <-ctx.Done():
			return round
		}
	}
}

func answer(reqs []*gatherReq, res gatherResult) {
	for _, r := range reqs {
		r.done <- res
	}
}

// publish stores the events of round that are not duplicates in one
// message, and answers every request of round.
func (g *gatherer) publish(round []*gatherReq) {
	ctx, cancel := context.WithTimeout(context.Background(), gatherPublishTimeout)
	defer cancel()
	start := time.Now()
	// The first request of an id in the round stores it; the others follow
	// its outcome as duplicates.
	followers := map[string][]*gatherReq{}
	var pending []*gatherReq
	for _, r := range round {
		if _, ok := followers[r.ev.EventID]; ok {
			followers[r.ev.EventID] = append(followers[r.ev.EventID], r)
			continue
		}
		followers[r.ev.EventID] = nil
		pending = append(pending, r)
	}
	settle := func(r *gatherReq, res gatherResult) {
		r.done <- res
		for _, f := range followers[r.ev.EventID] {
			f.done <- gatherResult{duplicate: res.err == nil, err: res.err}
		}
	}
	id := nuid.Next()
	conflicts := 0
	for {
		pending = g.dedupe(ctx, pending, settle)
		if len(pending) == 0 {
			return
		}
		if !g.js.Conn().IsConnected() {
			// Fail now: a message published while disconnected is sent
			// on reconnecting, after its request was told it was not.
			for _, r := range pending {
				settle(r, gatherResult{err: errNotAccepted})
			}
			return
		}
		ack, err := g.js.PublishMsg(ctx, g.message(pending, id))
		if err == nil {
			g.stored(ack.Sequence, time.Now(), pending)
			for _, r := range pending {
				settle(r, gatherResult{})
			}
			g.m.record(ctx, len(round), conflicts, time.Since(start))
			return
		}
		if !conflict(err) {
			// The message may be stored and its ack lost: if it is there,
			// its events are accepted.
			cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Second)
			ours, cerr := g.catchUp(cctx, id)
			ccancel()
			if cerr == nil && ours {
				for _, r := range pending {
					settle(r, gatherResult{})
				}
				return
			}
			g.log.Error("publish_failed", "subject", mesh.SubjectInGathered, "events", len(pending), "error", err.Error())
			res := gatherResult{err: errNotAccepted}
			if errors.Is(err, nats.ErrMaxPayload) {
				res.err = huma.Error413RequestEntityTooLarge("the gathered message is more than NATS accepts")
			}
			for _, r := range pending {
				settle(r, res)
			}
			return
		}
		// Another edge stored a message first (or this edge's own, whose
		// acknowledgement was lost): read what was missed.
		conflicts++
		ours, err := g.catchUp(ctx, id)
		if err != nil {
			g.log.Error("gather_catch_up_failed", "error", err.Error())
			for _, r := range pending {
				settle(r, gatherResult{err: errNotAccepted})
			}
			return
		}
		if ours {
			for _, r := range pending {
				settle(r, gatherResult{})
			}
			g.m.record(ctx, len(round), conflicts, time.Since(start))
			return
		}
	}
}

// conflict reports whether err refused a publish for its expected last
// sequence.
func conflict(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// message is the gathered message of reqs, published with id.
func (g *gatherer) message(reqs []*gatherReq, id string) *nats.Msg {
	m := nats.NewMsg(mesh.SubjectInGathered)
	size := 32
	traced := false
	for _, r := range reqs {
		size += len(r.raw) + len(r.trace) + 3
		traced = traced || r.trace != nil
	}
	b := make([]byte, 0, size)
	b = append(b, `{"events":[`...)
	var ids strings.Builder
	for i, r := range reqs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, r.raw...)
		if r.clientID {
			if ids.Len() > 0 {
				ids.WriteByte(' ')
			}
			ids.WriteString(r.ev.EventID)
		}
	}
	b = append(b, ']')
	if traced {
		b = append(b, `,"traces":[`...)
		for i, r := range reqs {
			if i > 0 {
				b = append(b, ',')
			}
			if r.trace == nil {
				b = append(b, `{}`...)
			} else {
				b = append(b, r.trace...)
			}
		}
		b = append(b, ']')
	}
	m.Data = append(b, '}')
	m.Header.Set(mesh.HeaderMsgID, "gather:"+id)
	m.Header.Set(mesh.HeaderCount, strconv.Itoa(len(reqs)))
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(g.last, 10))
	if ids.Len() > 0 {
		m.Header.Set(HeaderEventIDs, ids.String())
	}
	return m
}

// stored records the message seq of reqs, stored at.
func (g *gatherer) stored(seq uint64, at time.Time, reqs []*gatherReq) {
	for _, r := range reqs {
		if r.clientID {
			g.seen.add(r.ev.EventID, seq, at)
		}
	}
	g.last = seq
}

// dedupe answers the requests of reqs whose event id is in a message of
// the window as duplicates, and returns the others.
func (g *gatherer) dedupe(ctx context.Context, reqs []*gatherReq, settle func(*gatherReq, gatherResult)) []*gatherReq {
	g.seen.forget(time.Now())
	out := reqs[:0]
	for _, r := range reqs {
		if !r.clientID {
			out = append(out, r)
			continue
		}
		dup, err := g.isDuplicate(ctx, r.ev.EventID)
		switch {
		case err != nil:
			g.log.Error("gather_dedupe_failed", "event_id", r.ev.EventID, "error", err.Error())
			settle(r, gatherResult{err: errNotAccepted})
		case dup:
			settle(r, gatherResult{duplicate: true})
		default:
			out = append(out, r)
		}
	}
	return out
}

// isDuplicate reports whether a message of the window holds id: seen names
// the candidates by hash; the message itself says.
func (g *gatherer) isDuplicate(ctx context.Context, id string) (bool, error) {
	for _, seq := range g.seen.lookup(id) {
		msg, err := g.stream.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // trimmed: older than the window
		}
		if err != nil {
			return false, err
		}
		if time.Since(msg.Time) > g.seen.window {
			continue
		}
		for _, have := range strings.Fields(msg.Header.Get(HeaderEventIDs)) {
			if have == id {
				return true, nil
			}
		}
	}
	return false, nil
}

// catchUp reads the messages of SYNC_GATHER after the last one the
// gatherer knows, and reports whether one of them is its own message id.
func (g *gatherer) catchUp(ctx context.Context, id string) (bool, error) {
	ours := false
	read := 0
	for {
		msg, err := g.stream.GetMsg(ctx, g.last+1, jetstream.WithGetMsgSubject(mesh.SubjectInGathered))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return false, err
		}
		g.read(msg.Sequence, msg.Time, msg.Header)
		read++
		ours = ours || msg.Header.Get(mesh.HeaderMsgID) == "gather:"+id
	}
	g.m.caughtUp(ctx, read)
	if read > 0 {
		return ours, nil
	}
	// Nothing after the last message known: it was trimmed, with all
	// before it (the subject is empty), or the message stored first is not
	// yet readable (a cluster's leader still replicating it).
	last, err := g.lastSeq(ctx)
	if err != nil {
		return false, err
	}
	if last < g.last {
		g.last = last
		return false, nil
	}
	select {
	case <-ctx.Done():
		return false, ctx.Err()
	case <-time.After(2 * time.Millisecond):
	}
	return false, nil
}

// read records the event ids of a message of SYNC_GATHER.
func (g *gatherer) read(seq uint64, at time.Time, hdr nats.Header) {
	for _, id := range strings.Fields(hdr.Get(HeaderEventIDs)) {
		g.seen.add(id, seq, at)
	}
	if seq > g.last {
		g.last = seq
	}
}

// lastSeq is the sequence of the last message of sync.in.gathered (0 when
// there is none).
func (g *gatherer) lastSeq(ctx context.Context) (uint64, error) {
	msg, err := g.stream.GetLastMsgForSubject(ctx, mesh.SubjectInGathered)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return msg.Sequence, nil
}

// load reads back the event ids of the duplicate window, before the first
// publish.
func (g *gatherer) load(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	st, err := g.js.Stream(ctx, mesh.StreamGather)
	if err != nil {
		return fmt.Errorf("stream %s: %w", mesh.StreamGather, err)
	}
	window := st.CachedInfo().Config.Duplicates
	if window <= 0 {
		window = mesh.DefaultDuplicateWindow
	}
	g.stream, g.seen = st, newSeen(window)
	last, err := g.lastSeq(ctx)
	if err != nil {
		return err
	}
	g.last = 0
	if last > 0 {
		from := time.Now().Add(-window)
		// One reset only: an ordered consumer's Fetch otherwise re-creates
		// it for ever while NATS is away, whatever ctx says.
		oc, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{mesh.SubjectInGathered},
			DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &from, HeadersOnly: true, MaxResetAttempts: 1})
		if err != nil {
			return fmt.Errorf("read the window back: %w", err)
		}
		for g.last < last {
			batch, err := oc.Fetch(512, jetstream.FetchMaxWait(500*time.Millisecond))
			if err != nil {
				return fmt.Errorf("read the window back: %w", err)
			}
			n := 0
			for msg := range batch.Messages() {
				meta, err := msg.Metadata()
				if err != nil {
					return err
				}
				g.read(meta.Sequence.Stream, meta.Timestamp, msg.Headers())
				n++
			}
			if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
				return fmt.Errorf("read the window back: %w", err)
			}
			if n == 0 {
				break // the window ends before the last message
			}
		}
	}
	g.last = last
	g.ready = true
	g.log.Info("gather_ready", "window", window.String(), "event_ids", g.seen.len(), "last_seq", last)
	return nil
}

package mesh

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recordsync/record-sync/shared/fastjson"
	"github.com/recordsync/record-sync/shared/status"
)

// PublishJSONAsync publishes v as JSON to subject with msgID as the
// deduplication id (none when empty). Wait for the result with WaitAcks.
func PublishJSONAsync(js jetstream.JetStream, subject, msgID string, v any, hdr ...nats.Header) (jetstream.PubAckFuture, error) {
	b, err := fastjson.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", subject, err)
	}
	m := nats.NewMsg(subject)
	m.Data = b
	for _, h := range hdr {
		for k, vs := range h {
			m.Header[k] = vs
		}
	}
	if msgID != "" {
		m.Header.Set(HeaderMsgID, msgID)
	}
	f, err := js.PublishMsgAsync(m)
	if err != nil {
		return nil, fmt.Errorf("publish %s: %w", subject, err)
	}
	return f, nil
}

// WaitAcks waits until JetStream has acknowledged every future, and returns
// the errors of those it refused.
func WaitAcks(ctx context.Context, fs []jetstream.PubAckFuture) error {
	_, err := WaitAckSeqs(ctx, fs)
	return err
}

// WaitAckSeqs is WaitAcks that also returns the stream sequence each
// message was stored at (0 for one that failed).
func WaitAckSeqs(ctx context.Context, fs []jetstream.PubAckFuture) ([]uint64, error) {
	seqs := make([]uint64, len(fs))
	var errs []error
	for i, f := range fs {
		select {
		case ack := <-f.Ok():
			seqs[i] = ack.Sequence
		case err := <-f.Err():
			errs = append(errs, fmt.Errorf("publish %s: %w", f.Msg().Subject, err))
		case <-ctx.Done():
			return seqs, fmt.Errorf("wait for publish acks: %w", ctx.Err())
		}
	}
	return seqs, errors.Join(errs...)
}

// DecodeStrict decodes JSON into v, refusing unknown fields and trailing
// data.
func DecodeStrict(data []byte, v any) error { return fastjson.DecodeStrict(data, v) }

// DecodeWork decodes a Work message. Work comes only from record-sync's
// own services (rules, and the edge's manual retries), as status changes
// do: a field this version does not know, from a newer one during an
// upgrade, is ignored rather than refused, and it is decoded in one pass,
// not by the strict decoder's stream (a 200-item message in 0.66-0.70 ms
// against 0.92-0.96, BenchmarkDecodeWork in shared/fastjson). Trailing
// data is still refused.
func DecodeWork(data []byte, w *Work) error { return fastjson.Unmarshal(data, w) }

// PublishWorkAsync publishes w to the work subject of one partition of
// target, with its item count in HeaderCount. Every item of w must belong
// to that partition (see SplitWork).
func PublishWorkAsync(js jetstream.JetStream, target string, partition int, msgID string, w *Work, hdr nats.Header) (jetstream.PubAckFuture, error) {
	if hdr == nil {
		hdr = nats.Header{}
	}
	hdr.Set(HeaderCount, strconv.Itoa(len(w.Items)))
	return PublishJSONAsync(js, SubjectPush(target, partition), msgID, w, hdr)
}

// PublishRecordWorkAsync publishes w, items of one record only, as that
// record's pending retry or deferral, on its record subject, due at
// notBefore. It does not roll up the message before it: the pusher writes
// each one from the one before, so the last on a record subject holds all
// that the earlier ones did, and an earlier one is acknowledged unread.
// (A rollup would do it for the server, but nats-server then drops the
// redelivery queue of every consumer the subject is part of, and looks at
// each unacknowledged message: redeliveries of other records wait another
// AckWait, and thousands of deferred records make rounds quadratic.)
func PublishRecordWorkAsync(js jetstream.JetStream, target string, partition int, recordKey string, w *Work, notBefore time.Time) (jetstream.PubAckFuture, error) {
	hdr := nats.Header{}
	hdr.Set(HeaderCount, strconv.Itoa(len(w.Items)))
	hdr.Set(HeaderNotBefore, notBefore.UTC().Format(time.RFC3339Nano))
	return PublishJSONAsync(js, SubjectPushRecord(target, partition, recordKey), "", w, hdr)
}

// MaxStatusBytes bounds the body of one status message: a pusher's round
// of tens of thousands of synced records, each change carrying the data
// pushed, is tens of megabytes, more than a message may hold (8 MB), and a
// status process pulling a thousand messages ahead holds a bounded amount.
const MaxStatusBytes = 1 << 20

// PublishStatusAsync publishes changes on the status subject of source, in
// order, as one message, or as several of at most MaxStatusBytes each when
// they encode to more (a single change larger than that goes alone), each
// with its count in HeaderCount. With a msgID, a message holding all the
// changes carries it, and each part of a split msgID:<first>-<end> (the
// changes' indexes), so that a part published again is a duplicate only if
// it holds the same changes: where a redelivery splits may differ (the
// changes' times encode to lengths that vary), and a change applied twice
// changes nothing.
func PublishStatusAsync(js jetstream.JetStream, source, msgID string, changes []status.Change) ([]jetstream.PubAckFuture, error) {
	var fs []jetstream.PubAckFuture
	// put publishes changes[from:to].
	var put func(from, to int) error
	put = func(from, to int) error {
		part := changes[from:to]
		b, err := fastjson.Marshal(StatusBatch{Changes: part})
		if err != nil {
			return fmt.Errorf("encode %s: %w", SubjectStatus(source), err)
		}
		if len(b) > MaxStatusBytes && len(part) > 1 {
			// Split by the size measured, and check each part again.
			n := max(len(part)*MaxStatusBytes/len(b), 1)
			for i := from; i < to; i += n {
				if err := put(i, min(i+n, to)); err != nil {
					return err
				}
			}
			return nil
		}
		m := nats.NewMsg(SubjectStatus(source))
		m.Data = b
		m.Header.Set(HeaderCount, strconv.Itoa(len(part)))
		switch {
		case msgID != "" && len(part) == len(changes):
			m.Header.Set(HeaderMsgID, msgID)
		case msgID != "":
			m.Header.Set(HeaderMsgID, msgID+":"+strconv.Itoa(from)+"-"+strconv.Itoa(to))
		}
		f, err := js.PublishMsgAsync(m)
		if err != nil {
			return fmt.Errorf("publish %s: %w", SubjectStatus(source), err)
		}
		fs = append(fs, f)
		return nil
	}
	err := put(0, len(changes))
	return fs, err
}

// Count returns the item or change count of a Work or StatusBatch message
// (1 when not stated).
func Count(m jetstream.Msg) int {
	if n, err := strconv.Atoi(m.Headers().Get(HeaderCount)); err == nil && n > 0 {
		return n
	}
	return 1
}

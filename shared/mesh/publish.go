package mesh

import (
	"context"
	"errors"
	"fmt"
	"strconv"

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
	var errs []error
	for _, f := range fs {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			errs = append(errs, fmt.Errorf("publish %s: %w", f.Msg().Subject, err))
		case <-ctx.Done():
			return fmt.Errorf("wait for publish acks: %w", ctx.Err())
		}
	}
	return errors.Join(errs...)
}

// DecodeStrict decodes JSON into v, refusing unknown fields and trailing
// data.
func DecodeStrict(data []byte, v any) error { return fastjson.DecodeStrict(data, v) }

// PublishWorkAsync publishes w to the work subject of target, with its item
// count in HeaderCount.
func PublishWorkAsync(js jetstream.JetStream, target, msgID string, w *Work, hdr nats.Header) (jetstream.PubAckFuture, error) {
	if hdr == nil {
		hdr = nats.Header{}
	}
	hdr.Set(HeaderCount, strconv.Itoa(len(w.Items)))
	return PublishJSONAsync(js, SubjectPush(target), msgID, w, hdr)
}

// PublishStatusAsync publishes changes on the status subject of source,
// with their count in HeaderCount.
func PublishStatusAsync(js jetstream.JetStream, source, msgID string, changes []status.Change) (jetstream.PubAckFuture, error) {
	hdr := nats.Header{}
	hdr.Set(HeaderCount, strconv.Itoa(len(changes)))
	return PublishJSONAsync(js, SubjectStatus(source), msgID, StatusBatch{Changes: changes}, hdr)
}

// Count returns the item or change count of a Work or StatusBatch message
// (1 when not stated).
func Count(m jetstream.Msg) int {
	if n, err := strconv.Atoi(m.Headers().Get(HeaderCount)); err == nil && n > 0 {
		return n
	}
	return 1
}

package mesh

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrNotSetUp is matched (errors.Is) by the error of Check and Bind when a
// stream, bucket or consumer the mesh needs does not exist.
var ErrNotSetUp = errors.New("JetStream is not set up for record-sync")

// SetupHint says what creates the streams, consumers and buckets.
const SetupHint = "run `recordsync setup` as the NATS operator user (an operator or an init job does; `recordsync dev` does it itself)"

// MissingError names what a service needs from JetStream and did not find.
type MissingError struct {
	// Missing names each thing, as "stream SYNC_IN", "bucket sync_rules"
	// or "consumer rules of stream SYNC_IN".
	Missing []string
}

func (e *MissingError) Error() string {
	return fmt.Sprintf("%s: missing %s: %s", ErrNotSetUp, strings.Join(e.Missing, ", "), SetupHint)
}

// Is makes a MissingError match ErrNotSetUp.
func (e *MissingError) Is(target error) bool { return target == ErrNotSetUp }

// ConsumerRef names a durable consumer of a stream.
type ConsumerRef struct {
	Stream, Name string
}

func (c ConsumerRef) String() string { return "consumer " + c.Name + " of stream " + c.Stream }

// Need is what a service needs from JetStream to start.
type Need struct {
	Streams   []string
	Buckets   []string
	Consumers []ConsumerRef
}

// Service names, as Needs knows them.
const (
	ServiceIngest = "ingest"
	ServiceRules  = "rules"
	ServicePusher = "pusher"
	ServiceStatus = "status"
)

// Needs returns what service needs, given the targets it serves (the
// pusher's consumers are per target).
func Needs(service string, targets []string, o Options) (Need, error) {
	n := Need{Buckets: []string{BucketRules, BucketConfig, BucketStatus}}
	switch service {
	case ServiceIngest:
		n.Streams = []string{StreamIn, StreamGather, StreamPush, StreamStatus, StreamDLQ, StreamStats}
	case ServiceRules:
		n.Streams = []string{StreamIn, StreamGather, StreamPush, StreamStatus, StreamRejected, StreamStats}
		n.Consumers = []ConsumerRef{{StreamIn, ConsumerRules}, {StreamGather, ConsumerRules}}
	case ServicePusher:
		n.Streams = []string{StreamPush, StreamStatus, StreamDLQ, StreamRate}
		for _, t := range targets {
			for _, c := range PushConsumers(t, o) {
				n.Consumers = append(n.Consumers, ConsumerRef{StreamPush, c.Durable})
			}
		}
	case ServiceStatus:
		n.Streams = []string{StreamStatus, StreamStats}
		n.Consumers = []ConsumerRef{{StreamStatus, ConsumerStatus}}
	default:
		return Need{}, fmt.Errorf("unknown service %q: want %s, %s, %s or %s", service, ServiceIngest, ServiceRules, ServicePusher, ServiceStatus)
	}
	return n, nil
}

// Check verifies that everything in need exists, reading only (a service
// user may create nothing). A *MissingError (ErrNotSetUp) names all that
// is missing; any other error is JetStream not answering.
func Check(ctx context.Context, js jetstream.JetStream, need Need) error {
	var missing []string
	absent := map[string]bool{}
	stream := func(name, what string) error {
		_, err := js.Stream(ctx, name)
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
			missing = append(missing, what)
			absent[name] = true
		case err != nil:
			return fmt.Errorf("check %s: %w", what, err)
		}
		return nil
	}
	for _, s := range need.Streams {
		if err := stream(s, "stream "+s); err != nil {
			return err
		}
	}
	for _, b := range need.Buckets {
		if err := stream("KV_"+b, "bucket "+b); err != nil {
			return err
		}
	}
	for _, c := range need.Consumers {
		if absent[c.Stream] {
			continue // named with its stream
		}
		_, err := js.Consumer(ctx, c.Stream, c.Name)
		switch {
		case errors.Is(err, jetstream.ErrConsumerNotFound), errors.Is(err, jetstream.ErrStreamNotFound):
			missing = append(missing, c.String())
		case err != nil:
			return fmt.Errorf("check %s: %w", c, err)
		}
	}
	if len(missing) > 0 {
		return &MissingError{Missing: missing}
	}
	return nil
}

// Bind returns the durable consumer name of stream, which `recordsync
// setup` created; a *MissingError (ErrNotSetUp) when it does not exist.
func Bind(ctx context.Context, js jetstream.JetStream, stream, name string) (jetstream.Consumer, error) {
	c, err := js.Consumer(ctx, stream, name)
	if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, &MissingError{Missing: []string{ConsumerRef{stream, name}.String()}}
	}
	if err != nil {
		return nil, fmt.Errorf("bind %s: %w", ConsumerRef{stream, name}, err)
	}
	return c, nil
}

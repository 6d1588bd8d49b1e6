package mesh

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Default AckWaits of the durable consumers that Options leaves at zero.
const (
	// DefaultRulesAckWait is how long the rules service may hold inbound
	// events before they are redelivered.
	DefaultRulesAckWait = 30 * time.Second
	// DefaultStatusAckWait is how long a status process may hold changes
	// without news before another (or the same, restarted) gets them: the
	// service reports progress every third of it on what it holds, written
	// changes waiting for their delayed ack included, so a dead process's
	// unwritten changes are taken up again within it.
	DefaultStatusAckWait = 10 * time.Second
)

// Consumer is a durable consumer of the mesh and its stream. Consumers
// leave Replicas at zero: they take their stream's.
type Consumer struct {
	Stream string
	Config jetstream.ConsumerConfig
}

// RulesConsumer is the rules service's consumer of SYNC_IN, and of
// SYNC_GATHER (by the same name).
func RulesConsumer(Options) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       ConsumerRules,
		Description:   "The rules service: validates, evaluates rules, routes to targets.",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       DefaultRulesAckWait,
		MaxAckPending: 4096,
	}
}

// StatusConsumer is the status service's consumer of SYNC_STATUS. Changes
// written and waiting for their delayed ack are kept in hand by progress
// reports, so AckWait stays short (DefaultStatusAckWait).
func StatusConsumer(o Options) jetstream.ConsumerConfig {
	o = o.withDefaults()
	return jetstream.ConsumerConfig{
		Durable:       ConsumerStatus,
		Description:   "The status service: folds status changes into KV sync_status.",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       o.StatusAckWait,
		MaxAckPending: 500_000,
	}
}

// Consumers returns every durable consumer of the mesh, for the targets
// given.
func Consumers(targets []string, o Options) []Consumer {
	out := []Consumer{{Stream: StreamIn, Config: RulesConsumer(o)}, {Stream: StreamGather, Config: RulesConsumer(o)}, {Stream: StreamStatus, Config: StatusConsumer(o)}}
	for _, t := range targets {
		for _, c := range PushConsumers(t, o) {
			out = append(out, Consumer{Stream: StreamPush, Config: c})
		}
	}
	return out
}

// EnsureConsumers creates or updates every durable consumer of the mesh
// (`recordsync setup` does, with a user allowed to; the services only bind
// to them).
func EnsureConsumers(ctx context.Context, js jetstream.JetStream, targets []string, o Options) error {
	for _, t := range targets {
		if err := CheckPushPartitions(ctx, js, t, o.Push.WithDefaults().Partitions); err != nil {
			return err
		}
	}
	for _, c := range Consumers(targets, o) {
		if _, err := js.CreateOrUpdateConsumer(ctx, c.Stream, c.Config); err != nil {
			return fmt.Errorf("ensure consumer %s of %s: %w", c.Config.Durable, c.Stream, err)
		}
	}
	return nil
}

// Work partitions. Each target's work is split by record into Partitions
// subjects, sync.push.<target>.<p> with p = Partition(record_id, P). Each
// partition has its own durable pull consumer with the pinned_client
// priority policy: every pusher process of the target pulls from every
// partition in PushGroup, and JetStream delivers a partition's messages to
// one of them only (the pinned client), until that client sends no pull
// request for PinnedTTL; then it pins another. One owner per partition,
// whose rounds run one after the other, is what keeps the events of a
// record in order across pusher processes. See docs/operators/partitions.md.
const (
	// DefaultPushPartitions is the partition count of each target when
	// PushOptions leaves it at zero: enough for 16 pusher processes per
	// target, and an even spread over 2 to 4.
	DefaultPushPartitions = 16
	// MaxPushPartitions bounds the partition count: each partition is a
	// consumer on the server and a pull request per pusher process.
	MaxPushPartitions = 256
	// DefaultPushAckWait is how long a pusher may hold a message without
	// a sign of life (it sends InProgress every third of it) before
	// JetStream redelivers it: part of the time a killed pusher's
	// in-flight work waits.
	DefaultPushAckWait = 5 * time.Second
	// DefaultPushPinnedTTL is how long a partition stays pinned to a
	// pusher that sends no pull request (a pusher renews it every third
	// of it, also while it pushes). It is longer than the AckWait, so
	// that when another pusher takes a dead one's partition, the dead
	// one's in-flight messages are already due for redelivery and come
	// first (JetStream serves redeliveries before new messages).
	DefaultPushPinnedTTL = 6 * time.Second
	// PushGroup is the priority group every pusher pulls in.
	PushGroup = "pushers"
	// MetaPartitions is the consumer metadata key holding the partition
	// count the consumer was made for.
	MetaPartitions = "recordsync_partitions"
)

// PushOptions sizes the work partitions. Zero values take the defaults.
type PushOptions struct {
	// Partitions is the partition count of each target's work
	// (DefaultPushPartitions). It must be the same in every service of a
	// deployment; change it only with SYNC_PUSH drained (see
	// docs/operators/partitions.md): the pusher refuses consumers made
	// for another count.
	Partitions int
	// AckWait is the consumers' AckWait (DefaultPushAckWait).
	AckWait time.Duration
	// PinnedTTL is the consumers' PinnedTTL (DefaultPushPinnedTTL); it
	// must be longer than AckWait.
	PinnedTTL time.Duration
}

// WithDefaults returns o with zero values replaced by the defaults.
func (o PushOptions) WithDefaults() PushOptions {
	if o.Partitions == 0 {
		o.Partitions = DefaultPushPartitions
	}
	if o.AckWait == 0 {
		o.AckWait = DefaultPushAckWait
	}
	if o.PinnedTTL == 0 {
		o.PinnedTTL = max(DefaultPushPinnedTTL, o.AckWait+time.Second)
	}
	return o
}

// Validate reports settings out of range, after defaults.
func (o PushOptions) Validate() error {
	o = o.WithDefaults()
	var errs []error
	if o.Partitions < 1 || o.Partitions > MaxPushPartitions {
		errs = append(errs, fmt.Errorf("push partitions %d: must be 1..%d", o.Partitions, MaxPushPartitions))
	}
	if o.AckWait < time.Second {
		errs = append(errs, fmt.Errorf("push ack wait %s: must be at least 1s", o.AckWait))
	}
	if o.PinnedTTL <= o.AckWait {
		errs = append(errs, fmt.Errorf("push pinned ttl %s: must be longer than the ack wait %s", o.PinnedTTL, o.AckWait))
	}
	return errors.Join(errs...)
}

// Partition returns the partition of recordID among n: FNV-1a of the id,
// modulo n. It never changes for a given id and n.
func Partition(recordID string, n int) int {
	if n <= 1 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(recordID))
	return int(h.Sum32() % uint32(n))
}

// SplitWork splits items by partition among n, keeping their order within
// each partition.
func SplitWork(items []Item, n int) map[int][]Item {
	out := map[int][]Item{}
	for _, it := range items {
		p := Partition(it.RecordID, n)
		out[p] = append(out[p], it)
	}
	return out
}

// PushConsumers returns the consumer of each partition of target's work.
func PushConsumers(target string, o Options) []jetstream.ConsumerConfig {
	po := o.Push.WithDefaults()
	out := make([]jetstream.ConsumerConfig, po.Partitions)
	for p := range out {
		out[p] = jetstream.ConsumerConfig{
			Durable:     ConsumerPusher(target, p),
			Description: fmt.Sprintf("Partition %d of %d of the work of %s, pinned to one pusher process at a time.", p, po.Partitions, target),
			// The partition's new work, and its records' pending retries
			// and deferrals.
			FilterSubjects: []string{SubjectPush(target, p), SubjectPush(target, p) + ".*"},
			AckPolicy:      jetstream.AckExplicitPolicy,
			AckWait:        po.AckWait,
			MaxAckPending:  20000,
			PriorityPolicy: jetstream.PriorityPolicyPinned,
			PriorityGroups: []string{PushGroup},
			PinnedTTL:      po.PinnedTTL,
			Replicas:       o.Replicas,
			Metadata:       map[string]string{MetaPartitions: strconv.Itoa(po.Partitions)},
		}
	}
	return out
}

// ErrPartitionsChanged is returned when SYNC_PUSH holds consumers made for
// another partition count than the one configured.
var ErrPartitionsChanged = errors.New("push partition count differs from the consumers'")

// BindPushConsumers returns the consumer of each partition of target's
// work, as `recordsync setup` made them. It refuses (ErrPartitionsChanged)
// when they were made for another partition count than o's: a record
// would change partitions, and two pushers could hold its events at once.
// A missing one is an error naming it and saying to run setup.
func BindPushConsumers(ctx context.Context, js jetstream.JetStream, target string, o Options) ([]jetstream.Consumer, error) {
	if err := CheckPushPartitions(ctx, js, target, o.Push.WithDefaults().Partitions); err != nil {
		return nil, err
	}
	cfgs := PushConsumers(target, o)
	out := make([]jetstream.Consumer, len(cfgs))
	for i, cfg := range cfgs {
		c, err := Bind(ctx, js, StreamPush, cfg.Durable)
		if err != nil {
			return nil, err
		}
		out[i] = c
	}
	return out, nil
}

// CheckPushPartitions returns ErrPartitionsChanged when SYNC_PUSH holds a
// consumer of target made for another partition count than n, or a
// partition consumer numbered n or above. No consumer yet is fine.
func CheckPushPartitions(ctx context.Context, js jetstream.JetStream, target string, n int) error {
	prefix := "pusher_" + target + "_"
	s, err := js.Stream(ctx, StreamPush)
	if err != nil {
		return fmt.Errorf("stream %s: %w", StreamPush, err)
	}
	lister := s.ConsumerNames(ctx)
	for name := range lister.Name() {
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		p, err := strconv.Atoi(strings.TrimPrefix(name, prefix))
		if err != nil {
			continue // not a partition consumer
		}
		if p >= n {
			return fmt.Errorf("%w: consumer %s exists, configured %d partitions for %s: drain SYNC_PUSH and delete the %s* consumers first (docs/operators/partitions.md)",
				ErrPartitionsChanged, name, n, target, prefix)
		}
		if p != 0 {
			continue
		}
		c, err := js.Consumer(ctx, StreamPush, name)
		if err != nil {
			return fmt.Errorf("push consumer %s: %w", name, err)
		}
		if have := c.CachedInfo().Config.Metadata[MetaPartitions]; have != strconv.Itoa(n) {
			return fmt.Errorf("%w: %s was made for %s partitions, configured %d: drain SYNC_PUSH and delete the %s* consumers first (docs/operators/partitions.md)",
				ErrPartitionsChanged, name, have, n, prefix)
		}
	}
	if err := lister.Err(); err != nil && !errors.Is(err, jetstream.ErrEndOfData) {
		return fmt.Errorf("list push consumers: %w", err)
	}
	return nil
}

// LookupPushPartitions returns the partition count of target's consumers,
// or def when none exists yet.
func LookupPushPartitions(ctx context.Context, js jetstream.JetStream, target string, def int) (int, error) {
	c, err := js.Consumer(ctx, StreamPush, ConsumerPusher(target, 0))
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return def, nil
	}
	if err != nil {
		return 0, fmt.Errorf("push consumer %s: %w", ConsumerPusher(target, 0), err)
	}
	n, err := strconv.Atoi(c.CachedInfo().Config.Metadata[MetaPartitions])
	if err != nil || n < 1 {
		return 0, fmt.Errorf("push consumer %s: no partition count in its metadata", ConsumerPusher(target, 0))
	}
	return n, nil
}

// PushBacklog returns the work messages of target not yet settled, in all
// partitions (SYNC_PUSH is a work queue: a settled message is gone).
func PushBacklog(ctx context.Context, js jetstream.JetStream, target string) (uint64, error) {
	s, err := js.Stream(ctx, StreamPush)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", StreamPush, err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(SubjectPushTarget(target)))
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", StreamPush, err)
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n, nil
}

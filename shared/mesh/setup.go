package mesh

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Options sizes the streams and buckets. Zero values take the defaults.
type Options struct {
	// Replicas is the replication factor of every stream and bucket (1 on a
	// single server, 3 on a cluster).
	Replicas int
	// DuplicateWindow is how long SYNC_IN remembers a Nats-Msg-Id.
	DuplicateWindow time.Duration
	// StatusTTL is how long a record's status is kept after its last change.
	StatusTTL time.Duration
	// MaxInBytes bounds SYNC_IN; past it publishes are refused, never old
	// events dropped. Zero is unlimited.
	MaxInBytes int64
}

func (o Options) withDefaults() Options {
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.DuplicateWindow == 0 {
		o.DuplicateWindow = DefaultDuplicateWindow
	}
	if o.StatusTTL == 0 {
		o.StatusTTL = DefaultStatusTTL
	}
	if o.MaxInBytes == 0 {
		o.MaxInBytes = -1
	}
	return o
}

// Streams returns the configuration of every stream of the mesh.
func Streams(o Options) []jetstream.StreamConfig {
	o = o.withDefaults()
	return []jetstream.StreamConfig{
		{
			Name:        StreamIn,
			Description: "Inbound events from the HTTP edge and direct publishers, until the rules service has routed them.",
			Subjects:    []string{SubjectIn, SubjectInBatch},
			Retention:   jetstream.WorkQueuePolicy,
			Storage:     jetstream.FileStorage,
			Discard:     jetstream.DiscardNew,
			MaxBytes:    o.MaxInBytes,
			Duplicates:  o.DuplicateWindow,
			Replicas:    o.Replicas,
		},
		{
			Name:        StreamPush,
			Description: "Routed work per target, until a pusher has settled it with the CRM.",
			Subjects:    []string{SubjectPush("*")},
			Retention:   jetstream.WorkQueuePolicy,
			Storage:     jetstream.FileStorage,
			Discard:     jetstream.DiscardNew,
			Replicas:    o.Replicas,
		},
		{
			Name:        StreamStatus,
			Description: "Status changes, until the status service has written them to KV sync_status.",
			Subjects:    []string{SubjectStatus("*")},
			Retention:   jetstream.WorkQueuePolicy,
			Storage:     jetstream.FileStorage,
			Discard:     jetstream.DiscardNew,
			Replicas:    o.Replicas,
		},
		{
			Name:        StreamRejected,
			Description: "Events that failed validation, with the reason in the Recordsync-Reason header.",
			Subjects:    []string{SubjectRejected},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			MaxAge:      DefaultRejectedMaxAge,
			Replicas:    o.Replicas,
		},
		{
			Name:        StreamDLQ,
			Description: "Dead letters per target: events whose push failed for good, kept for manual retry.",
			Subjects:    []string{SubjectDLQ("*", ">")},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			MaxAge:      DefaultDLQMaxAge,
			Replicas:    o.Replicas,
		},
		{
			Name:              StreamStats,
			Description:       "Counters per target: events accepted, superseded, and records per state (JetStream counters, Nats-Incr).",
			Subjects:          []string{"sync.stats.>"},
			Retention:         jetstream.LimitsPolicy,
			Storage:           jetstream.FileStorage,
			MaxMsgsPerSubject: 1,
			AllowMsgCounter:   true,
			Replicas:          o.Replicas,
		},
		{
			Name:              StreamRate,
			Description:       "CRM requests per target and time window, counted by every pusher, so that together they keep to the target's rate limit.",
			Subjects:          []string{"sync.ratelimit.>"},
			Retention:         jetstream.LimitsPolicy,
			Storage:           jetstream.MemoryStorage,
			MaxMsgsPerSubject: 1,
			MaxAge:            2 * time.Minute,
			AllowMsgCounter:   true,
			Replicas:          o.Replicas,
		},
	}
}

// Buckets returns the configuration of every KV bucket of the mesh.
func Buckets(o Options) []jetstream.KeyValueConfig {
	o = o.withDefaults()
	return []jetstream.KeyValueConfig{
		{Bucket: BucketRules, Description: "The rule set (key 'rules'), one revision per change.", History: 10, Storage: jetstream.FileStorage, Replicas: o.Replicas},
		{Bucket: BucketConfig, Description: "Per-target configuration overrides, key = target.", History: 5, Storage: jetstream.FileStorage, Replicas: o.Replicas},
	}
}

// StatusBucketStream returns the stream behind KV sync_status: what
// nats.go's CreateKeyValue makes, written asynchronously on a single server
// (jetstream.AsyncPersistMode: a write is acknowledged before it reaches
// the disk, which the server syncs every sync_interval). Every status is
// derived from the changes on SYNC_STATUS, which are synced like the
// records, and the status service acks a change only once the writes it
// caused are on disk (see services/status), so a crash loses no status;
// in return a status write costs no fsync of its own. Persist mode cannot
// be changed on an existing stream: one created before keeps its mode.
func StatusBucketStream(o Options) jetstream.StreamConfig {
	o = o.withDefaults()
	cfg := jetstream.StreamConfig{
		Name:              "KV_" + BucketStatus,
		Description:       "Current status and history per record, key = status.Key(record_id).",
		Subjects:          []string{"$KV." + BucketStatus + ".>"},
		MaxMsgsPerSubject: 1,
		MaxBytes:          -1,
		MaxAge:            o.StatusTTL,
		MaxMsgSize:        -1,
		Storage:           jetstream.FileStorage,
		Replicas:          o.Replicas,
		AllowRollup:       true,
		DenyDelete:        true,
		Duplicates:        min(2*time.Minute, o.StatusTTL),
		MaxMsgs:           -1,
		MaxConsumers:      -1,
		AllowDirect:       true,
		Discard:           jetstream.DiscardNew,
	}
	if o.Replicas == 1 {
		cfg.PersistMode = jetstream.AsyncPersistMode
	}
	return cfg
}

// Ensure creates or updates every stream and bucket of the mesh. It is safe
// to call from every service at start-up, concurrently. A stream or bucket
// that is already as configured is left alone: an update, even to the same
// configuration, races in nats-server with consumers being created on that
// stream (go test -race finds it), and every service starts by calling
// Ensure while the others create their consumers.
func Ensure(ctx context.Context, js jetstream.JetStream, o Options) error {
	for _, cfg := range append(Streams(o), StatusBucketStream(o)) {
		if err := ensureStream(ctx, js, cfg); err != nil {
			return err
		}
	}
	for _, cfg := range Buckets(o) {
		if st, err := js.Stream(ctx, "KV_"+cfg.Bucket); err == nil && sameBucket(cfg, st.CachedInfo().Config) {
			continue
		}
		if _, err := js.CreateOrUpdateKeyValue(ctx, cfg); err != nil {
			return fmt.Errorf("ensure bucket %s: %w", cfg.Bucket, err)
		}
	}
	return nil
}

// ensureStream creates the stream of cfg, or updates it when a setting
// the mesh manages differs. Persist mode cannot change on an existing
// stream: it keeps the one it has.
func ensureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) error {
	if st, err := js.Stream(ctx, cfg.Name); err == nil {
		have := st.CachedInfo().Config
		cfg.PersistMode = have.PersistMode
		if sameStream(cfg, have) {
			return nil
		}
	}
	if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("ensure stream %s: %w", cfg.Name, err)
	}
	return nil
}

// sameBucket reports whether have, the stream of a bucket, already holds
// every setting of want.
func sameBucket(want jetstream.KeyValueConfig, have jetstream.StreamConfig) bool {
	return have.Description == want.Description && have.MaxMsgsPerSubject == int64(max(want.History, 1)) &&
		have.MaxAge == want.TTL && have.Replicas == max(want.Replicas, 1) && have.Storage == want.Storage
}

// sameStream reports whether have already holds every setting of want
// that the mesh sets (the server fills in the others).
func sameStream(want, have jetstream.StreamConfig) bool {
	limit := func(v int64) int64 { // the server stores "unlimited" as -1
		if v == 0 {
			return -1
		}
		return v
	}
	return want.Description == have.Description && slices.Equal(want.Subjects, have.Subjects) &&
		want.Retention == have.Retention && want.Storage == have.Storage && want.Discard == have.Discard &&
		limit(want.MaxBytes) == have.MaxBytes && limit(want.MaxMsgsPerSubject) == have.MaxMsgsPerSubject &&
		want.MaxAge == have.MaxAge && (want.Duplicates == 0 || want.Duplicates == have.Duplicates) &&
		max(want.Replicas, 1) == have.Replicas && want.AllowMsgCounter == have.AllowMsgCounter &&
		want.AllowRollup == have.AllowRollup && want.DenyDelete == have.DenyDelete && want.AllowDirect == have.AllowDirect
}

// IsConflict reports whether err from a KV Create or Update means another
// writer got there first: the caller should read again and retry.
func IsConflict(err error) bool {
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
}

package mesh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Options sizes the streams and buckets. Zero values take the defaults.
type Options struct {
	// Replicas is the replication factor of every stream and bucket (1 on a
	// single server, 3 on a cluster).
	Replicas int
	// DuplicateWindow is how long SYNC_IN remembers a Nats-Msg-Id, and
	// SYNC_GATHER the event ids of the single events gathered.
	DuplicateWindow time.Duration
	// StatusTTL is how long a record's status is kept after its last change.
	StatusTTL time.Duration
	// MaxInBytes bounds SYNC_IN and SYNC_GATHER each; past it publishes
	// are refused, never old events dropped. Zero is unlimited.
	MaxInBytes int64
	// Push sizes each target's work partitions and their consumers (see
	// consumers.go).
	Push PushOptions
	// StatusAckWait is the status consumer's AckWait (DefaultStatusAckWait).
	StatusAckWait time.Duration
	// Log receives what Ensure leaves alone on purpose: a stream or bucket
	// with more replicas than Replicas, a status bucket that cannot be
	// replicated in place (none when nil).
	Log *slog.Logger
}

// Validate reports settings no server accepts.
func (o Options) Validate() error {
	if o.Replicas < 0 || o.Replicas > 5 {
		return fmt.Errorf("replicas %d: want 1 to 5 (JetStream replicates a stream at most 5 times)", o.Replicas)
	}
	if o.DuplicateWindow < 0 || o.StatusTTL < 0 || o.MaxInBytes < -1 {
		return errors.New("duplicate window, status TTL and SYNC_IN bound must not be negative")
	}
	return o.Push.Validate()
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
	if o.StatusAckWait == 0 {
		o.StatusAckWait = DefaultStatusAckWait
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
			Name: StreamGather,
			Description: "Single events the HTTP edge gathered into one message each, until the rules service has routed them " +
				"and for the duplicate window after: the record of the event ids accepted, against which the edge dedupes (see services/ingest/gather.go).",
			Subjects: []string{SubjectInGathered},
			// Limits, not a work queue: the rules service removes what it
			// has routed once it is older than Duplicates (rules.trim).
			Retention:  jetstream.LimitsPolicy,
			Storage:    jetstream.FileStorage,
			Discard:    jetstream.DiscardNew,
			MaxBytes:   o.MaxInBytes,
			Duplicates: o.DuplicateWindow,
			Replicas:   o.Replicas,
		},
		{
			Name:        StreamPush,
			Description: "Routed work per target, until a pusher has settled it with the CRM.",
			Subjects:    []string{SubjectPushAll},
			Retention:   jetstream.WorkQueuePolicy,
			Storage:     jetstream.FileStorage,
			Discard:     jetstream.DiscardNew,
			Replicas:    o.Replicas,
			// A record's retry or deferral replaces the one before it
			// on its record subject (see SubjectPushRecord).
			AllowRollup: true,
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
			Name:        StreamRate,
			Description: "CRM requests per target and time window, counted by every pusher, so that together they keep to the target's rate limit.",
			Subjects:    []string{"sync.ratelimit.>"},
			Retention:   jetstream.LimitsPolicy,
			// File storage, like every other stream: a memory stream is
			// gone after a server restart, and every permit with it.
			Storage:           jetstream.FileStorage,
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
// in return a status write costs no fsync of its own.
//
// JetStream has no asynchronous persistence on a replicated stream: at R3
// and more the bucket is written like the others (a write is acknowledged
// once a majority of the servers hold it), and the status service acks a
// change as soon as its write is acknowledged. Persist mode cannot be
// changed on an existing stream, nor can a stream in async mode be
// replicated: one created at R1 keeps its mode and its single replica (see
// Ensure).
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
//
// Ensure never lowers the replicas of what exists: a stream or bucket
// with more replicas than o.Replicas keeps them (and o.Log says so), so
// that a service started with a default of 1 cannot undo an operator's R3.
func Ensure(ctx context.Context, js jetstream.JetStream, o Options) error {
	if err := o.Validate(); err != nil {
		return err
	}
	for _, cfg := range append(Streams(o), StatusBucketStream(o)) {
		if err := ensureStream(ctx, js, cfg, o.Log); err != nil {
			return err
		}
	}
	for _, cfg := range Buckets(o) {
		if st, err := js.Stream(ctx, "KV_"+cfg.Bucket); err == nil {
			have := st.CachedInfo().Config
			cfg.Replicas = keepReplicas(o.Log, have.Name, max(cfg.Replicas, 1), have.Replicas)
			if sameBucket(cfg, have) {
				continue
			}
		}
		if _, err := js.CreateOrUpdateKeyValue(ctx, cfg); err != nil {
			return fmt.Errorf("ensure bucket %s: %w", cfg.Bucket, err)
		}
	}
	return nil
}

// EnsureStream creates or updates the one stream of the mesh named name,
// as Ensure does: for a service that finds a stream it needs gone.
func EnsureStream(ctx context.Context, js jetstream.JetStream, o Options, name string) error {
	for _, cfg := range append(Streams(o), StatusBucketStream(o)) {
		if cfg.Name == name {
			return ensureStream(ctx, js, cfg, o.Log)
		}
	}
	return fmt.Errorf("ensure stream %s: not a stream of the mesh", name)
}

// CreateStream creates the stream name of the mesh with the settings of o
// when it does not exist: unlike EnsureStream it never updates one, so
// that a user allowed only to create that stream (the pusher, for
// SYNC_RATELIMIT) can call it.
func CreateStream(ctx context.Context, js jetstream.JetStream, o Options, name string) error {
	for _, cfg := range Streams(o) {
		if cfg.Name == name {
			if _, err := js.CreateStream(ctx, cfg); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				return fmt.Errorf("create stream %s: %w", name, err)
			}
			return nil
		}
	}
	return fmt.Errorf("create stream %s: not a stream of the mesh", name)
}

// keepReplicas returns the replicas a stream is to have: want, or have
// when that is more (and then says so).
func keepReplicas(log *slog.Logger, stream string, want, have int) int {
	if have <= want {
		return want
	}
	if log != nil {
		log.Warn("stream_replicas_kept", "stream", stream, "replicas", have, "asked", want,
			"detail", "a stream is never scaled down by a service; change it with the nats CLI if that is meant")
	}
	return have
}

// ensureStream creates the stream of cfg, or updates it when a setting
// the mesh manages differs. Persist mode cannot change on an existing
// stream: it keeps the one it has, and a stream in async persist mode
// (only the status bucket, created at R1) stays at R1, which JetStream
// requires of it. SYNC_RATELIMIT holds only the counters of the last two
// minutes: when its storage must change (a memory stream from before) it
// is created anew.
func ensureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig, log *slog.Logger) error {
	return retryAPI(ctx, func(ctx context.Context) error { return ensureStreamOnce(ctx, js, cfg, log) })
}

// errNoPeers is JetStream's "no suitable peers for placement": on a
// cluster just started, its servers have not all seen each other yet.
const errNoPeers jetstream.ErrorCode = 10005

// apiTry bounds one try of a JetStream API request of setup.
const apiTry = 10 * time.Second

// retryAPI runs f, each try within apiTry, again while a try went
// unanswered or JetStream answered that it (or a peer for a replica) is not
// available yet, until ctx
// ends: on a cluster just started or electing its meta leader, a request
// can get no answer, and one unbounded try would wait for all of ctx.
func retryAPI(ctx context.Context, f func(context.Context) error) error {
	for {
		tctx, cancel := context.WithTimeout(ctx, apiTry)
		err := f(tctx)
		cancel()
		var apiErr *jetstream.APIError
		again := errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrTimeout) ||
			(errors.As(err, &apiErr) && (apiErr.Code == 503 || apiErr.ErrorCode == errNoPeers))
		if err == nil || !again || ctx.Err() != nil {
			return err
		}
		Sleep(ctx, 250*time.Millisecond)
	}
}

func ensureStreamOnce(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig, log *slog.Logger) error {
	if st, err := js.Stream(ctx, cfg.Name); err == nil {
		have := st.CachedInfo().Config
		cfg.PersistMode = have.PersistMode
		cfg.Replicas = keepReplicas(log, cfg.Name, max(cfg.Replicas, 1), have.Replicas)
		if cfg.PersistMode == jetstream.AsyncPersistMode && cfg.Replicas > 1 {
			if log != nil {
				log.Warn("stream_not_replicated", "stream", cfg.Name, "replicas", have.Replicas, "asked", cfg.Replicas,
					"detail", "created at R1 with asynchronous persistence, which JetStream cannot replicate; see docs/operators/cluster.md to move it")
			}
			cfg.Replicas = have.Replicas
		}
		if sameStream(cfg, have) {
			return nil
		}
		if cfg.Name == StreamRate && cfg.Storage != have.Storage {
			if err := js.DeleteStream(ctx, cfg.Name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
				return fmt.Errorf("ensure stream %s: replace %s storage: %w", cfg.Name, have.Storage, err)
			}
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

// Package mesh names the NATS subjects, JetStream streams, consumers and KV
// buckets that the record-sync services share, defines the messages that
// travel between them, and creates all of them idempotently.
//
// The flow, one hop per stream:
//
//	sync.in, sync.in.batch  (SYNC_IN)      ingest or any publisher -> rules
//	sync.push.<target>.<p>  (SYNC_PUSH)    rules -> the pusher owning partition p of that target
//	sync.push.<target>.<p>.<record key>    a record's pending retry or deferral (one message at most)
//	sync.status.<source>    (SYNC_STATUS)  rules, pusher, ingest -> status
//	sync.rejected           (SYNC_REJECTED) invalid events, kept with the reason
//	sync.dlq.<target>.<key> (SYNC_DLQ)     events that could not be pushed
//	sync.stats.<target>.<n> (SYNC_STATS)   counters: events accepted, records per state
package mesh

import (
	"strconv"
	"time"

	"github.com/recordsync/record-sync/shared/event"
	"github.com/recordsync/record-sync/shared/status"
)

// Subjects.
const (
	// SubjectIn carries one event, the JSON of the HTTP body.
	SubjectIn = "sync.in"
	// SubjectInBatch carries a Batch: many events in one message, so that
	// they share one store write (and one fsync in the durable profile).
	SubjectInBatch = "sync.in.batch"
	// SubjectInGathered carries a Batch of single events that the HTTP
	// edge gathered from concurrent requests (stream SYNC_GATHER).
	SubjectInGathered = "sync.in.gathered"
	// SubjectRejected keeps events that failed validation, with the reason
	// in the HeaderReason header and the original bytes as the body.
	SubjectRejected = "sync.rejected"
)

// SubjectPush is the subject carrying Work for one partition of one
// target: the records whose Partition is partition.
func SubjectPush(target string, partition int) string {
	return "sync.push." + target + "." + strconv.Itoa(partition)
}

// SubjectPushRecord is the subject of one record's pending retry or
// deferral in its partition: at most one message (each is published with
// a subject rollup), so that its existence says the record is blocked
// behind it. recordKey is status.Key of the record id.
func SubjectPushRecord(target string, partition int, recordKey string) string {
	return SubjectPush(target, partition) + "." + recordKey
}

// SubjectPushTarget matches every work subject of target, all partitions
// and record subjects.
func SubjectPushTarget(target string) string { return "sync.push." + target + ".>" }

// SubjectPushAll matches every work subject (the subjects of SYNC_PUSH).
const SubjectPushAll = "sync.push.>"

// SubjectStatus is the subject a source (rules, pusher, ingest) publishes
// status Changes on.
func SubjectStatus(source string) string { return "sync.status." + source }

// SubjectStats is the counter subject of one target and one count
// (accepted, superseded, or a state): JetStream keeps the running sum of
// the increments published on it.
func SubjectStats(target, count string) string { return "sync.stats." + target + "." + count }

// SubjectRate is the counter of CRM requests of target in time window
// number window: pushers take a permit by incrementing it.
func SubjectRate(target string, window int64) string {
	return "sync.ratelimit." + target + "." + strconv.FormatInt(window, 10)
}

// SubjectDLQ is the subject of a record's dead letters for one target; the
// last message on it is what a manual retry re-enqueues. recordKey is
// status.Key of the record id.
func SubjectDLQ(target, recordKey string) string { return "sync.dlq." + target + "." + recordKey }

// Streams.
const (
	StreamIn       = "SYNC_IN"
	StreamGather   = "SYNC_GATHER"
	StreamPush     = "SYNC_PUSH"
	StreamStatus   = "SYNC_STATUS"
	StreamRejected = "SYNC_REJECTED"
	StreamDLQ      = "SYNC_DLQ"
	StreamStats    = "SYNC_STATS"
	StreamRate     = "SYNC_RATELIMIT"
)

// Durable consumer names.
const (
	ConsumerRules  = "rules"
	ConsumerStatus = "status"
)

// ConsumerPusher is the durable consumer of one partition of one target's
// work. Every pusher process of the target pulls from it in the priority
// group PushGroup; JetStream pins it to one of them at a time.
func ConsumerPusher(target string, partition int) string {
	return "pusher_" + target + "_" + strconv.Itoa(partition)
}

// KV buckets.
const (
	BucketRules  = "sync_rules"
	BucketConfig = "sync_config"
	BucketStatus = "sync_status"
)

// Headers.
const (
	// HeaderMsgID is JetStream's deduplication header.
	HeaderMsgID = "Nats-Msg-Id"
	// HeaderReason says why a message on SubjectRejected or SubjectDLQ is
	// there.
	HeaderReason = "Recordsync-Reason"
	// HeaderClass and HeaderCode are the error class and the CRM's code of
	// a dead letter.
	HeaderClass = "Recordsync-Class"
	HeaderCode  = "Recordsync-Code"
	// HeaderSubject is the subject a rejected message was published to.
	HeaderSubject = "Recordsync-Subject"
	// HeaderIncr is JetStream's counter increment header.
	HeaderIncr = "Nats-Incr"
	// HeaderCount is the number of events of an inbound batch (set by the
	// HTTP edge; a hint only, 1 when absent), items of a Work message or
	// changes of a StatusBatch, so that a consumer can size its batches
	// without decoding.
	HeaderCount = "Recordsync-Count"
	// HeaderNotBefore holds the RFC 3339 time before which a retried Work
	// message must not be pushed.
	HeaderNotBefore = "Recordsync-Not-Before"
	// HeaderPinID is the id JetStream gives the client a consumer with the
	// pinned_client priority policy is pinned to, on each message it
	// delivers.
	HeaderPinID = "Nats-Pin-Id"
)

// Batch is the body of a SubjectInBatch or SubjectInGathered message.
type Batch struct {
	Events []event.Event `json:"events"`
	// Traces, when present, holds the trace context of each event, in
	// order (the edge's gathered messages carry each request's).
	Traces []map[string]string `json:"traces,omitempty"`
}

// Item is one event on its way to one target.
type Item struct {
	event.Event
	// Attempt counts pushes already tried for this event and target.
	Attempt int `json:"attempt,omitempty"`
	// Generation counts manual retries, so that a retried event's status
	// supersedes its failed one.
	Generation int `json:"generation,omitempty"`
	// Trace is the event's trace context (W3C traceparent), so that the
	// push of an event that travelled in a batch joins the event's trace.
	Trace map[string]string `json:"trace,omitempty"`
}

// Work is the body of a SubjectPush message: items for one target, in the
// order the rules service saw them, at most MaxWorkItems.
type Work struct {
	Items []Item `json:"items"`
}

// MaxWorkItems bounds the items of one Work message, the largest batch a
// CRM takes (Salesforce's 200), so that a pusher fetches about as much work
// as it can push at once.
const MaxWorkItems = 200

// StatusBatch is the body of a SubjectStatus message.
type StatusBatch struct {
	Changes []status.Change `json:"changes"`
}

// Defaults for stream limits that Options leaves at zero.
const (
	DefaultDuplicateWindow = 10 * time.Minute
	DefaultRejectedMaxAge  = 14 * 24 * time.Hour
	DefaultDLQMaxAge       = 30 * 24 * time.Hour
	DefaultStatusTTL       = 7 * 24 * time.Hour
)

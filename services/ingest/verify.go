package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/recordsync/record-sync/crm"
	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/status"
)

// MaxVerify is the most records one verify checks without a sample: past
// it the walk stops and asks for --since or --sample, so that a verify's
// memory stays bounded.
const MaxVerify = 100_000

// verifyTimeout bounds one verify's stream (the edge's 30 s write
// timeout does not apply to it).
const verifyTimeout = time.Hour

// VerifyRequest is the body of POST /v1/sync/verify.
type VerifyRequest struct {
	Target string `json:"target" doc:"The target whose synced records to read back"`
	Since  string `json:"since,omitempty" doc:"Only records whose status changed within this duration (24h, 90m); all when empty"`
	Sample int    `json:"sample,omitempty" minimum:"0" doc:"Check a uniform random sample of this many of them (0: all, at most MaxVerify)"`
	Repair bool   `json:"repair,omitempty" doc:"Re-enqueue each drifted record's last pushed event, as a new generation, so the pusher writes it again"`
}

// VerifyLine is one line of the verify stream (application/x-ndjson):
// progress after each batch, a drift line per drifted record, an error
// line for a batch that could not be read, and the summary last.
type VerifyLine struct {
	Type string `json:"type" enum:"progress,drift,error,summary"`
	// Counts, on progress and summary lines, are the figures so far.
	Counts *VerifyCounts `json:"counts,omitempty"`
	// drift
	RecordID string          `json:"record_id,omitempty"`
	Drift    Drift           `json:"drift,omitempty"`
	CRMID    string          `json:"crm_id,omitempty"`
	Fields   []crm.FieldDiff `json:"fields,omitempty" doc:"The fields that differ"`
	Repaired bool            `json:"repaired,omitempty"`
	// error
	Error string `json:"error,omitempty"`
}

// VerifyCounts are a verify's figures so far.
type VerifyCounts struct {
	Target string `json:"target"`
	// Walked is how many record statuses the walk read; Total how many
	// records are to be checked (known once the walk is over).
	Walked  int `json:"walked"`
	Total   int `json:"total"`
	Checked int `json:"checked"`
	InSync  int `json:"in_sync"`
	Differs int `json:"differs"`
	Missing int `json:"missing"`
	Present int `json:"present_after_delete"`
	// Unverifiable records are synced but without what was pushed on
	// record, or with nothing to name them by in the CRM.
	Unverifiable int `json:"unverifiable"`
	// NotSynced records of the target are queued, retrying or failed: the
	// pipeline still has them, so they are not checked.
	NotSynced int   `json:"not_synced"`
	Repaired  int   `json:"repaired"`
	Failed    int   `json:"read_failures" doc:"Records whose read failed"`
	TookMS    int64 `json:"took_ms"`
}

type verifyInput struct {
	Body VerifyRequest
}

// verifyMetrics are a verify's figures as metrics.
type verifyMetrics struct {
	records  metric.Int64Counter
	repaired metric.Int64Counter
}

func newVerifyMetrics(m metric.Meter) (verifyMetrics, error) {
	var v verifyMetrics
	var err error
	if v.records, err = m.Int64Counter("recordsync_verify_records",
		metric.WithDescription("Records checked by verify (read back from the CRM), by target and result: in_sync, differs, missing, present_after_delete, unverifiable, read_failed")); err != nil {
		return v, err
	}
	v.repaired, err = m.Int64Counter("recordsync_verify_repaired",
		metric.WithDescription("Drifted records verify re-enqueued, by target"))
	return v, err
}

// verify walks the records synced to a target, reads them back from the
// CRM in batches within its rate limit, and streams what it finds.
func (s *Service) verify(ctx context.Context, in *verifyInput) (*huma.StreamResponse, error) {
	req := in.Body
	c, r, err := s.reader("body.target", req.Target)
	if err != nil {
		return nil, err
	}
	var since time.Duration
	if req.Since != "" {
		if since, err = time.ParseDuration(req.Since); err != nil || since <= 0 {
			return nil, huma.Error422UnprocessableEntity("validation failed", &huma.ErrorDetail{Location: "body.since", Message: "must be a positive duration such as 24h", Value: req.Since})
		}
	}
	if req.Sample < 0 {
		return nil, huma.Error422UnprocessableEntity("validation failed", &huma.ErrorDetail{Location: "body.sample", Message: "must be 0 or more", Value: req.Sample})
	}
	return &huma.StreamResponse{Body: func(hctx huma.Context) {
		_, w := humago.Unwrap(hctx)
		rc := http.NewResponseController(w)
		_ = rc.SetWriteDeadline(time.Now().Add(verifyTimeout)) // a long walk outlives the edge's write timeout
		hctx.SetHeader("Content-Type", "application/x-ndjson")
		hctx.SetStatus(http.StatusOK)
		vctx, cancel := context.WithTimeout(hctx.Context(), verifyTimeout)
		defer cancel()
		enc := json.NewEncoder(hctx.BodyWriter())
		emit := func(l VerifyLine) {
			_ = enc.Encode(l)
			_ = rc.Flush()
		}
		s.runVerify(vctx, c, r, req, since, emit)
	}}, nil
}

// runVerify is verify's work; emit writes one line of its stream.
func (s *Service) runVerify(ctx context.Context, c crm.CRM, r crm.Reader, req VerifyRequest, since time.Duration, emit func(VerifyLine)) {
	start := s.now()
	counts := &VerifyCounts{Target: req.Target}
	attrs := func(result string) metric.MeasurementOption {
		return metric.WithAttributes(attribute.String("target", req.Target), attribute.String("result", result))
	}
	var picked []readKey
	cutoff := time.Time{}
	if since > 0 {
		cutoff = start.Add(-since)
	}
	errTooMany := errors.New("too many records")
	rng := rand.New(rand.NewPCG(uint64(start.UnixNano()), 7))
	eligible := 0
	err := s.deps.Status.Walk(ctx, func(rec status.Record) error {
		counts.Walked++
		t, ok := rec.Targets[req.Target]
		if !ok || t.UpdatedAt.Before(cutoff) {
			return nil
		}
		if t.State != status.StateSynced {
			counts.NotSynced++
			return nil
		}
		if t.LastPushed == nil || t.LastPushed.EventID != t.EventID {
			counts.Unverifiable++
			s.verifyM.records.Add(ctx, 1, attrs("unverifiable"))
			return nil
		}
		eligible++
		k := s.readKey(c, rec.RecordID, t)
		switch {
		case req.Sample == 0 && len(picked) == MaxVerify:
			return errTooMany
		case req.Sample == 0 || len(picked) < req.Sample:
			picked = append(picked, k)
		default: // reservoir sampling: each record kept with probability sample/eligible
			if j := rng.IntN(eligible); j < req.Sample {
				picked[j] = k
			}
		}
		return nil
	})
	if errors.Is(err, errTooMany) {
		emit(VerifyLine{Type: "error", Error: fmt.Sprintf("more than %d records to check: narrow the walk with since or check a sample", MaxVerify)})
		err = nil
		picked = nil
	}
	if err != nil {
		emit(VerifyLine{Type: "error", Error: "reading the statuses: " + err.Error()})
	}
	counts.Total = len(picked)
	emit(VerifyLine{Type: "progress", Counts: counts})
	batch := max(r.MaxRead(), 1)
	for startAt := 0; startAt < len(picked) && ctx.Err() == nil; startAt += batch {
		chunk := picked[startAt:min(startAt+batch, len(picked))]
		var keys []crm.Record
		var asked []readKey
		for _, k := range chunk {
			if !k.readable {
				counts.Checked++
				counts.Unverifiable++
				s.verifyM.records.Add(ctx, 1, attrs("unverifiable"))
				continue
			}
			keys, asked = append(keys, k.rec), append(asked, k)
		}
		remotes, err := s.readWithRetry(ctx, r, req.Target, keys)
		if err != nil {
			counts.Checked += len(asked)
			counts.Failed += len(asked)
			s.verifyM.records.Add(ctx, int64(len(asked)), attrs("read_failed"))
			emit(VerifyLine{Type: "error", Error: err.Error()})
			emit(VerifyLine{Type: "progress", Counts: counts})
			continue
		}
		for i, k := range asked {
			counts.Checked++
			drift, diffs := k.compare(remotes[i])
			s.verifyM.records.Add(ctx, 1, attrs(string(drift)))
			switch drift {
			case DriftNone:
				counts.InSync++
				continue
			case DriftDiffers:
				counts.Differs++
			case DriftMissing:
				counts.Missing++
			case DriftPresent:
				counts.Present++
			case DriftUnknown:
				counts.Unverifiable++
				continue
			}
			line := VerifyLine{Type: "drift", RecordID: k.recordID, Drift: drift, CRMID: remotes[i].CRMID, Fields: diffs}
			if line.CRMID == "" {
				line.CRMID = k.rec.CRMID
			}
			if req.Repair {
				if err := s.repair(ctx, req.Target, k); err != nil {
					emit(VerifyLine{Type: "error", RecordID: k.recordID, Error: "repair: " + err.Error()})
				} else {
					line.Repaired = true
					counts.Repaired++
					s.verifyM.repaired.Add(ctx, 1, metric.WithAttributes(attribute.String("target", req.Target)))
				}
			}
			emit(line)
		}
		emit(VerifyLine{Type: "progress", Counts: counts})
	}
	if ctx.Err() != nil {
		emit(VerifyLine{Type: "error", Error: "verify ended early: " + ctx.Err().Error()})
	}
	counts.TookMS = s.now().Sub(start).Milliseconds()
	s.log.Info("verify_done", "target", req.Target, "checked", counts.Checked, "differs", counts.Differs, "missing", counts.Missing,
		"present_after_delete", counts.Present, "repaired", counts.Repaired, "read_failures", counts.Failed, "took_ms", counts.TookMS)
	emit(VerifyLine{Type: "summary", Counts: counts})
}

// readWithRetry reads keys, trying a transient or rate-limited failure
// twice more after the wait it asks for (at least a second).
func (s *Service) readWithRetry(ctx context.Context, r crm.Reader, target string, keys []crm.Record) ([]crm.Remote, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	for attempt := 1; ; attempt++ {
		out, err := s.readCRM(ctx, r, target, keys)
		var re *crm.ReadError
		if err == nil || attempt == 3 || !errors.As(err, &re) || re.Result.Class == crm.Permanent {
			return out, err
		}
		mesh.Sleep(ctx, max(re.Result.RetryAfter, time.Second))
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
}

// repair re-enqueues the record's last pushed event as a new generation
// (so that its status supersedes the synced one) and records it as queued,
// as a manual retry does.
func (s *Service) repair(ctx context.Context, target string, k readKey) error {
	p, t := k.pushed, k.target
	it := mesh.Item{Event: *k.rec.Event, Generation: t.Generation + 1}
	it.Targets = nil
	id := fmt.Sprintf("repair:%s:%s:%d", target, p.EventID, it.Generation)
	futures := make([]jetstream.PubAckFuture, 0, 2)
	// The partition count is the one the target's consumers were made for.
	n, err := mesh.LookupPushPartitions(ctx, s.deps.JS, target, mesh.DefaultPushPartitions)
	if err != nil {
		return err
	}
	f, err := mesh.PublishWorkAsync(s.deps.JS, target, mesh.Partition(it.RecordID, n), id, &mesh.Work{Items: []mesh.Item{it}}, nil)
	if err != nil {
		return err
	}
	futures = append(futures, f)
	ch := status.Change{RecordID: k.recordID, Target: target, EventID: p.EventID, Operation: p.Operation,
		OccurredAt: p.OccurredAt, Generation: it.Generation, State: status.StateQueued, At: s.now().UTC()}
	sf, err := mesh.PublishStatusAsync(s.deps.JS, "ingest", id, []status.Change{ch})
	if err != nil {
		return err
	}
	return mesh.WaitAcks(ctx, append(futures, sf...))
}

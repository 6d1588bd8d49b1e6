package app_test

import (
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/recordsync/record-sync/app"
	"github.com/recordsync/record-sync/shared/status"
)

// TestTraceFromEdgeToCRM: one trace per event, from the caller's
// traceparent through the HTTP edge, NATS and the rules service to the
// push, which links to the CRM request span.
func TestTraceFromEdgeToCRM(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	s := startDev(t, func(e *app.Env) { e.Tracing = tp })

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	r := s.call("POST", "/v1/sync/batch", syncKey, map[string]any{"events": []any{contact("tr-1", "tr1@example.com", nil), contact("tr-2", "tr2@example.com", nil)}},
		"traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	if r.Status != 202 {
		t.Fatalf("batch: %d %s", r.Status, r.Raw)
	}
	s.waitState("tr-1", "hubspot", status.StateSynced)
	s.waitState("tr-2", "hubspot", status.StateSynced)

	names := map[string]int{}
	var pushSpans []tracetest.SpanStub
	for _, sp := range exp.GetSpans() {
		if sp.SpanContext.TraceID().String() != traceID {
			continue
		}
		names[sp.Name]++
		if sp.Name == "push hubspot" {
			pushSpans = append(pushSpans, sp)
		}
	}
	if names["POST /v1/sync/batch"] != 1 || names["rules route"] != 1 || names["push hubspot"] != 2 {
		t.Fatalf("spans of the trace: %v", names)
	}
	for _, sp := range pushSpans {
		if len(sp.Links) != 1 {
			t.Fatalf("push span without a link to its CRM request: %+v", sp)
		}
		linked := false
		for _, other := range exp.GetSpans() {
			if other.Name == "crm request hubspot" && other.SpanContext.SpanID() == sp.Links[0].SpanContext.SpanID() {
				linked = true
			}
		}
		if !linked {
			t.Fatal("the push span links to no CRM request span")
		}
	}
}

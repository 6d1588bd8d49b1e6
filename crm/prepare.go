package crm

import (
	"context"

	"github.com/recordsync/record-sync/shared/event"
	"github.com/recordsync/record-sync/shared/mapping"
	"github.com/recordsync/record-sync/shared/status"
)

// Prepare maps ev with the target's mapping in force and identifies it in
// the CRM. When it cannot be pushed, the result says why (a permanent
// failure: retrying cannot help); with MISSING_IDENTITY the mapped record
// comes too. The preview uses it too, so it shows exactly what a push
// would send.
func Prepare(c CRM, mappings *mapping.Store, ev *event.Event) (Record, *Result) {
	ot := ev.ObjectType
	if ot == "" {
		ot = event.ObjectContact
	}
	m := mappings.Get(c.Name(), ot)
	if m == nil {
		return Record{}, &Result{Class: Permanent, Code: CodeUnmappable, Message: c.Name() + " has no mapping for object type " + ot}
	}
	fields, err := m.Apply(ev.Data)
	if err != nil {
		return Record{}, &Result{Class: Permanent, Code: CodeMappingFailed, Message: err.Error()}
	}
	id, err := c.Identify(ev, fields)
	if err != nil {
		// The mapped record goes with the failure: the pusher may know the
		// record by its CRM id instead.
		return Record{Event: ev, Fields: fields}, &Result{Class: Permanent, Code: CodeMissingIdentity, Message: err.Error()}
	}
	return Record{Event: ev, Identity: id, Fields: fields}, nil
}

// PrepareKnown is Prepare and, for an update or delete that lacks the
// field the CRM matches records by (an email), the CRM id the record's
// last push to c got, as its status holds it: the plugin then writes by
// that id.
func PrepareKnown(ctx context.Context, c CRM, mappings *mapping.Store, st *status.Reader, ev *event.Event) (Record, *Result) {
	rec, res := Prepare(c, mappings, ev)
	if res == nil || res.Code != CodeMissingIdentity || ev.Operation == event.OpCreate {
		return rec, res
	}
	if known, err := st.Get(ctx, ev.RecordID); err == nil {
		if t, ok := known.Targets[c.Name()]; ok && t.CRMID != nil {
			rec.CRMID, res = *t.CRMID, nil
		}
	}
	return rec, res
}

package salesforce

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/recordsync/record-sync/crmsim"
)

// itemError is one error of a record in a collection answer; it carries
// statusCode where whole-request errors carry errorCode.
type itemError struct {
	StatusCode string   `json:"statusCode"`
	Message    string   `json:"message"`
	Fields     []string `json:"fields"`
}

func newErr(code, msg string, fields ...string) *itemError {
	return &itemError{StatusCode: code, Message: msg, Fields: append([]string{}, fields...)}
}

// itemResult is one record's result in a save answer.
type itemResult struct {
	ID      *string     `json:"id"`
	Success bool        `json:"success"`
	Errors  []itemError `json:"errors"`
	Created *bool       `json:"created,omitempty"`
}

func failed(e *itemError) itemResult { return itemResult{Errors: []itemError{*e}} }

func saved(id string, created *bool) itemResult {
	return itemResult{ID: &id, Success: true, Errors: []itemError{}, Created: created}
}

var rolledBack = itemError{StatusCode: "ALL_OR_NONE_OPERATION_ROLLED_BACK",
	Message: "Record rolled back because not all records were valid and the request was using AllOrNone header", Fields: []string{}}

// idFor returns the 18-character id of the n-th record of o: the key
// prefix, "sim", nine digits, and a suffix (the 15 first characters are
// unique, as in Salesforce's case-sensitive short form).
func idFor(o *object, n int) string { return fmt.Sprintf("%ssim%09dAAA", o.KeyPrefix, n) }

// recordLocked returns the record id names (18 or 15 characters), deleted
// ones included.
func (c *CRM) recordLocked(id string) (*record, bool) {
	if len(id) == 15 {
		id += "AAA"
	}
	return c.getLocked(id)
}

// checkFields validates the fields of a body for o: it returns them under
// their canonical names, or the error Salesforce gives. attributes, and Id
// when allowID, are skipped.
func checkFields(o *object, body map[string]any, allowID bool) (map[string]any, *itemError) {
	out := make(map[string]any, len(body))
	for _, k := range slices.Sorted(maps.Keys(body)) {
		v := body[k]
		if k == "attributes" || (allowID && strings.EqualFold(k, "Id")) {
			continue
		}
		f, ok := o.field(k)
		if !ok {
			return nil, newErr("INVALID_FIELD", fmt.Sprintf("No such column '%s' on sobject of type %s", k, o.Name), k)
		}
		if f.System {
			return nil, newErr("INVALID_FIELD_FOR_INSERT_UPDATE", fmt.Sprintf("Unable to create/update fields: %s. Please check the security settings of this field and verify that it is read/write for your profile or permission set.", f.Name), f.Name)
		}
		if v != nil {
			var s string
			switch x := v.(type) {
			case string:
				s = x
			case float64, bool: // a JSON number or boolean is kept as its text, as Salesforce coerces it
				s = fmt.Sprint(x)
				v = s
			default:
				return nil, newErr("JSON_PARSER_ERROR", fmt.Sprintf("Cannot deserialize instance of string from %T value for field %s", v, f.Name), f.Name)
			}
			if len([]rune(s)) > f.Length {
				return nil, newErr("STRING_TOO_LONG", fmt.Sprintf("%s: data value too large: %s (max length=%d)", f.Label, s, f.Length), f.Name)
			}
			if f.Type == "email" && s != "" && !validEmail(s) {
				return nil, newErr("INVALID_EMAIL_ADDRESS", fmt.Sprintf("%s: invalid email address: %s", f.Label, s), f.Name)
			}
			if s == "" {
				v = nil
			}
		}
		out[f.Name] = v
	}
	return out, nil
}

func validEmail(e string) bool {
	local, domain, ok := strings.Cut(e, "@")
	return ok && local != "" && strings.Contains(domain, ".") && !strings.ContainsAny(e, " ,;<>") && !strings.HasSuffix(domain, ".")
}

// tx is the changes of one request: each touched record's state before it,
// so that an allOrNone failure can put them back, and as the request left
// it, for the history. Changes are kept as they are made (put), so that a
// later lookup in the same request sees them; the records file gets them
// at commit.
type tx struct {
	c       *CRM
	before  map[string]*record // nil: the record did not exist
	after   map[string]*record // as last put
	touched []string
}

func (c *CRM) begin() *tx {
	return &tx{c: c, before: map[string]*record{}, after: map[string]*record{}}
}

// put keeps r's new state, after noting the state it replaces the first
// time the request puts r. t holds r itself: it must not change unless it
// is put again.
func (t *tx) put(r *record) {
	if _, seen := t.before[r.ID]; !seen {
		t.touched = append(t.touched, r.ID)
		t.before[r.ID] = nil
		if prev, ok := t.c.getLocked(r.ID); ok { // a copy of its own
			t.before[r.ID] = prev
		}
	}
	t.c.putLocked(r)
	t.after[r.ID] = r
}

// rollback puts every touched record back as it was. The request then
// wrote nothing: commit adds nothing to the history.
func (t *tx) rollback() {
	for _, id := range t.touched {
		t.c.dropLive(t.after[id])
		if prev := t.before[id]; prev != nil {
			t.c.putLocked(prev)
			t.c.addLive(prev)
		} else {
			t.c.store.Delete(id)
		}
	}
	t.touched = nil
	clear(t.before)
	clear(t.after)
}

// commit writes the touched records to the records file, and each write
// to the history of its external id (GET /_sim/salesforce/history).
func (t *tx) commit() error {
	for _, id := range t.touched {
		r := t.after[id]
		if ext, _ := r.Fields[ExternalID].(string); ext != "" {
			op, prev := "update", t.before[id]
			switch {
			case prev == nil:
				op = "create"
			case r.Deleted && !prev.Deleted:
				op = "delete"
			}
			t.c.sim.Wrote(ext, op, id, r.Fields)
		}
	}
	return t.c.commitLocked()
}

// addLive counts r among the live records unless it is deleted (the
// store indexes its external id: extKeys).
func (c *CRM) addLive(r *record) {
	if !r.Deleted {
		c.live++
	}
}

// dropLive takes r out of the live count unless it is deleted.
func (c *CRM) dropLive(r *record) {
	if !r.Deleted {
		c.live--
	}
}

// duplicateLocked reports the error of giving id's record the external id
// in fields when another live record holds it.
func (c *CRM) duplicateLocked(o *object, id string, fields map[string]any) *itemError {
	ext, _ := fields[ExternalID].(string)
	if ext == "" {
		return nil
	}
	if other, ok := c.byExt(o.Name, ext); ok && other != id {
		return newErr("DUPLICATE_VALUE", fmt.Sprintf("duplicate value found: %s duplicates value on record with id: %s", ExternalID, other), ExternalID)
	}
	return nil
}

// createLocked creates a record of o with body's fields.
func (c *CRM) createLocked(t *tx, o *object, body map[string]any) (*record, *itemError) {
	if _, hasID := body["Id"]; hasID {
		return nil, newErr("INVALID_FIELD", "cannot specify Id in an insert call", "Id")
	}
	fields, e := checkFields(o, body, false)
	if e != nil {
		return nil, e
	}
	var missing []string
	for _, f := range o.Fields {
		if f.Required && fields[f.Name] == nil {
			missing = append(missing, f.Name)
		}
		if f.Default != "" && fields[f.Name] == nil {
			fields[f.Name] = f.Default
		}
	}
	if len(missing) > 0 {
		return nil, newErr("REQUIRED_FIELD_MISSING", "Required fields are missing: ["+strings.Join(missing, ", ")+"]", missing...)
	}
	if e := c.duplicateLocked(o, "", fields); e != nil {
		return nil, e
	}
	for k, v := range fields {
		if v == nil {
			delete(fields, k)
		}
	}
	now := time.Now().UTC()
	r := &record{ID: idFor(o, c.next), Type: o.Name, Fields: fields, Created: now, Modified: now}
	c.next++
	t.put(r)
	c.addLive(r)
	return r, nil
}

// updateLocked sets body's fields on r.
func (c *CRM) updateLocked(t *tx, r *record, body map[string]any) *itemError {
	if r.Deleted {
		return newErr("ENTITY_IS_DELETED", "entity is deleted")
	}
	o := objects[r.Type]
	fields, e := checkFields(o, body, true)
	if e != nil {
		return e
	}
	for _, f := range o.Fields {
		if v, set := fields[f.Name]; set && v == nil && f.Required {
			return newErr("REQUIRED_FIELD_MISSING", "Required fields are missing: ["+f.Name+"]", f.Name)
		}
	}
	if e := c.duplicateLocked(o, r.ID, fields); e != nil {
		return e
	}
	c.dropLive(r)
	for k, v := range fields {
		if v == nil {
			delete(r.Fields, k)
		} else {
			r.Fields[k] = v
		}
	}
	r.Modified = time.Now().UTC()
	t.put(r)
	c.addLive(r)
	return nil
}

// deleteLocked moves r to the recycle bin.
func (c *CRM) deleteLocked(t *tx, r *record) *itemError {
	if r.Deleted {
		return newErr("ENTITY_IS_DELETED", "entity is deleted")
	}
	c.dropLive(r)
	r.Deleted = true
	r.Modified = time.Now().UTC()
	t.put(r)
	return nil
}

// value is a record's field as reads and SOQL see it, computed fields
// included.
func (r *record) value(name string) any {
	switch name {
	case "Id":
		return r.ID
	case "IsDeleted":
		return r.Deleted
	case "CreatedDate":
		return sfTime(r.Created)
	case "LastModifiedDate", "SystemModstamp":
		return sfTime(r.Modified)
	case "Name":
		first, _ := r.Fields["FirstName"].(string)
		last, _ := r.Fields["LastName"].(string)
		return strings.TrimSpace(first + " " + last)
	}
	return r.Fields[name]
}

// json renders r with the fields named (all when nil) and its attributes.
func (r *record) json(base string, fields []string) map[string]any {
	o := objects[r.Type]
	out := map[string]any{"attributes": map[string]string{"type": r.Type, "url": base + "/sobjects/" + r.Type + "/" + r.ID}}
	if fields == nil {
		for _, f := range o.Fields {
			out[f.Name] = r.value(f.Name)
		}
		return out
	}
	for _, name := range fields {
		if f, ok := o.field(name); ok {
			out[f.Name] = r.value(f.Name)
		}
	}
	return out
}

// fieldList reads a comma-separated fields parameter; nil when absent.
func fieldList(o *object, param string) ([]string, *itemError) {
	if param == "" {
		return nil, nil
	}
	var out []string
	for _, name := range strings.Split(param, ",") {
		name = strings.TrimSpace(name)
		f, ok := o.field(name)
		if !ok {
			return nil, newErr("INVALID_FIELD", fmt.Sprintf("No such column '%s' on entity '%s'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.", name, o.Name))
		}
		out = append(out, f.Name)
	}
	return out, nil
}

func writeItemErr(w http.ResponseWriter, status int, e *itemError) {
	crmsim.WriteJSON(w, status, contentType, []apiError{{Message: e.Message, ErrorCode: e.StatusCode, Fields: e.Fields}})
}

// decodeBody reads a JSON body, answering JSON_PARSER_ERROR when it is
// not one.
func decodeBody(k call, v any) bool {
	if err := crmsim.ReadJSON(k.w, k.r, v); err != nil {
		writeErrs(k.w, http.StatusBadRequest, "JSON_PARSER_ERROR", "The request body is not valid JSON: "+err.Error())
		return false
	}
	return true
}

// finish commits t and answers v with status, or the failure to keep the
// records.
func (c *CRM) finish(k call, t *tx, status int, v any) {
	err := t.commit()
	c.mu.Unlock()
	if err != nil {
		writeErrs(k.w, http.StatusInternalServerError, "UNKNOWN_EXCEPTION", "the emulator could not keep its records: "+err.Error())
		return
	}
	crmsim.Answer(k.w, k.r, k.timeout, status, contentType, v)
}

func (c *CRM) create(k call) {
	o, ok := objectFor(k.r.PathValue("type"))
	if !ok {
		notFound(k.w)
		return
	}
	var body map[string]any
	if !decodeBody(k, &body) {
		return
	}
	c.mu.Lock()
	t := c.begin()
	r, e := c.createLocked(t, o, body)
	if e != nil {
		c.mu.Unlock()
		writeItemErr(k.w, http.StatusBadRequest, e)
		return
	}
	c.finish(k, t, http.StatusCreated, saved(r.ID, nil))
}

// lookup finds the record of the type and id in the path: NOT_FOUND when
// there is none, ENTITY_IS_DELETED when it is in the recycle bin and
// deletedOK is false.
func (c *CRM) lookupLocked(k call, deletedOK bool) (*record, bool) {
	o, ok := objectFor(k.r.PathValue("type"))
	if !ok {
		notFound(k.w)
		return nil, false
	}
	r, ok := c.recordLocked(k.r.PathValue("id"))
	if !ok || r.Type != o.Name {
		notFound(k.w)
		return nil, false
	}
	if r.Deleted && !deletedOK {
		writeErrs(k.w, http.StatusNotFound, "ENTITY_IS_DELETED", "entity is deleted")
		return nil, false
	}
	return r, true
}

func (c *CRM) retrieve(k call) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.lookupLocked(k, false)
	if !ok {
		return
	}
	answerRecord(k, objects[r.Type], r)
}

// answerRecord answers r with the fields the request's fields parameter
// names (every one it has without it).
func answerRecord(k call, o *object, r *record) {
	fields, e := fieldList(o, k.r.URL.Query().Get("fields"))
	if e != nil {
		writeItemErr(k.w, http.StatusBadRequest, e)
		return
	}
	crmsim.WriteJSON(k.w, http.StatusOK, contentType, r.json(k.base, fields))
}

func (c *CRM) update(k call) {
	var body map[string]any
	if !decodeBody(k, &body) {
		return
	}
	c.mu.Lock()
	r, ok := c.lookupLocked(k, false)
	if !ok {
		c.mu.Unlock()
		return
	}
	t := c.begin()
	if e := c.updateLocked(t, r, body); e != nil {
		c.mu.Unlock()
		writeItemErr(k.w, http.StatusBadRequest, e)
		return
	}
	c.finish(k, t, http.StatusNoContent, nil)
}

func (c *CRM) destroy(k call) {
	c.mu.Lock()
	r, ok := c.lookupLocked(k, false)
	if !ok {
		c.mu.Unlock()
		return
	}
	t := c.begin()
	_ = c.deleteLocked(t, r) // r is live: lookupLocked checked
	c.finish(k, t, http.StatusNoContent, nil)
}

// extLookupLocked resolves sobjects/{type}/{field}/{value}: the field must
// be the external id field (or Id); the record may not exist (nil).
func (c *CRM) extLookupLocked(k call) (*object, *record, bool) {
	o, ok := objectFor(k.r.PathValue("type"))
	if !ok {
		notFound(k.w)
		return nil, nil, false
	}
	field, value := k.r.PathValue("field"), k.r.PathValue("value")
	switch {
	case strings.EqualFold(field, "Id"):
		r, ok := c.recordLocked(value)
		if !ok || r.Type != o.Name || r.Deleted {
			return o, nil, true
		}
		return o, r, true
	case strings.EqualFold(field, ExternalID):
		if id, ok := c.byExt(o.Name, value); ok {
			r, ok := c.getLocked(id)
			return o, r, ok
		}
		return o, nil, true
	}
	writeErrs(k.w, http.StatusNotFound, "NOT_FOUND", "Provided external ID field does not exist or is not accessible: "+field)
	return nil, nil, false
}

func (c *CRM) retrieveByExt(k call) {
	c.mu.Lock()
	defer c.mu.Unlock()
	o, r, ok := c.extLookupLocked(k)
	if !ok {
		return
	}
	if r == nil {
		notFound(k.w)
		return
	}
	answerRecord(k, o, r)
}

// upsertOne answers PATCH sobjects/{type}/{extField}/{value}: 201 with
// created true for a new record; for an update, 200 with created false
// from v46.0 on and 204 before it (assumed: see docs/crms.md).
func (c *CRM) upsertOne(k call) {
	var body map[string]any
	if !decodeBody(k, &body) {
		return
	}
	c.mu.Lock()
	o, r, ok := c.extLookupLocked(k)
	if !ok {
		c.mu.Unlock()
		return
	}
	t := c.begin()
	if r != nil {
		if e := c.updateLocked(t, r, body); e != nil {
			c.mu.Unlock()
			writeItemErr(k.w, http.StatusBadRequest, e)
			return
		}
		if k.version < 46 {
			c.finish(k, t, http.StatusNoContent, nil)
			return
		}
		created := false
		c.finish(k, t, http.StatusOK, saved(r.ID, &created))
		return
	}
	if strings.EqualFold(k.r.PathValue("field"), "Id") {
		c.mu.Unlock()
		notFound(k.w)
		return
	}
	body[ExternalID] = k.r.PathValue("value")
	r, e := c.createLocked(t, o, body)
	if e != nil {
		c.mu.Unlock()
		writeItemErr(k.w, http.StatusBadRequest, e)
		return
	}
	created := true
	c.finish(k, t, http.StatusCreated, saved(r.ID, &created))
}

func (c *CRM) destroyByExt(k call) {
	c.mu.Lock()
	_, r, ok := c.extLookupLocked(k)
	if !ok {
		c.mu.Unlock()
		return
	}
	if r == nil {
		c.mu.Unlock()
		notFound(k.w)
		return
	}
	t := c.begin()
	_ = c.deleteLocked(t, r)
	c.finish(k, t, http.StatusNoContent, nil)
}

// collection is the body of a collection save.
type collection struct {
	AllOrNone bool             `json:"allOrNone"`
	Records   []map[string]any `json:"records"`
}

func checkCollection(k call, n int) bool {
	if n == 0 || n > MaxBatch {
		writeErrs(k.w, http.StatusBadRequest, "INVALID_FIELD", fmt.Sprintf("Maximum number of records allowed is %d; got %d", MaxBatch, n))
		return false
	}
	return true
}

// saveMany applies op to each record of a collection in order, rolling
// every change back when allOrNone is set and one failed.
func (c *CRM) saveMany(k call, allOrNone bool, n int, op func(t *tx, i int) itemResult) {
	out := make([]itemResult, n)
	c.mu.Lock()
	t := c.begin()
	failures := 0
	for i := range n {
		if c.sim.Roll(k.partial) {
			out[i] = failed(newErr("UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record"))
		} else {
			out[i] = op(t, i)
		}
		if !out[i].Success {
			failures++
		}
	}
	if allOrNone && failures > 0 {
		t.rollback()
		for i := range out {
			if out[i].Success {
				out[i] = itemResult{Errors: []itemError{rolledBack}}
			}
			out[i].ID, out[i].Created = nil, nil
		}
	}
	c.finish(k, t, http.StatusOK, out)
}

func recordType(rec map[string]any) string {
	attrs, _ := rec["attributes"].(map[string]any)
	typ, _ := attrs["type"].(string)
	return typ
}

// createMany answers POST composite/sobjects.
func (c *CRM) createMany(k call) {
	var req collection
	if !decodeBody(k, &req) || !checkCollection(k, len(req.Records)) {
		return
	}
	c.saveMany(k, req.AllOrNone, len(req.Records), func(t *tx, i int) itemResult {
		o, ok := objectFor(recordType(req.Records[i]))
		if !ok {
			return failed(newErr("INVALID_TYPE", "sObject type '"+recordType(req.Records[i])+"' is not supported. Each record needs attributes.type."))
		}
		r, e := c.createLocked(t, o, req.Records[i])
		if e != nil {
			return failed(e)
		}
		return saved(r.ID, nil)
	})
}

// updateMany answers PATCH composite/sobjects: each record names its id.
func (c *CRM) updateMany(k call) {
	var req collection
	if !decodeBody(k, &req) || !checkCollection(k, len(req.Records)) {
		return
	}
	c.saveMany(k, req.AllOrNone, len(req.Records), func(t *tx, i int) itemResult {
		rec := req.Records[i]
		id, _ := rec["id"].(string)
		if id == "" {
			id, _ = rec["Id"].(string)
		}
		delete(rec, "id")
		r, ok := c.recordLocked(id)
		if id == "" || !ok {
			return failed(newErr("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id"))
		}
		if typ := recordType(rec); typ != "" && !strings.EqualFold(typ, r.Type) {
			return failed(newErr("INVALID_TYPE", "record "+id+" is a "+r.Type+", not a "+typ))
		}
		if e := c.updateLocked(t, r, rec); e != nil {
			return failed(e)
		}
		return saved(r.ID, nil)
	})
}

// upsertMany answers PATCH composite/sobjects/{type}/{extField}.
func (c *CRM) upsertMany(k call) {
	o, ok := objectFor(k.r.PathValue("type"))
	if !ok {
		notFound(k.w)
		return
	}
	if !strings.EqualFold(k.r.PathValue("field"), ExternalID) {
		writeErrs(k.w, http.StatusNotFound, "NOT_FOUND", "Provided external ID field does not exist or is not accessible: "+k.r.PathValue("field"))
		return
	}
	var req collection
	if !decodeBody(k, &req) || !checkCollection(k, len(req.Records)) {
		return
	}
	seen := map[string]bool{}
	c.saveMany(k, req.AllOrNone, len(req.Records), func(t *tx, i int) itemResult {
		rec := req.Records[i]
		if typ := recordType(rec); !strings.EqualFold(typ, o.Name) {
			return failed(newErr("INVALID_TYPE", "attributes.type must be "+o.Name))
		}
		var ext string
		for key, v := range rec {
			if strings.EqualFold(key, ExternalID) {
				ext, _ = v.(string)
			}
		}
		if ext == "" {
			return failed(newErr("REQUIRED_FIELD_MISSING", "Required fields are missing: ["+ExternalID+"]", ExternalID))
		}
		if seen[strings.ToLower(ext)] {
			return failed(newErr("DUPLICATE_EXTERNAL_ID", "Duplicate external id specified: "+ext, ExternalID))
		}
		seen[strings.ToLower(ext)] = true
		if id, ok := c.byExt(o.Name, ext); ok {
			r, _ := c.getLocked(id) // the index holds live records only
			if e := c.updateLocked(t, r, rec); e != nil {
				return failed(e)
			}
			created := false
			return saved(r.ID, &created)
		}
		r, e := c.createLocked(t, o, rec)
		if e != nil {
			return failed(e)
		}
		created := true
		return saved(r.ID, &created)
	})
}

// destroyMany answers DELETE composite/sobjects?ids=a,b&allOrNone=.
func (c *CRM) destroyMany(k call) {
	q := k.r.URL.Query()
	ids := strings.Split(q.Get("ids"), ",")
	if ids[0] == "" {
		ids = nil
	}
	if !checkCollection(k, len(ids)) {
		return
	}
	c.saveMany(k, q.Get("allOrNone") == "true", len(ids), func(t *tx, i int) itemResult {
		r, ok := c.recordLocked(ids[i])
		if !ok {
			res := failed(newErr("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id"))
			return res
		}
		if e := c.deleteLocked(t, r); e != nil {
			res := failed(e)
			res.ID = &ids[i]
			return res
		}
		return saved(r.ID, nil)
	})
}

// retrieveMany answers POST composite/sobjects/{type} ({"ids", "fields"})
// and its GET form (?ids=&fields=): the records in the order asked, null
// for an id that names no live record of the type.
func (c *CRM) retrieveMany(k call) {
	o, ok := objectFor(k.r.PathValue("type"))
	if !ok {
		notFound(k.w)
		return
	}
	var req struct {
		IDs    []string `json:"ids"`
		Fields []string `json:"fields"`
	}
	if k.r.Method == http.MethodGet {
		q := k.r.URL.Query()
		if s := q.Get("ids"); s != "" {
			req.IDs = strings.Split(s, ",")
		}
		if s := q.Get("fields"); s != "" {
			req.Fields = strings.Split(s, ",")
		}
	} else if !decodeBody(k, &req) {
		return
	}
	if len(req.IDs) == 0 || len(req.IDs) > 2000 {
		writeErrs(k.w, http.StatusBadRequest, "INVALID_FIELD", fmt.Sprintf("ids: between 1 and 2000 record ids are allowed; got %d", len(req.IDs)))
		return
	}
	if len(req.Fields) == 0 {
		writeErrs(k.w, http.StatusBadRequest, "REQUIRED_FIELD_MISSING", "fields: at least one field is required", "fields")
		return
	}
	fields, e := fieldList(o, strings.Join(req.Fields, ","))
	if e != nil {
		writeItemErr(k.w, http.StatusBadRequest, e)
		return
	}
	out := make([]any, len(req.IDs))
	c.mu.Lock()
	for i, id := range req.IDs {
		if r, ok := c.recordLocked(id); ok && r.Type == o.Name && !r.Deleted {
			out[i] = r.json(k.base, fields)
		}
	}
	c.mu.Unlock()
	crmsim.WriteJSON(k.w, http.StatusOK, contentType, out)
}

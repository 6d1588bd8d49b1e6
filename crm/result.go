package crm

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"
)

// Class is how a pushed record fared. The zero Class is Unset: a result a
// plugin did not fill is not a success (see Settle).
type Class int

// Classes of results.
const (
	// Unset: the plugin said nothing of the record. Settle turns it into a
	// Transient NO_RESULT, so that the record is tried again.
	Unset Class = iota
	// OK: the CRM confirmed the record; Result.CRMID is its id there.
	OK
	// Transient: try again later (5xx, timeouts, a temporary item error).
	Transient
	// RateLimited: the CRM's limit was hit; try again after RetryAfter.
	RateLimited
	// Permanent: the CRM refused the record; retrying cannot help.
	Permanent
)

// String returns the class as status.Error.Class spells it.
func (c Class) String() string {
	switch c {
	case Unset:
		return "unset"
	case OK:
		return "ok"
	case Transient:
		return "transient"
	case RateLimited:
		return "rate_limited"
	default:
		return "permanent"
	}
}

// Result codes record-sync gives itself; a failure the CRM explains keeps
// the CRM's own code (INVALID_EMAIL, REQUEST_LIMIT_EXCEEDED).
const (
	// CodeAuth: no token could be had (refused credentials, a token
	// endpoint that did not answer).
	CodeAuth = "AUTH"
	// CodeEncode: the request body could not be encoded.
	CodeEncode = "ENCODE"
	// CodeRequest: the request could not be built (a bad api_host).
	CodeRequest = "REQUEST"
	// CodeDecode: the CRM answered success with a body that does not
	// decode as its API's.
	CodeDecode = "DECODE"
	// CodeNetwork: the request got no answer.
	CodeNetwork = "NETWORK"
	// CodeTimeout: the request got no answer in time.
	CodeTimeout = "TIMEOUT"
	// CodeCanceled: the push was cancelled (its ctx ended) before the
	// request got an answer.
	CodeCanceled = "CANCELED"
	// CodeTooLarge: the CRM's answer was longer than MaxBody.
	CodeTooLarge = "ANSWER_TOO_LARGE"
	// CodeMissingResult: the CRM's answer to a batch said nothing of this
	// record.
	CodeMissingResult = "MISSING_RESULT"
	// CodeNoResult: the plugin returned no result for the record (Settle).
	CodeNoResult = "NO_RESULT"
	// CodeMissingIdentity: the event names no record the CRM can match.
	CodeMissingIdentity = "MISSING_IDENTITY"
	// CodeUnmappable: the target has no mapping for the object type.
	CodeUnmappable = "UNMAPPABLE"
	// CodeMappingFailed: the mapping could not be applied to the data.
	CodeMappingFailed = "MAPPING_FAILED"
	// CodeUnknown: the CRM refused the record without saying why.
	CodeUnknown = "UNKNOWN"
	// CodeCircuitOpen: the pusher sent nothing, the target's circuit being
	// open.
	CodeCircuitOpen = "CIRCUIT_OPEN"
	// CodeNoPermit: the pusher sent nothing, JetStream having given no
	// rate limit permit in time; no failure of the CRM.
	CodeNoPermit = "NO_PERMIT"
	// CodeHTTPPrefix starts the code of a failed request whose answer
	// carries no code of the CRM's: HTTP_502.
	CodeHTTPPrefix = "HTTP_"
)

// Result is the outcome of pushing one Record.
type Result struct {
	Class Class
	// CRMID is the CRM's id of the record, when the CRM said it.
	CRMID string
	// Code and Message are the CRM's, for failures, or one of the Code
	// constants.
	Code    string
	Message string
	// RetryAfter is how long the CRM asked to wait, for RateLimited.
	RetryAfter time.Duration
	// Excerpt is the start of what the CRM answered, for failures.
	Excerpt string
	// Whole is set when the whole request failed (no answer, 5xx, 429, an
	// answer that does not decode): the CRM said nothing about this record
	// in particular. Conn.Call sets it on every failure it returns.
	Whole bool
}

// Settle checks what a plugin's Push returned for n records: a missing
// result, or one left Unset, becomes a Transient NO_RESULT, so that the
// record is tried again rather than read as synced; results past n are
// dropped. It returns exactly n results.
func Settle(results []Result, n int) []Result {
	if len(results) > n {
		results = results[:n]
	}
	for len(results) < n {
		results = append(results, Result{})
	}
	for i := range results {
		if results[i].Class == Unset {
			results[i] = Result{Class: Transient, Code: CodeNoResult, Message: "the plugin returned no result for this record"}
		}
	}
	return results
}

// FromStatus classifies a whole-request HTTP failure: 429 is RateLimited
// (with Retry-After, seconds or an HTTP date), 408, 5xx and 401 (a token
// that expired under us) are Transient, other 4xx are Permanent.
func FromStatus(status int, h http.Header, code, msg string) Result {
	r := Result{Code: code, Message: msg, Whole: true}
	switch {
	case status == http.StatusTooManyRequests:
		r.Class = RateLimited
		r.RetryAfter = RetryAfter(h, time.Now())
	case status == http.StatusRequestTimeout, status == http.StatusUnauthorized, status >= 500:
		r.Class = Transient
	default:
		r.Class = Permanent
	}
	if r.Code == "" {
		r.Code = CodeHTTPPrefix + strconv.Itoa(status)
	}
	return r
}

// FromError classifies a request that got no answer: the CRM may or may
// not have applied it, so it is Transient (pushes are idempotent upserts).
func FromError(err error) Result {
	code := CodeNetwork
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		code = CodeTimeout
	case errors.Is(err, context.Canceled):
		code = CodeCanceled
	case errors.Is(err, ErrTooLarge):
		code = CodeTooLarge
	}
	return Result{Class: Transient, Code: code, Message: err.Error(), Whole: true}
}

// All returns results, one per record, all equal to res.
func All(n int, res Result) []Result {
	out := make([]Result, n)
	for i := range out {
		out[i] = res
	}
	return out
}

// ExcerptLen is the most of a CRM answer a Result keeps.
const ExcerptLen = 300

// Excerpt returns the start of b, at most ExcerptLen bytes.
func Excerpt(b []byte) string {
	if len(b) > ExcerptLen {
		return string(b[:ExcerptLen]) + "..."
	}
	return string(b)
}

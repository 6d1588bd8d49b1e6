// Package openapitest checks the answers a test receives from the HTTP edge
// against the edge's own OpenAPI description, with kin-openapi's
// openapi3filter: a status the description does not declare for the
// operation, or a body its schema refuses, fails the test. Tests of
// services/ingest wrap the handler (Handler); the app's end-to-end tests
// check each answer they read (Check). So the description cannot drift from
// the code.
package openapitest

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

func init() {
	// Problems are JSON; kin-openapi knows application/json only.
	openapi3filter.RegisterBodyDecoder("application/problem+json", openapi3filter.JSONBodyDecoder)
}

// Checker validates answers against one description.
type Checker struct {
	router routers.Router
}

// New loads an OpenAPI 3.0 description (Huma's Downgrade of the edge's
// 3.1 one: kin-openapi reads 3.0). Its servers are dropped, so that any
// host and port matches.
func New(doc3 []byte) (*Checker, error) {
	doc3, err := Fix30(doc3)
	if err != nil {
		return nil, err
	}
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(doc3)
	if err != nil {
		return nil, err
	}
	doc.Servers = nil
	if err := doc.Validate(context.Background()); err != nil {
		return nil, err
	}
	r, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, err
	}
	return &Checker{router: r}, nil
}

// Fix30 rewrites what Huma's downgrade to OpenAPI 3.0 leaves as in 3.1: a
// nullable object written oneOf: [X, {type: null}], as 3.0 writes it
// (allOf: [X], nullable: true), and the licence's identifier. The result
// is what 3.0 tools (kin-openapi, oapi-codegen) read.
func Fix30(doc []byte) ([]byte, error) {
	var v any
	if err := json.Unmarshal(doc, &v); err != nil {
		return nil, err
	}
	var walk func(any)
	walk = func(n any) {
		switch n := n.(type) {
		case map[string]any:
			if one, ok := n["oneOf"].([]any); ok && len(one) == 2 {
				if null, ok := one[1].(map[string]any); ok && null["type"] == "null" && len(null) == 1 {
					delete(n, "oneOf")
					n["allOf"], n["nullable"] = []any{one[0]}, true
				}
			}
			for _, c := range n {
				walk(c)
			}
		case []any:
			for _, c := range n {
				walk(c)
			}
		}
	}
	walk(v)
	// The licence's SPDX identifier is 3.1's too.
	if root, ok := v.(map[string]any); ok {
		if info, ok := root["info"].(map[string]any); ok {
			if lic, ok := info["license"].(map[string]any); ok {
				delete(lic, "identifier")
			}
		}
	}
	return json.MarshalIndent(v, "", "  ")
}

// Check validates one answer to req. A request to a path the description
// does not hold (/metrics, /docs, a mistaken path) is not checked.
func (c *Checker) Check(t testing.TB, req *http.Request, status int, header http.Header, body []byte) {
	t.Helper()
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		return
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 status,
		Header:                 header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	in.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		t.Errorf("%s %s answered %d, which the OpenAPI description does not allow: %v\n%.2000s", req.Method, req.URL.Path, status, err, body)
	}
}

// Handler serves h, checking each answer.
func (c *Checker) Handler(t testing.TB, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		c.Check(t, r, rec.Code, rec.Header(), rec.Body.Bytes())
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	})
}

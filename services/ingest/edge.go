package ingest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/danielgtaylor/huma/v2"
)

// contentTypeMiddleware refuses, with a 415, a request body that is not
// JSON in UTF-8: its Content-Type must be application/json or a type
// ending in +json, with no charset or charset=utf-8. It runs after
// authentication, so that a caller without a key learns nothing more.
func contentTypeMiddleware(api huma.API) func(huma.Context, func(huma.Context)) {
	return func(ctx huma.Context, next func(huma.Context)) {
		if ctx.Operation().RequestBody == nil {
			next(ctx)
			return
		}
		if msg := checkContentType(ctx.Header("Content-Type")); msg != "" {
			_ = huma.WriteErr(api, ctx, http.StatusUnsupportedMediaType, msg,
				&huma.ErrorDetail{Location: "header.Content-Type", Message: msg, Value: ctx.Header("Content-Type")})
			return
		}
		next(ctx)
	}
}

// checkContentType returns why ct is not a JSON media type in UTF-8, or "".
func checkContentType(ct string) string {
	const want = "Content-Type must be application/json (or a +json type), with no charset or charset=utf-8"
	if ct == "" {
		return "the request has no Content-Type; " + want
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return "the Content-Type cannot be parsed; " + want
	}
	if mt != "application/json" && (!strings.HasPrefix(mt, "application/") || !strings.HasSuffix(mt, "+json")) {
		return "the body must be JSON; " + want
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return "the charset must be utf-8; " + want
	}
	return ""
}

// handler serves the mux, and answers what the mux itself would answer
// with a plain-text body (an unknown path, a method a path does not take, a
// path to clean) with a problem+json body instead. POST /v1/sync is served
// as POST /v1/sync/.
type handler struct {
	mux *http.ServeMux
}

func (h handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/v1/sync" && r.Method == http.MethodPost {
		r.URL.Path = "/v1/sync/"
		r.URL.RawPath = ""
	}
	h.mux.ServeHTTP(&problemWriter{ResponseWriter: w, r: r}, r)
}

// problemWriter turns the plain-text or HTML answers of the mux itself
// (404, 405, and the redirects of a path to clean) into problems, keeping
// their status and their Allow or Location header. The edge's operations
// always answer JSON, which passes through untouched.
type problemWriter struct {
	http.ResponseWriter
	r       *http.Request
	swallow bool
}

func (p *problemWriter) WriteHeader(code int) {
	ct := p.Header().Get("Content-Type")
	mux := ct == "" || strings.HasPrefix(ct, "text/")
	switch {
	case !mux || p.swallow:
	case code == http.StatusNotFound, code == http.StatusMethodNotAllowed, code >= 300 && code < 400 && p.Header().Get("Location") != "":
		p.swallow = true
		p.Header().Del("X-Content-Type-Options")
		detail := "no operation at " + p.r.URL.Path + "; see /openapi.json"
		switch {
		case code == http.StatusMethodNotAllowed:
			detail = fmt.Sprintf("%s does not take %s; it takes %s", p.r.URL.Path, p.r.Method, p.Header().Get("Allow"))
		case code >= 300 && code < 400:
			detail = fmt.Sprintf("%s is served at %s", p.r.URL.Path, p.Header().Get("Location"))
		}
		writeProblem(p.ResponseWriter, code, detail)
		return
	}
	p.ResponseWriter.WriteHeader(code)
}

func (p *problemWriter) Write(b []byte) (int, error) {
	if p.swallow {
		return len(b), nil
	}
	return p.ResponseWriter.Write(b)
}

// Unwrap gives http.ResponseController (read deadlines, flushes) the
// writer underneath.
func (p *problemWriter) Unwrap() http.ResponseWriter { return p.ResponseWriter }

// writeProblem writes an RFC 9457 problem.
func writeProblem(w http.ResponseWriter, code int, detail string) {
	b, _ := json.Marshal(huma.ErrorModel{Title: http.StatusText(code), Status: code, Detail: detail})
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// problemListener wraps the connections of the HTTP server so that the
// answers net/http writes on its own, before any handler runs (431 for
// headers past MaxHeaderBytes, 400 for a malformed request), are problem
// documents like every other answer, and logs each.
type problemListener struct {
	net.Listener
	log *slog.Logger
}

func (l problemListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &problemConn{Conn: c, log: l.log}, nil
}

type problemConn struct {
	net.Conn
	log *slog.Logger
}

// rawErrorHeaders is what net/http writes between the status line and the
// body of the answers it writes itself (net/http/server.go).
const rawErrorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

func (c *problemConn) Write(p []byte) (int, error) {
	if code, detail, ok := parseRawError(p); ok {
		c.log.Warn("http_request_refused", "status", code, "reason", detail, "remote_addr", c.RemoteAddr().String())
		b, _ := json.Marshal(huma.ErrorModel{Title: http.StatusText(code), Status: code, Detail: detail})
		var out bytes.Buffer
		fmt.Fprintf(&out, "HTTP/1.1 %d %s\r\nContent-Type: application/problem+json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", code, http.StatusText(code), len(b))
		out.Write(b)
		if _, err := c.Conn.Write(out.Bytes()); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// parseRawError recognises an answer net/http wrote itself: a 4xx status
// line, rawErrorHeaders, and a plain-text reason.
func parseRawError(p []byte) (int, string, bool) {
	if !bytes.HasPrefix(p, []byte("HTTP/1.1 4")) || len(p) < 13 {
		return 0, "", false
	}
	i := bytes.Index(p, []byte(rawErrorHeaders))
	if i < 0 || bytes.IndexByte(p[:i], '\n') >= 0 {
		return 0, "", false
	}
	code, err := strconv.Atoi(string(p[9:12]))
	if err != nil {
		return 0, "", false
	}
	body := p[i+len(rawErrorHeaders):]
	if bytes.ContainsAny(body, "\r\n") {
		return 0, "", false
	}
	detail := string(body)
	if code == http.StatusRequestHeaderFieldsTooLarge {
		detail = "the request's headers are larger than the server accepts"
	}
	return code, detail, true
}

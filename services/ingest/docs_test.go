package ingest_test

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDocsOffline: /docs and everything it loads come from the edge
// itself: the page names no other host, the script is served, and the
// Content-Security-Policy forbids loading anything from elsewhere.
func TestDocsOffline(t *testing.T) {
	e := edgeWith(t, "fast", nil)
	ts := e.server(t)
	page := send(t, http.MethodGet, ts.URL+"/docs", "-", "")
	if page.status != http.StatusOK || !strings.HasPrefix(page.header.Get("Content-Type"), "text/html") {
		t.Fatalf("/docs: %d %s", page.status, page.header.Get("Content-Type"))
	}
	if u := regexp.MustCompile(`(?:src|href)="(?:https?:)?//[^"]*"`).FindString(string(page.raw)); u != "" {
		t.Fatalf("/docs loads %s from elsewhere", u)
	}
	if csp := page.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Fatalf("Content-Security-Policy %q", csp)
	}
	js := send(t, http.MethodGet, ts.URL+"/docs/redoc.standalone.js", "-", "")
	if js.status != http.StatusOK || len(js.raw) < 100_000 || !strings.Contains(page.header.Get("Content-Type")+js.header.Get("Content-Type"), "javascript") {
		t.Fatalf("the script: %d, %d bytes", js.status, len(js.raw))
	}
}

// TestDocsInBrowser opens /docs in headless Chromium (tools/docscheck:
// playwright-core and Debian's /usr/bin/chromium, which .ci/run installs):
// the page lists every operation, and no request leaves localhost. Skipped
// where Chromium or the npm packages are missing.
func TestDocsInBrowser(t *testing.T) {
	const dir = "../../tools/docscheck"
	if _, err := os.Stat("/usr/bin/chromium"); err != nil {
		t.Skip("no /usr/bin/chromium (apt-get install chromium)")
	}
	if _, err := os.Stat(dir + "/node_modules/playwright-core"); err != nil {
		t.Skip("no playwright-core (npm ci in tools/docscheck)")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("no node")
	}
	e := edgeWith(t, "fast", nil)
	ts := e.server(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "check.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "DOCS_URL="+ts.URL+"/docs", "OPENAPI="+filepath.Join("..", "openapi", "openapi.json"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	t.Logf("%s", out)
}

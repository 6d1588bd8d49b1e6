package ingest

import (
	_ "embed"
	"net/http"
)

// redocJS is Redoc 2.5.1's standalone bundle (MIT; docsui/README.md): the
// API reference at /docs needs nothing from the internet.
//
//go:embed docsui/redoc.standalone.js
var redocJS []byte

// docsPage renders /openapi.json with the embedded Redoc.
const docsPage = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>record-sync API reference</title>
</head>
<body>
<redoc spec-url="/openapi.json" hide-download-button="false"></redoc>
<script src="/docs/redoc.standalone.js"></script>
</body>
</html>
`

// serveDocs serves the API reference and its script.
func (s *Service) serveDocs() {
	s.mux.HandleFunc("GET /docs", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'self' blob:; worker-src 'self' blob:; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:")
		_, _ = w.Write([]byte(docsPage))
	})
	s.mux.HandleFunc("GET /docs/redoc.standalone.js", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		w.Header().Set("Cache-Control", "public, max-age=86400")
		_, _ = w.Write(redocJS)
	})
}

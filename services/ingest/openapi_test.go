package ingest_test

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"

	"github.com/recordsync/record-sync/shared/openapitest"
)

// openAPIFile is the committed description of the HTTP edge, which CI
// lints (tools/openapi) and the example client is generated from.
const openAPIFile = "../../tools/openapi/openapi.json"

// openAPI30File is the same description as OpenAPI 3.0, what oapi-codegen
// reads (examples/client is generated from it).
const openAPI30File = "../../tools/openapi/openapi-3.0.json"

// TestOpenAPIFileIsCurrent: the committed description is the one the
// service serves. RECORDSYNC_UPDATE_OPENAPI=1 rewrites it.
func TestOpenAPIFileIsCurrent(t *testing.T) {
	e := edgeWith(t, "fast", nil)
	raw, err := json.MarshalIndent(e.svc.API().OpenAPI(), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	raw = append(raw, '\n')
	down, err := e.svc.API().OpenAPI().Downgrade()
	if err != nil {
		t.Fatal(err)
	}
	raw30, err := openapitest.Fix30(down)
	if err != nil {
		t.Fatal(err)
	}
	raw30 = append(raw30, '\n')
	for file, want := range map[string][]byte{openAPIFile: raw, openAPI30File: raw30} {
		if os.Getenv("RECORDSYNC_UPDATE_OPENAPI") == "1" {
			if err := os.WriteFile(file, want, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		have, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(have, want) {
			t.Fatalf("%s is not what the service serves: run RECORDSYNC_UPDATE_OPENAPI=1 go test -run TestOpenAPIFileIsCurrent ./services/ingest/", file)
		}
	}
}

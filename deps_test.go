package recordsync

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/recordsync/record-sync/"

// TestDependencyRules checks the dependency rules of docs/ARCHITECTURE.md
// on every Go file of the module, tests included: services never import
// each other; shared/ never imports services/, app/, crm/ or crmsim/; crm/
// never imports services/ or app/, and outside tests only its contract
// suite imports the emulator; crmsim/ never imports services/, app/ or
// crm/; only cmd/ imports app/.
func TestDependencyRules(t *testing.T) {
	fset := token.NewFileSet()
	files := 0
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "bin" || d.Name() == "data" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.IsDir() && path != "." {
			// A directory with a go.mod of its own (examples/client) is
			// another module, with rules of its own.
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
				return filepath.SkipDir
			}
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		files++
		pkg := filepath.ToSlash(filepath.Dir(path))
		for _, imp := range f.Imports {
			p, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				return err
			}
			if dep, ok := strings.CutPrefix(p, module); ok {
				if why := forbidden(pkg, dep, strings.HasSuffix(path, "_test.go")); why != "" {
					t.Errorf("%s imports %s: %s", path, dep, why)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 50 {
		t.Fatalf("read only %d Go files: the walk is broken", files)
	}
}

// forbidden says why package pkg may not import dep (both relative to the
// module root) in a test file or not, or "" when it may.
func forbidden(pkg, dep string, test bool) string {
	top := func(p string) string { first, _, _ := strings.Cut(p, "/"); return first }
	service := func(p string) string {
		if rest, ok := strings.CutPrefix(p, "services/"); ok {
			first, _, _ := strings.Cut(rest, "/")
			return first
		}
		return ""
	}
	switch {
	case service(pkg) != "" && service(dep) != "" && service(pkg) != service(dep):
		return "services never import each other; they talk over NATS"
	case top(dep) == "app" && top(pkg) != "app" && top(pkg) != "cmd":
		return "only cmd/ imports app/, which wires everything"
	case top(pkg) == "shared" && (top(dep) == "services" || top(dep) == "app" || top(dep) == "crm" || top(dep) == "crmsim"):
		return "shared/ never imports services/, app/, crm/ or crmsim/"
	case top(pkg) == "crm" && top(dep) == "services":
		return "crm/ never imports services/"
	case top(pkg) == "crm" && top(dep) == "crmsim" && pkg != "crm/crmtest" && !test:
		return "outside tests, only the contract suite crm/crmtest imports the emulator"
	case top(pkg) == "crmsim" && (top(dep) == "services" || top(dep) == "crm"):
		return "crmsim/ emulates the CRMs' APIs, not record-sync's view of them"
	}
	return ""
}

func TestForbidden(t *testing.T) {
	for _, tc := range []struct {
		name, pkg, dep string
		test           bool
		want           bool
	}{
		{"service to service", "services/ingest", "services/pusher", false, true},
		{"service to its own sub-package", "services/pusher", "services/pusher/x", false, false},
		{"service to shared", "services/ingest", "shared/mesh", false, false},
		{"service to crm", "services/ingest", "crm", false, false},
		{"shared to service", "shared/config", "services/pusher", false, true},
		{"shared to crm", "shared/mapping", "crm/hubspot", false, true},
		{"shared to shared", "shared/config", "shared/mesh", false, false},
		{"crm to service", "crm/hubspot", "services/pusher", false, true},
		{"crm plugin to emulator", "crm/hubspot", "crmsim/hubspot", false, true},
		{"contract suite to emulator", "crm/crmtest", "crmsim", false, false},
		{"emulator to crm", "crmsim/hubspot", "crm", false, true},
		{"service to app", "services/status", "app", false, true},
		{"cmd to app", "cmd/recordsync", "app", false, false},
		{"plugin test to its emulator", "crm/hubspot", "crmsim/hubspot", true, false},
		{"service test to another service", "services/rules", "services/status", true, true},
		{"app to services", "app", "services/ingest", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := forbidden(tc.pkg, tc.dep, tc.test) != ""; got != tc.want {
				t.Errorf("forbidden(%q, %q, %v) = %v, want %v", tc.pkg, tc.dep, tc.test, got, tc.want)
			}
		})
	}
}

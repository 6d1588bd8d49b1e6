package recordsync

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// pagesOfOtherBranches are docs pages that the front page and the index
// link to while other branches write them; a link to one of them may point
// nowhere until they are merged. Remove an entry once its page is in.
var pagesOfOtherBranches = map[string]bool{}

var (
	mdLink   = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	fence    = regexp.MustCompile("(?ms)^```.*?^```")
	heading  = regexp.MustCompile(`(?m)^#+ (.+)$`)
	notInRef = regexp.MustCompile(`[^\p{L}\p{N}_\- ]`)
	scheme   = regexp.MustCompile(`^[a-z][a-z0-9+.-]*:`)
)

// TestDocLinks checks that every relative link in the repository's
// Markdown files points to a file that exists, and every #fragment to a
// heading of that file.
func TestDocLinks(t *testing.T) {
	var pages []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (path == "bin" || path == "data" || strings.HasPrefix(d.Name(), ".") && path != "." || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".md") {
			pages = append(pages, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(pages) < 10 {
		t.Fatalf("found only %d Markdown pages: %v", len(pages), pages)
	}
	anchors := map[string]map[string]bool{}
	anchorsOf := func(path string) map[string]bool {
		if a, ok := anchors[path]; ok {
			return a
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		a := map[string]bool{}
		for _, m := range heading.FindAllStringSubmatch(fence.ReplaceAllString(string(b), ""), -1) {
			a[slug(m[1])] = true
		}
		anchors[path] = a
		return a
	}
	links := 0
	for _, page := range pages {
		b, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mdLink.FindAllStringSubmatch(fence.ReplaceAllString(string(b), ""), -1) {
			link := m[1]
			if scheme.MatchString(link) {
				continue
			}
			links++
			target, frag, _ := strings.Cut(link, "#")
			path := page
			if target != "" {
				path = filepath.Join(filepath.Dir(page), target)
			}
			if _, err := os.Stat(path); err != nil {
				if !pagesOfOtherBranches[filepath.ToSlash(path)] {
					t.Errorf("%s: link %s: no file %s", page, link, path)
				}
				continue
			}
			if frag != "" && strings.HasSuffix(path, ".md") && !anchorsOf(path)[frag] {
				t.Errorf("%s: link %s: %s has no heading #%s", page, link, path, frag)
			}
		}
	}
	if links == 0 {
		t.Fatal("no relative links found: the pattern is broken")
	}
}

// slug is the anchor GitHub gives a heading: lower case, punctuation
// dropped, spaces as hyphens.
func slug(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	return strings.ReplaceAll(notInRef.ReplaceAllString(h, ""), " ", "-")
}

func TestSlug(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"plain", "Operating with the nats CLI", "operating-with-the-nats-cli"},
		{"punctuation", "Dead letters, retry and replay", "dead-letters-retry-and-replay"},
		{"code", "The `nats` CLI and nats-server", "the-nats-cli-and-nats-server"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := slug(tc.in); got != tc.want {
				t.Errorf("slug(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

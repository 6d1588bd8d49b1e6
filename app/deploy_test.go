package app_test

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/recordsync/record-sync/shared/status"
)

// TestDeployFiles checks the Prometheus configuration and alert rules with
// promtool (Debian package prometheus; .ci/run installs it), and that every
// metric the alerts and the Grafana dashboard use is one record-sync
// exports.
func TestDeployFiles(t *testing.T) {
	if promtool, err := exec.LookPath("promtool"); err != nil {
		t.Log("promtool not installed: configuration not checked by it")
	} else {
		for _, args := range [][]string{{"check", "config", "../deploy/prometheus/prometheus.yml"}, {"check", "rules", "../deploy/prometheus/alerts.yml"}} {
			if out, err := exec.Command(promtool, args...).CombinedOutput(); err != nil {
				t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}
	}

	s := startDev(t)
	s.call("POST", "/v1/sync/config-override", adminKey, map[string]any{"target": "hubspot", "max_attempts": 1})
	s.call("POST", "/v1/sync/", syncKey, contact("dp-1", "dp1@example.com", nil))
	s.call("POST", "/v1/sync/", syncKey, contact("dp-2", "not-an-email", nil))
	s.waitState("dp-1", "hubspot", status.StateSynced)
	s.waitState("dp-2", "hubspot", status.StateFailed)
	exported := string(s.call("GET", "/metrics", "", nil).Raw)

	name := regexp.MustCompile(`recordsync_[a-z_]+`)
	for _, file := range []string{"../deploy/prometheus/alerts.yml", "../deploy/grafana/recordsync.json"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range name.FindAllString(string(b), -1) {
			if !strings.Contains(exported, "\n"+m) {
				t.Errorf("%s uses %s, which /metrics does not export", file, m)
			}
		}
	}
}

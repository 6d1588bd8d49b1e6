// Package deploy_test checks the deploy files: the compose file, the NATS
// cluster configuration it runs, the Helm chart (rendered by helm when HELM names
// a helm binary: make helm-check) and the Dockerfile.
package deploy_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"go.yaml.in/yaml/v3"
)

func readYAML(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return doc
}

func get[T any](t *testing.T, m map[string]any, keys ...string) T {
	t.Helper()
	var cur any = m
	for _, k := range keys {
		mm, ok := cur.(map[string]any)
		if !ok {
			t.Fatalf("%s: not a mapping above %q", strings.Join(keys, "."), k)
		}
		cur = mm[k]
	}
	v, ok := cur.(T)
	if !ok {
		t.Fatalf("%s: %T, not %T", strings.Join(keys, "."), cur, *new(T))
	}
	return v
}

// TestCompose: deploy/compose.yaml parses (anchors and merges resolved), has
// the 3-node cluster, the setup step before every service, two pushers,
// the emulator, Prometheus and Grafana; every file it mounts exists, every
// named volume is declared, and every variable it requires is in
// compose.env.example. Where docker compose (or docker-compose) is
// installed, `config` checks it against the Compose schema too.
func TestCompose(t *testing.T) {
	doc := readYAML(t, "compose.yaml")
	services := get[map[string]any](t, doc, "services")
	want := []string{"nats-0", "nats-1", "nats-2", "setup", "crmsim", "ingest", "rules", "status", "pusher-1", "pusher-2", "prometheus", "grafana"}
	for _, name := range want {
		if _, ok := services[name]; !ok {
			t.Errorf("no service %s", name)
		}
	}
	volumes := get[map[string]any](t, doc, "volumes")
	for name := range services {
		svc := get[map[string]any](t, services, name)
		if svc["image"] == nil && svc["build"] == nil {
			t.Errorf("%s: neither image nor build", name)
		}
		deps := map[string]any{}
		switch d := svc["depends_on"].(type) {
		case map[string]any:
			deps = d
		case []any:
			for _, n := range d {
				deps[n.(string)] = nil
			}
		}
		for dep := range deps {
			if _, ok := services[dep]; !ok {
				t.Errorf("%s depends on %s, which is no service", name, dep)
			}
		}
		if strings.HasPrefix(name, "nats-") {
			continue
		}
		for _, v := range asList(svc["volumes"]) {
			src, _, _ := strings.Cut(v.(string), ":")
			if strings.HasPrefix(src, ".") {
				if _, err := os.Stat(src); err != nil {
					t.Errorf("%s mounts %s: %v", name, src, err)
				}
			} else if _, ok := volumes[src]; !ok {
				t.Errorf("%s mounts volume %s, which is not declared", name, src)
			}
		}
	}
	for _, name := range []string{"ingest", "rules", "status", "pusher-1", "pusher-2"} {
		dep := get[map[string]any](t, services, name, "depends_on", "setup")
		if dep["condition"] != "service_completed_successfully" {
			t.Errorf("%s does not wait for setup to complete: %v", name, dep)
		}
		env := get[map[string]any](t, services, name, "environment")
		if env["RECORDSYNC_NATS_USER"] != strings.TrimSuffix(strings.TrimSuffix(name, "-1"), "-2") {
			t.Errorf("%s connects as NATS user %v", name, env["RECORDSYNC_NATS_USER"])
		}
		if env["RECORDSYNC_REPLICAS"] != "3" || !strings.Contains(env["RECORDSYNC_NATS_URL"].(string), "nats-2:4222") {
			t.Errorf("%s: replicas %v, NATS %v", name, env["RECORDSYNC_REPLICAS"], env["RECORDSYNC_NATS_URL"])
		}
	}
	if cmd := get[[]any](t, services, "setup", "command"); cmd[0] != "setup" {
		t.Errorf("setup runs %v", cmd)
	}
	for _, n := range []string{"nats-0", "nats-1", "nats-2"} {
		vols := asList(get[map[string]any](t, services, n)["volumes"])
		if len(vols) != 3 || !strings.HasPrefix(vols[2].(string), n+":") {
			t.Errorf("%s: volumes %v, want nats.conf, nats-cluster.conf and its own store", n, vols)
		}
		if get[map[string]any](t, services, n, "environment")["RECORDSYNC_NATS_SERVER_NAME"] != n {
			t.Errorf("%s: server name not its own", n)
		}
	}

	raw, _ := os.ReadFile("compose.yaml")
	example, _ := os.ReadFile("compose.env.example")
	env := os.Environ()
	for _, m := range regexp.MustCompile(`\$\{([A-Z0-9_]+):\?`).FindAllStringSubmatch(string(raw), -1) {
		if !regexp.MustCompile(`(?m)^` + m[1] + `=`).Match(example) {
			t.Errorf("compose.yaml requires %s, which compose.env.example does not set", m[1])
		}
	}
	for _, line := range strings.Split(string(example), "\n") {
		if k, _, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(k, "#") {
			env = append(env, line)
		}
	}
	for _, bin := range [][]string{{"docker", "compose"}, {"docker-compose"}} {
		if _, err := exec.LookPath(bin[0]); err != nil {
			continue
		}
		if exec.Command(bin[0], append(bin[1:], "version")...).Run() != nil {
			continue // a docker client without the compose plugin
		}
		cmd := exec.Command(bin[0], append(bin[1:], "-f", "compose.yaml", "config", "-q")...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s config: %v\n%s", strings.Join(bin, " "), err, out)
		}
		t.Logf("%s config: valid", strings.Join(bin, " "))
		return
	}
	t.Log("no docker compose: checked without the Compose schema")
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

// natsConf loads the configuration file at path as nats-server does, with
// every variable the files read set.
func natsConf(t *testing.T, path string) *server.Options {
	t.Helper()
	for k, v := range map[string]string{
		"RECORDSYNC_NATS_LISTEN": "127.0.0.1:4222", "RECORDSYNC_NATS_STORE_DIR": t.TempDir(), "RECORDSYNC_NATS_SYNC_INTERVAL": "2m0s",
	} {
		if os.Getenv(k) == "" || k == "RECORDSYNC_NATS_STORE_DIR" {
			t.Setenv(k, v)
		}
	}
	for _, u := range []string{"INGEST", "ADMIN", "RULES", "PUSHER", "STATUS", "OPERATOR"} {
		t.Setenv("RECORDSYNC_NATS_"+u+"_PASSWORD", "pw-"+strings.ToLower(u))
	}
	o, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return o
}

// TestNATSClusterConf: nats-cluster.conf, next to nats.conf as compose
// mounts them and with the environment compose gives nats-1, is a named
// server of a 3-route JetStream cluster with nats.conf's users; the
// server's command asks for monitoring where the health check looks.
func TestNATSClusterConf(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"nats.conf", "nats-cluster.conf"} {
		b, err := os.ReadFile(filepath.Join("..", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	compose := readYAML(t, "compose.yaml")
	svc := get[map[string]any](t, compose, "services", "nats-1")
	for k, v := range get[map[string]any](t, svc, "environment") {
		if s, ok := v.(string); ok && !strings.HasPrefix(s, "${") {
			t.Setenv(k, s)
		}
	}
	cmd := get[[]any](t, svc, "command")
	if len(cmd) < 3 || cmd[2] != "/etc/nats/nats-cluster.conf" || !slices.Contains(cmd, any("8222")) {
		t.Errorf("nats-1 runs %v", cmd)
	}
	o := natsConf(t, filepath.Join(dir, "nats-cluster.conf"))
	if o.ServerName != "nats-1" || o.Cluster.Name != "recordsync" || len(o.Routes) != 3 || o.Cluster.Port != 6222 {
		t.Errorf("server %q cluster %q port %d, %d routes", o.ServerName, o.Cluster.Name, o.Cluster.Port, len(o.Routes))
	}
	if !o.JetStream || o.StoreDir == "" {
		t.Errorf("JetStream %v, store %q", o.JetStream, o.StoreDir)
	}
	if len(o.Users) < 5 {
		t.Errorf("%d users: nats.conf's are not included", len(o.Users))
	}
}

var updateValues = flag.Bool("update-values", false, "TestHelmNATSUsers: rewrite the NATS users of helm/record-sync/values.yaml from nats.conf")

// TestHelmNATSUsers: the users the chart gives the official NATS chart are
// nats.conf's, with the same permissions, so that a change of one is made
// in the other. After a change of nats.conf:
//
//	go test ./deploy/ -run TestHelmNATSUsers -update-values
func TestHelmNATSUsers(t *testing.T) {
	o := natsConf(t, "../nats.conf")
	if *updateValues {
		writeValuesUsers(t, o.Users)
	}
	conf := map[string]*server.Permissions{}
	for _, u := range o.Users {
		conf[u.Username] = u.Permissions
	}
	values := readYAML(t, "helm/record-sync/values.yaml")
	users := get[[]any](t, values, "nats", "config", "merge", "accounts", "SYNC", "users")
	chart := map[string]*server.Permissions{}
	env := get[map[string]any](t, values, "nats", "container", "env")
	for _, u := range users {
		m := u.(map[string]any)
		name := m["user"].(string)
		v := "RECORDSYNC_NATS_" + strings.ToUpper(name) + "_PASSWORD"
		if m["password"] != "<< $"+v+" >>" {
			t.Errorf("user %s: password %v, want << $%s >>", name, m["password"], v)
		}
		if _, ok := env[v]; !ok {
			t.Errorf("user %s: the NATS container has no %s", name, v)
		}
		var p *server.Permissions
		if perm, ok := m["permissions"].(map[string]any); ok {
			p = &server.Permissions{Publish: subjects(perm["publish"]), Subscribe: subjects(perm["subscribe"])}
		}
		chart[name] = p
	}
	for name, want := range conf {
		got, ok := chart[name]
		if !ok {
			t.Errorf("nats.conf user %s is not in the chart's values", name)
			continue
		}
		if !samePermissions(got, want) {
			t.Errorf("user %s: the chart gives %s, nats.conf %s (go test ./deploy/ -run TestHelmNATSUsers -update-values)", name, describe(got), describe(want))
		}
	}
	for name := range chart {
		if _, ok := conf[name]; !ok {
			t.Errorf("the chart's user %s is not in nats.conf", name)
		}
	}
}

// writeValuesUsers replaces the users list of values.yaml's SYNC account
// with users.
func writeValuesUsers(t *testing.T, users []*server.User) {
	t.Helper()
	const path, start, end = "helm/record-sync/values.yaml", "          users:\n", "  container:\n    env:"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i, j := strings.Index(s, start), strings.Index(s, end)
	if i < 0 || j < i {
		t.Fatalf("%s: no users list between %q and %q", path, start, end)
	}
	list := func(l []string) string {
		q := make([]string, len(l))
		for k, v := range l {
			q[k] = strconv.Quote(v)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	var sb strings.Builder
	for _, u := range users {
		fmt.Fprintf(&sb, "            - user: %s\n              password: << $RECORDSYNC_NATS_%s_PASSWORD >>\n", u.Username, strings.ToUpper(u.Username))
		if p := u.Permissions; p != nil {
			sb.WriteString("              permissions:\n")
			if p.Publish != nil {
				fmt.Fprintf(&sb, "                publish: %s\n", list(p.Publish.Allow))
			}
			if p.Subscribe != nil {
				fmt.Fprintf(&sb, "                subscribe: %s\n", list(p.Subscribe.Allow))
			}
		}
	}
	if err := os.WriteFile(path, []byte(s[:i+len(start)]+sb.String()+s[j:]), 0o644); err != nil {
		t.Fatal(err)
	}
}

func subjects(v any) *server.SubjectPermission {
	var out []string
	for _, s := range asList(v) {
		out = append(out, s.(string))
	}
	if out == nil {
		return nil
	}
	return &server.SubjectPermission{Allow: out}
}

func samePermissions(a, b *server.Permissions) bool {
	return describe(a) == describe(b)
}

func describe(p *server.Permissions) string {
	if p == nil {
		return "all"
	}
	list := func(s *server.SubjectPermission) string {
		if s == nil {
			return "-"
		}
		l := slices.Clone(s.Allow)
		slices.Sort(l)
		return strings.Join(l, " ") + " deny " + strings.Join(s.Deny, " ")
	}
	return "publish[" + list(p.Publish) + "] subscribe[" + list(p.Subscribe) + "]"
}

// TestDockerfile: the image is built by make build, runs recordsync as a
// non-root user on distroless, and carries the OCI labels.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	for _, want := range []string{"RUN make build", "FROM gcr.io/distroless/static", "USER 65532:65532", `ENTRYPOINT ["/usr/local/bin/recordsync"]`,
		"org.opencontainers.image.version", "org.opencontainers.image.revision", "org.opencontainers.image.source"} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	mk, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-X main.buildVersion=", "-X main.buildCommit="} {
		if !strings.Contains(string(mk), want) {
			t.Errorf("make build lacks %q", want)
		}
	}
	ignore, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	for _, embedded := range []string{"nats.conf", "nats-cluster.conf", "rules.json", "defaults.json", "go.mod", "go.sum"} {
		if strings.Contains(string(ignore), embedded) {
			t.Errorf(".dockerignore leaves out %s, which the build needs", embedded)
		}
	}
}

// knownKinds are the kinds the chart may render.
var knownKinds = map[string]string{
	"Deployment": "apps/v1", "Service": "v1", "Secret": "v1", "Job": "batch/v1", "HorizontalPodAutoscaler": "autoscaling/v2",
	"PodDisruptionBudget": "policy/v1", "ServiceMonitor": "monitoring.coreos.com/v1", "PersistentVolumeClaim": "v1",
}

// TestHelmChart runs helm lint and helm template with each values file in
// helm/ci (HELM names the helm binary: make helm-check builds a pinned
// one), and checks what renders: every document a known kind with its
// apiVersion and a name; each Deployment with probes, resources, a
// non-root user and a read-only root filesystem; an HPA only for a
// Deployment that exists; the setup Job a Helm hook running setup.
//
// The official NATS chart cannot be fetched here: the test gives helm an
// empty stand-in chart of that name, and the values files turn it off.
func TestHelmChart(t *testing.T) {
	helm := os.Getenv("HELM")
	if helm == "" {
		t.Skip("HELM not set: make helm-check runs this with a pinned helm")
	}
	chart := filepath.Join(t.TempDir(), "record-sync")
	if err := os.CopyFS(chart, os.DirFS("helm/record-sync")); err != nil {
		t.Fatal(err)
	}
	stub := filepath.Join(chart, "charts", "nats")
	if err := os.MkdirAll(stub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stub, "Chart.yaml"), []byte("apiVersion: v2\nname: nats\nversion: 2.14.2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob("helm/ci/*.yaml")
	if err != nil || len(files) < 2 {
		t.Fatalf("values files in helm/ci: %v %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			abs, _ := filepath.Abs(f)
			if out, err := exec.Command(helm, "lint", "--strict", chart, "-f", abs).CombinedOutput(); err != nil {
				t.Fatalf("helm lint: %v\n%s", err, out)
			}
			out, err := exec.Command(helm, "template", "rs", chart, "-f", abs).Output()
			if err != nil {
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					t.Fatalf("helm template: %v\n%s", err, ee.Stderr)
				}
				t.Fatal(err)
			}
			checkManifests(t, out)
		})
	}
}

func checkManifests(t *testing.T, out []byte) {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(out))
	byKind := map[string][]map[string]any{}
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("rendered YAML: %v", err)
		}
		if doc == nil {
			continue
		}
		kind, _ := doc["kind"].(string)
		api, _ := doc["apiVersion"].(string)
		name, _ := get[map[string]any](t, doc, "metadata")["name"].(string)
		if want, ok := knownKinds[kind]; !ok || api != want || name == "" {
			t.Errorf("document %s %s %q: want a known kind with its apiVersion and a name", api, kind, name)
		}
		byKind[kind] = append(byKind[kind], doc)
	}
	deployments := map[string]bool{}
	for _, d := range byKind["Deployment"] {
		name := get[string](t, d, "metadata", "name")
		deployments[name] = true
		spec := get[map[string]any](t, d, "spec", "template", "spec")
		if get[map[string]any](t, spec, "securityContext")["runAsNonRoot"] != true {
			t.Errorf("%s: not runAsNonRoot", name)
		}
		for _, c := range get[[]any](t, spec, "containers") {
			c := c.(map[string]any)
			if get[map[string]any](t, c, "securityContext")["readOnlyRootFilesystem"] != true {
				t.Errorf("%s: root filesystem not read-only", name)
			}
			if strings.HasSuffix(name, "-crmsim") {
				continue
			}
			for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
				if p, _ := c[probe].(map[string]any); p == nil || get[string](t, p, "httpGet", "path") != path {
					t.Errorf("%s: %s is not GET %s", name, probe, path)
				}
			}
			if c["resources"] == nil {
				t.Errorf("%s: no resources", name)
			}
		}
	}
	for _, svc := range []string{"ingest", "rules", "pusher", "status"} {
		if !deployments["rs-record-sync-"+svc] {
			t.Errorf("no Deployment of %s among %v", svc, slices.Sorted(maps.Keys(deployments)))
		}
	}
	for _, h := range byKind["HorizontalPodAutoscaler"] {
		if target := get[string](t, h, "spec", "scaleTargetRef", "name"); !deployments[target] {
			t.Errorf("HPA scales %s, which is no Deployment", target)
		}
	}
	jobs := byKind["Job"]
	if len(jobs) != 1 {
		t.Fatalf("%d Jobs, want the setup one", len(jobs))
	}
	if get[map[string]any](t, jobs[0], "metadata", "annotations")["helm.sh/hook"] == nil {
		t.Error("the setup Job is not a Helm hook")
	}
	c := get[[]any](t, jobs[0], "spec", "template", "spec", "containers")[0].(map[string]any)
	if args := get[[]any](t, c, "args"); len(args) != 1 || args[0] != "setup" {
		t.Errorf("the setup Job runs %v", args)
	}
}

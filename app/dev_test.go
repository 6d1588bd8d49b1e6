package app_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recordsync/record-sync/app"
	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/natsrv"
	"github.com/recordsync/record-sync/shared/openapitest"
	"github.com/recordsync/record-sync/shared/status"
)

const (
	syncKey  = "sync-test-key"
	adminKey = "admin-test-key"
	// pusherPassword is the NATS pusher user's, so that a test can run a
	// pusher process of its own against dev's server, as that user.
	pusherPassword = "pusher-test-password"
)

// devStack is a running `recordsync dev` for a test.
type devStack struct {
	t    testing.TB
	info app.DevInfo
	// api checks every answer call reads against the edge's OpenAPI
	// description.
	api *openapitest.Checker
	js  jetstream.JetStream // as the operator
	kv  jetstream.KeyValue  // sync_status
	// recent holds dev's last log lines at info level and above (nil
	// for a stack the test did not start): a wait that times out shows
	// those naming its record.
	recent *deniedSeen
}

// startDev runs dev in-process on free ports with its data in a temporary
// directory, and stops it cleanly when the test ends.
func startDev(t testing.TB, opts ...func(*app.Env)) *devStack {
	t.Helper()
	env := app.Env{
		HTTPAddr: "127.0.0.1:0", NATSListen: "127.0.0.1:-1", CRMSimAddr: "127.0.0.1:0",
		DataDir: t.TempDir(), APIKeys: []string{syncKey}, AdminKeys: []string{adminKey},
		CRMSim: true, Profile: "fast", LogLevel: "warn", DevPushers: 1,
		NATSPasswords: map[string]string{"pusher": pusherPassword},
	}
	env.CRMCredentials = filepath.Join(env.DataDir, "crmsim", "credentials.json")
	for _, o := range opts {
		o(&env)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan app.DevInfo, 1)
	done := make(chan error, 1)
	log := slog.New(slog.DiscardHandler)
	if os.Getenv("RECORDSYNC_BENCH_LOG") == "info" {
		// What production pays at the default level: a JSON line per
		// status change and per CRM request (written nowhere).
		log = slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})) //nolint:sloglint // formats the lines to measure that, then drops them
	}
	if testing.Verbose() {
		level := slog.LevelWarn
		if os.Getenv("RECORDSYNC_TEST_LOG") == "info" {
			level = slog.LevelInfo // every status change and CRM request
		}
		log = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	}
	// Every service runs as its own NATS user: the server must refuse
	// none of what they do.
	_, bench := t.(*testing.B)
	denied := &deniedLog{Handler: log.Handler(), seen: &deniedSeen{}, recent: !bench}
	log = slog.New(denied)
	go func() { done <- app.RunDev(ctx, env, log, func(i app.DevInfo) { ready <- i }) }()
	var info app.DevInfo
	select {
	case info = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("dev stopped before it was ready: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("dev not ready after 30s")
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dev did not stop cleanly: %v", err)
		}
		if d := denied.all(); len(d) > 0 {
			t.Errorf("the NATS server refused a service %d times: %s", len(d), strings.Join(d, "; "))
		}
	})
	st := attach(t, info)
	st.recent = denied.seen
	return st
}

// deniedLog passes records on to Handler and keeps those that say the NATS
// server refused something to a service user: a permissions violation the
// server logged, or one a service's connection was told of.
type deniedLog struct {
	slog.Handler
	seen *deniedSeen
	// recent: keep the info lines too (tests, for their failure
	// messages); a benchmark sees only warnings and errors, so that it
	// does not measure this ring.
	recent bool
}

type deniedSeen struct {
	mu   sync.Mutex
	list []string
	// lines is a ring of the last recentLines log lines; next is where
	// the next one goes.
	lines []string
	next  int
}

// recentLines is how many of dev's log lines a devStack keeps.
const recentLines = 20_000

// keep adds a log line to the ring.
func (d *deniedSeen) keep(line string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.lines) < recentLines {
		d.lines = append(d.lines, line)
		return
	}
	d.lines[d.next] = line
	d.next = (d.next + 1) % recentLines
}

// mentioning returns the kept lines that name id (as a whole word),
// oldest first.
func (d *deniedSeen) mentioning(id string) []string {
	word := regexp.MustCompile(`(^|[^\w-])` + regexp.QuoteMeta(id) + `($|[^\w-])`)
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for i := range d.lines {
		if l := d.lines[(d.next+i)%len(d.lines)]; word.MatchString(l) {
			out = append(out, l)
		}
	}
	return out
}

func (d *deniedLog) Enabled(ctx context.Context, level slog.Level) bool {
	return d.recent || level >= slog.LevelWarn || d.Handler.Enabled(ctx, level)
}

func (d *deniedLog) Handle(ctx context.Context, r slog.Record) error {
	detail := ""
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "detail" || a.Key == "error" {
			detail += a.Value.String() + " "
		}
		return true
	})
	if r.Level >= slog.LevelInfo && d.recent {
		line := r.Time.Format("15:04:05.000") + " " + r.Message
		r.Attrs(func(a slog.Attr) bool {
			line += " " + a.String()
			return true
		})
		d.seen.keep(line)
	}
	if r.Message == "nats_permission_denied" || strings.Contains(detail, "Violation") {
		d.seen.mu.Lock()
		d.seen.list = append(d.seen.list, r.Message+": "+detail)
		d.seen.mu.Unlock()
	}
	if !d.Handler.Enabled(ctx, r.Level) {
		return nil
	}
	return d.Handler.Handle(ctx, r)
}

func (d *deniedLog) WithAttrs(as []slog.Attr) slog.Handler {
	return &deniedLog{Handler: d.Handler.WithAttrs(as), seen: d.seen, recent: d.recent}
}

func (d *deniedLog) WithGroup(name string) slog.Handler {
	return &deniedLog{Handler: d.Handler.WithGroup(name), seen: d.seen, recent: d.recent}
}

func (d *deniedLog) all() []string {
	d.seen.mu.Lock()
	defer d.seen.mu.Unlock()
	return slices.Clone(d.seen.list)
}

// attach connects a test to a running dev described by info.
func attach(t testing.TB, info app.DevInfo) *devStack {
	t.Helper()
	s := &devStack{t: t, info: info}
	doc := call(t, "GET", info.HTTPURL+"/openapi-3.0.json", "", nil)
	var err error
	if s.api, err = openapitest.New(doc.Raw); err != nil {
		t.Fatalf("the edge's OpenAPI description: %v", err)
	}
	nc := s.operator()
	if s.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	if s.kv, err = s.js.KeyValue(context.Background(), mesh.BucketStatus); err != nil {
		t.Fatal(err)
	}
	return s
}

// operator connects to the dev NATS with the credentials of nats.env, as
// an operator with the nats CLI would.
func (s *devStack) operator() *nats.Conn {
	s.t.Helper()
	f, err := os.Open(s.info.NATSEnv)
	if err != nil {
		s.t.Fatal(err)
	}
	defer f.Close()
	vars := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			vars[k] = v
		}
	}
	nc, err := nats.Connect(vars["NATS_URL"], nats.UserInfo(vars["NATS_USER"], vars["NATS_PASSWORD"]))
	if err != nil {
		s.t.Fatalf("connect with nats.env: %v", err)
	}
	s.t.Cleanup(nc.Close)
	return nc
}

// connectAs connects to the dev NATS as a service user, with the user's
// private inbox prefix, as a service process would.
func (s *devStack) connectAs(user, password string) *nats.Conn {
	s.t.Helper()
	nc, err := natsrv.Dial(s.info.NATSURL, "test-"+user, user, password)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(nc.Close)
	return nc
}

// response is an HTTP answer with its JSON body decoded.
type response struct {
	Status int
	Header http.Header
	Body   map[string]any
	Raw    []byte
}

// call sends a request to the HTTP edge; body is JSON-encoded unless it is
// a string or []byte.
func (s *devStack) call(method, path, key string, body any, hdr ...string) response {
	s.t.Helper()
	return callChecked(s.t, s.api, method, s.info.HTTPURL+path, key, body, hdr...)
}

func call(t testing.TB, method, url, key string, body any, hdr ...string) response {
	t.Helper()
	return callChecked(t, nil, method, url, key, body, hdr...)
}

// callChecked is call, checking the answer against api when not nil.
func callChecked(t testing.TB, api *openapitest.Checker, method, url, key string, body any, hdr ...string) response {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if api != nil {
		api.Check(t, req, resp.StatusCode, resp.Header, raw)
	}
	out := response{Status: resp.StatusCode, Header: resp.Header, Raw: raw}
	if len(raw) > 0 && strings.Contains(resp.Header.Get("Content-Type"), "json") {
		if err := json.Unmarshal(raw, &out.Body); err != nil {
			t.Fatalf("%s %s: undecodable answer %q: %v", method, url, raw, err)
		}
	}
	return out
}

// waitState waits, by watching KV sync_status, until the record's status
// for target is state, and returns it.
func (s *devStack) waitState(recordID, target string, state status.State) *status.Target {
	s.t.Helper()
	return s.waitFor(recordID, target, string(state), func(t *status.Target) bool { return t.State == state })
}

// waitFor waits, by watching KV sync_status, until ok holds for the
// record's status for target; what names the awaited condition in a
// failure.
func (s *devStack) waitFor(recordID, target, what string, ok func(*status.Target) bool) *status.Target {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w, err := s.kv.Watch(ctx, status.Key(recordID))
	if err != nil {
		s.t.Fatal(err)
	}
	defer func() { _ = w.Stop() }()
	var last *status.Target
	for {
		select {
		case e := <-w.Updates():
			if e == nil {
				continue
			}
			var rec status.Record
			if err := json.Unmarshal(e.Value(), &rec); err != nil {
				s.t.Fatal(err)
			}
			if last = rec.Targets[target]; last != nil && ok(last) {
				return last
			}
		case <-ctx.Done():
			s.t.Fatalf("record %s never reached %s for %s; last: %+v%s", recordID, what, target, last, s.story(recordID, target))
		}
	}
}

// story tells what dev logged of a record, and what SYNC_PUSH holds on
// its record subject for target: what a test that waited in vain shows.
func (s *devStack) story(recordID, target string) string {
	var b strings.Builder
	if s.recent != nil {
		b.WriteString("\nwhat dev logged of it:")
		for _, l := range s.recent.mentioning(recordID) {
			b.WriteString("\n  " + l)
		}
		b.WriteString("\nwhat its target's pusher logged of the circuit, rate limits and partitions:")
		for _, msg := range []string{"circuit_changed", "rate_limited_pause", "fetch_failed", "partition_takeover_failed", "partition_pin_lost", "partition_lost"} {
			for _, l := range s.recent.mentioning(msg) {
				if strings.Contains(l, "target="+target+" ") {
					b.WriteString("\n  " + l)
				}
			}
		}
	}
	if r := call(s.t, "GET", s.info.CRMSimURL+"/_sim/"+target+"/stats", "", nil); r.Status == 200 {
		b.WriteString("\nthe emulated " + target + "'s stats: " + string(r.Raw))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if st, err := s.js.Stream(ctx, mesh.StreamPush); err == nil {
		if info, err := st.Info(ctx, jetstream.WithSubjectFilter(mesh.SubjectPushAll)); err == nil {
			fmt.Fprintf(&b, "\n%s: %d messages, first %d, last %d", mesh.StreamPush, info.State.Msgs, info.State.FirstSeq, info.State.LastSeq)
			for subj, n := range info.State.Subjects {
				if strings.HasPrefix(subj, "sync.push."+target+".") && strings.HasSuffix(subj, "."+status.Key(recordID)) {
					fmt.Fprintf(&b, "\n  %s: %d", subj, n)
				}
			}
		}
		for c := range st.ListConsumers(ctx).Info() {
			if strings.Contains(c.Name, target) && (c.NumPending > 0 || c.NumAckPending > 0) {
				pinned := ""
				if len(c.PriorityGroups) > 0 {
					pinned = c.PriorityGroups[0].PinnedClientID
				}
				fmt.Fprintf(&b, "\n  consumer %s: pending %d, ack pending %d, redelivered %d, waiting %d, pinned %q",
					c.Name, c.NumPending, c.NumAckPending, c.NumRedelivered, c.NumWaiting, pinned)
			}
		}
	}
	return b.String()
}

// lastSeq returns the last sequence of a stream: it moves only when
// something was stored.
func (s *devStack) lastSeq(stream string) uint64 {
	s.t.Helper()
	st, err := s.js.Stream(context.Background(), stream)
	if err != nil {
		s.t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		s.t.Fatal(err)
	}
	return info.State.LastSeq
}

// inbound is the sum of the last sequences of the streams events arrive
// on (SYNC_IN, SYNC_GATHER): it grows with every message stored.
func (s *devStack) inbound() uint64 {
	s.t.Helper()
	return s.lastSeq(mesh.StreamIn) + s.lastSeq(mesh.StreamGather)
}

// credentials decodes the emulator's credentials.json, as dev wrote it,
// into v.
func (s *devStack) credentials(v any) {
	s.t.Helper()
	b, err := os.ReadFile(s.info.Credentials)
	if err != nil {
		s.t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		s.t.Fatal(err)
	}
}

// hubspot calls the emulated HubSpot with the sandbox token.
func (s *devStack) hubspot(method, path string, body any) response {
	s.t.Helper()
	var creds struct {
		HubSpot struct{ Token string } `json:"hubspot"`
	}
	s.credentials(&creds)
	return call(s.t, method, s.info.CRMSimURL+"/hubspot"+path, "", body, "Authorization", "Bearer "+creds.HubSpot.Token)
}

// sim calls the emulator's test controls.
func (s *devStack) sim(method, path string, body any) response {
	s.t.Helper()
	return call(s.t, method, s.info.CRMSimURL+"/_sim/hubspot"+path, "", body)
}

func contact(recordID, email string, extra map[string]any) map[string]any {
	data := map[string]any{"email": email}
	for k, v := range extra {
		data[k] = v
	}
	return map[string]any{"record_id": recordID, "operation": "create", "data": data}
}

// salesforce calls the emulated Salesforce with a token from its JWT
// bearer flow, as any client given credentials.json would.
func (s *devStack) salesforce(method, path string) response {
	s.t.Helper()
	var creds struct {
		Salesforce struct {
			ConsumerKey string `json:"consumer_key"`
			Username    string `json:"username"`
			PrivateKey  string `json:"private_key"`
			Audience    string `json:"audience"`
		} `json:"salesforce"`
	}
	s.credentials(&creds)
	key, err := jwt.ParseRSAPrivateKeyFromPEM([]byte(creds.Salesforce.PrivateKey))
	if err != nil {
		s.t.Fatal(err)
	}
	assertion, err := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"iss": creds.Salesforce.ConsumerKey, "sub": creds.Salesforce.Username,
		"aud": creds.Salesforce.Audience, "exp": time.Now().Add(time.Minute).Unix()}).SignedString(key)
	if err != nil {
		s.t.Fatal(err)
	}
	resp, err := http.PostForm(s.info.CRMSimURL+"/salesforce/services/oauth2/token", url.Values{
		"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {assertion}})
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
		InstanceURL string `json:"instance_url"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.AccessToken == "" {
		s.t.Fatalf("token: %v %d", err, resp.StatusCode)
	}
	return call(s.t, method, tok.InstanceURL+path, "", nil, "Authorization", "Bearer "+tok.AccessToken)
}

// outreach calls the emulated Outreach with a token from its refresh-token
// grant.
func (s *devStack) outreach(method, path string) response {
	s.t.Helper()
	var creds struct {
		Outreach struct {
			ClientID     string `json:"client_id"`
			ClientSecret string `json:"client_secret"`
			RefreshToken string `json:"refresh_token"`
		} `json:"outreach"`
	}
	s.credentials(&creds)
	resp, err := http.PostForm(s.info.CRMSimURL+"/outreach/oauth/token", url.Values{"grant_type": {"refresh_token"},
		"client_id": {creds.Outreach.ClientID}, "client_secret": {creds.Outreach.ClientSecret}, "refresh_token": {creds.Outreach.RefreshToken}})
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.AccessToken == "" {
		s.t.Fatalf("token: %v %d", err, resp.StatusCode)
	}
	return call(s.t, method, s.info.CRMSimURL+"/outreach"+path, "", nil, "Authorization", "Bearer "+tok.AccessToken)
}

package app_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recordsync/record-sync/app"
	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/status"
)

const (
	syncKey  = "sync-test-key"
	adminKey = "admin-test-key"
)

// devStack is a running `recordsync dev` for a test.
type devStack struct {
	t    testing.TB
	info app.DevInfo
	js   jetstream.JetStream // as the operator
	kv   jetstream.KeyValue  // sync_status
}

// startDev runs dev in-process on free ports with its data in a temporary
// directory, and stops it cleanly when the test ends.
func startDev(t testing.TB, opts ...func(*app.Env)) *devStack {
	t.Helper()
	env := app.Env{
		HTTPAddr: "127.0.0.1:0", NATSListen: "127.0.0.1:-1", CRMSimAddr: "127.0.0.1:0",
		DataDir: t.TempDir(), APIKeys: []string{syncKey}, AdminKeys: []string{adminKey},
		CRMSim: true, Profile: "fast", LogLevel: "warn", DevPushers: 1,
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
		log = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
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
	})
	return attach(t, info)
}

// attach connects a test to a running dev described by info.
func attach(t testing.TB, info app.DevInfo) *devStack {
	t.Helper()
	s := &devStack{t: t, info: info}
	nc := s.operator()
	var err error
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
	return call(s.t, method, s.info.HTTPURL+path, key, body, hdr...)
}

func call(t testing.TB, method, url, key string, body any, hdr ...string) response {
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
			s.t.Fatalf("record %s never reached %s for %s; last: %+v", recordID, what, target, last)
		}
	}
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

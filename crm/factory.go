package crm

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/recordsync/record-sync/shared/config"
)

// Factory is how record-sync builds one CRM's plugin. Each plugin package
// exports a function returning its Factory (hubspot.Factory); the list of
// them (app.CRMs) is all that registers a CRM.
type Factory struct {
	// Name is the target name: the plugin's Name, the key of its
	// credentials and of its configuration.
	Name string
	// Defaults is the target's own starting configuration, over the
	// settings every target starts from (shared/config/defaults.json): at
	// least its batch size, rate limit and concurrency. An unset api_host
	// is the emulator's prefix of the CRM.
	Defaults config.Override
	// New builds the plugin with creds, the JSON object under Name in the
	// credentials file (empty when there is none). complete reports
	// whether they hold what Push needs; without them the plugin still
	// answers everything but Push (names, schemas, identities, previews),
	// which is all ingest and rules use. An error is credentials that are
	// there but wrong (a key that does not parse).
	New func(creds json.RawMessage, o Options) (c CRM, complete bool, err error)
}

// Options are what every plugin is built with.
type Options struct {
	// Timeout bounds each request (DefaultTimeout when 0).
	Timeout time.Duration
	// Getenv reads the process environment, for a variable a plugin
	// documents (RECORDSYNC_HUBSPOT_TOKEN); nil reads none.
	Getenv func(string) string
}

// DefaultTimeout bounds a CRM request when Options.Timeout is 0.
const DefaultTimeout = 30 * time.Second

// Env returns the variable key of the environment Getenv reads, "" when
// there is none.
func (o Options) Env(key string) string {
	if o.Getenv == nil {
		return ""
	}
	return o.Getenv(key)
}

// Credentials are a deployment's CRM credentials, by target name: the
// credentials file (RECORDSYNC_CRM_CREDENTIALS), which the emulator writes
// in the same shape, each CRM's entry as its plugin's factory documents it.
type Credentials map[string]json.RawMessage

// ReadCredentials reads the credentials file at path; a file that is not
// there holds none.
func ReadCredentials(path string) (Credentials, error) {
	creds := Credentials{}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return creds, nil
	}
	if err != nil {
		return nil, fmt.Errorf("crm credentials: %w", err)
	}
	if err := json.Unmarshal(b, &creds); err != nil {
		return nil, fmt.Errorf("crm credentials %s: %w", path, err)
	}
	return creds, nil
}

// DecodeCredentials decodes a CRM's entry of the credentials file into v;
// an empty entry leaves v as it is.
func DecodeCredentials(name string, raw json.RawMessage, v any) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("credentials of %s: %w", name, err)
	}
	return nil
}

// Build returns the registry of fs, each plugin built with its entry of
// creds. With needCreds (the pusher) a plugin whose credentials are not
// complete is left out and named in missing, so that its work waits in its
// stream; otherwise every plugin is registered. Every factory's target is
// known to the registry either way (Targets, Defaults, MaxBatch). Two
// factories of one name, or a plugin named otherwise than its factory, are
// an error.
func Build(fs []Factory, creds Credentials, o Options, needCreds bool) (r *Registry, missing []string, err error) {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	r = NewRegistry()
	for _, f := range fs {
		if f.Name == "" || f.New == nil {
			return nil, nil, fmt.Errorf("crm factory %q: a factory needs a name and New", f.Name)
		}
		if _, dup := r.targets[f.Name]; dup {
			return nil, nil, fmt.Errorf("crm %q registered twice", f.Name)
		}
		c, complete, err := f.New(creds[f.Name], o)
		if err != nil {
			return nil, nil, fmt.Errorf("crm %s: %w", f.Name, err)
		}
		if c.Name() != f.Name {
			return nil, nil, fmt.Errorf("crm factory %q built a plugin named %q", f.Name, c.Name())
		}
		r.targets[f.Name] = target{defaults: f.Defaults, maxBatch: c.MaxBatch()}
		if needCreds && !complete {
			missing = append(missing, f.Name)
			_ = c.Close()
			continue
		}
		if err := r.Register(c); err != nil {
			return nil, nil, err
		}
	}
	return r, missing, nil
}

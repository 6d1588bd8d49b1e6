package app

import (
	"log/slog"
	"os"

	"github.com/recordsync/record-sync/crm"
	"github.com/recordsync/record-sync/crm/hubspot"
	"github.com/recordsync/record-sync/crm/outreach"
	"github.com/recordsync/record-sync/crm/salesforce"
)

// CRMs returns the CRM plugins record-sync is built with: adding a CRM is
// its package under crm/ and one line here.
func CRMs() []crm.Factory {
	return []crm.Factory{
		hubspot.Factory(),
		salesforce.Factory(),
		outreach.Factory(),
	}
}

// Registry builds the CRM plugins of env.CRMs (CRMs() when nil) with the
// credentials in env.CRMCredentials. With needCreds (the pusher), a plugin
// without credentials is left out and named in the returned list, so its
// work waits in its stream; the other services register every plugin, as
// they only use names, limits and schemas.
func Registry(env Env, needCreds bool) (*crm.Registry, []string, error) {
	creds, err := crm.ReadCredentials(env.CRMCredentials)
	if err != nil {
		return nil, nil, err
	}
	fs := env.CRMs
	if fs == nil {
		fs = CRMs()
	}
	return crm.Build(fs, creds, crm.Options{Timeout: env.CRMTimeout, Getenv: env.Getenv}, needCreds)
}

// LogMissingCredentials says once, in one line, which targets a pusher has
// no credentials for and where it looked.
func LogMissingCredentials(log *slog.Logger, env Env, missing []string) {
	if len(missing) == 0 {
		return
	}
	_, statErr := os.Stat(env.CRMCredentials)
	log.Warn("crm_without_credentials", "targets", missing, "credentials_file", env.CRMCredentials, "file_found", statErr == nil,
		"detail", "no pusher for these targets: their work waits in SYNC_PUSH until a pusher with credentials runs; "+
			"set RECORDSYNC_CRM_CREDENTIALS to a credentials.json (the emulator writes one to <data dir>/crmsim/credentials.json), or RECORDSYNC_HUBSPOT_TOKEN")
}

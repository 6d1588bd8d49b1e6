// Package recordsync holds the files checked in at the top of the
// repository that the binary carries: the NATS server configuration and the
// starting rule set.
package recordsync

import _ "embed"

// NATSConf is nats.conf, the configuration of the NATS server that `dev`
// embeds and that a standalone nats-server runs with.
//
//go:embed nats.conf
var NATSConf []byte

// RulesJSON is rules.json, the rule set loaded when KV sync_rules is empty.
//
//go:embed rules.json
var RulesJSON []byte

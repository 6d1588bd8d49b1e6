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

// NATSClusterConf is nats-cluster.conf: nats.conf (which it includes)
// and the cluster block of one server of a 3-node cluster.
//
//go:embed nats-cluster.conf
var NATSClusterConf []byte

// RulesJSON is rules.json, the rule set loaded when KV sync_rules is empty.
//
//go:embed rules.json
var RulesJSON []byte

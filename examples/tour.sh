#!/usr/bin/env bash
# The front page's five-minute tour, run as the reader pastes it, then
# checked: every command of README.md's "A five-minute tour" runs (taken
# from README.md itself, so the page and this script cannot drift), and
# what the tour claims is then true.
#
# Run it from the repository while `make run` is going:
#
#   examples/tour.sh
#
# Against another dev, say where it is (the defaults are make run's):
#
#   RECORDSYNC_HTTP_ADDR=127.0.0.1:8080 RECORDSYNC_CRMSIM_ADDR=127.0.0.1:8090 \
#   RECORDSYNC_DATA_DIR=./data RECORDSYNC_BIN=bin/recordsync examples/tour.sh
#
# It needs bash, curl, sed and awk. The tour writes records c-123 to c-127
# and c-300, replaces the rule set and overrides HubSpot's batch_size:
# run it on a fresh data dir.
set -euo pipefail

cd "$(dirname "$0")/.."
http=${RECORDSYNC_HTTP_ADDR:-127.0.0.1:8080}
sim=${RECORDSYNC_CRMSIM_ADDR:-127.0.0.1:8090}
data=${RECORDSYNC_DATA_DIR:-./data}
bin=${RECORDSYNC_BIN:-bin/recordsync}
readme=README.md

fail() {
  echo "tour: $*" >&2
  exit 1
}

for tool in curl sed awk; do
  command -v "$tool" >/dev/null || fail "needs $tool"
done
[[ -x $bin ]] || fail "no binary at $bin (make build)"
[[ -r $data/api-keys.json ]] || fail "no $data/api-keys.json: is recordsync dev running with RECORDSYNC_DATA_DIR=$data?"
curl -sf "http://$http/readyz" >/dev/null || fail "http://$http/readyz does not answer: is recordsync dev running?"

# The tour's sh blocks, with the addresses, data dir and binary of this dev.
esc() { printf '%s' "$1" | sed 's/[|&\\]/\\&/g'; }
tour=$(awk '/^## A five-minute tour/ {on = 1; next} on && /^## / {on = 0} on' "$readme" |
  awk '/^```sh/ {b = 1; next} /^```/ {b = 0; next} b' |
  sed -e "s|127\.0\.0\.1:8080|$(esc "$http")|g" -e "s|127\.0\.0\.1:8090|$(esc "$sim")|g" \
    -e "s|\([ (]\)data/|\1$(esc "$data")/|g" -e "s|bin/recordsync|$(esc "$bin")|g")
[[ $(grep -c 'curl' <<<"$tour") -ge 15 ]] || fail "found too few commands in the tour of $readme"

out=$(mktemp)
trap 'rm -f "$out"' EXIT
echo "tour: running the $(grep -c '^curl\|^(' <<<"$tour") commands of $readme's tour against http://$http" >&2
if ! bash -euo pipefail -c "$tour" >"$out" 2>&1; then
  cat "$out" >&2
  fail "a command of the tour failed"
fi

# What the tour says happened.
key=$(sed -n 's/.*"\(sync-[0-9a-f]*\)".*/\1/p' "$data/api-keys.json")
admin=$(sed -n 's/.*"\(admin-[0-9a-f]*\)".*/\1/p' "$data/api-keys.json")
get() { curl -s "http://$http$1" -H "X-API-Key: $2"; }

expect() { # what, text, pattern
  grep -q -- "$3" <<<"$2" || {
    cat "$out" >&2
    fail "$1: expected $3 in $2"
  }
}
# soon: like expect, but what runs is a command, tried again for up to 30 s
# (a status that is on its way).
soon() { # what, pattern, command...
  local what=$1 pattern=$2 got=""
  shift 2
  for _ in $(seq 150); do
    got=$("$@")
    grep -q -- "$pattern" <<<"$got" && return 0
    sleep 0.2
  done
  expect "$what" "$got" "$pattern"
}
expect "tour output: the duplicate delete" "$(cat "$out")" '"event_id":"delete-c-125","status":"accepted","duplicate":true'
expect "tour output: the dead letter listed by recordsync dlq" "$(cat "$out")" 'c-300 .*NETWORK'
expect "tour output: the rule change" "$(cat "$out")" '"revision":2,"rules"'
expect "tour output: the preview's skip" "$(cat "$out")" '"decision":{"action":"skip","rule_id":"no-test-addresses"'
expect "tour output: the preview's payload" "$(cat "$out")" '"identity":"mary@example.com"'

token=$(sed -n 's/.*"token": "\(.*\)".*/\1/p' "$data/crmsim/credentials.json")
expect "c-123 in the emulated HubSpot" \
  "$(curl -s "http://$sim/hubspot/crm/v3/objects/contacts/ada@example.com?idProperty=email" -H "Authorization: Bearer $token")" '"lastname":"Lovelace"'
soon "c-123" '"hubspot":{"state":"synced"' get /v1/sync/status/c-123 "$key"
soon "c-124 in HubSpot" '"hubspot":{"state":"synced","event_id":"[^"]*","operation":"update"' get /v1/sync/status/c-124 "$key"
soon "c-124 in Salesforce" '"salesforce":{"state":"synced","event_id":"[^"]*","operation":"update"' get /v1/sync/status/c-124 "$key"
soon "c-125" '"hubspot":{"state":"synced","event_id":"delete-c-125","operation":"delete"' get /v1/sync/status/c-125 "$key"
soon "c-300 after its retry" '"hubspot":{"state":"synced"' get /v1/sync/status/c-300 "$key"
expect "the rule set" "$(get /v1/sync/rules "$admin")" '"revision":2,.*"id":"no-test-addresses"'
expect "HubSpot's config" "$(get /v1/sync/config "$admin")" '"target":"hubspot","batch_size":50,"flush_interval":"100ms"'
echo "tour: every command ran, and every outcome checked" >&2

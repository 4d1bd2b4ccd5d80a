#!/usr/bin/env bash
# The whole flow, as `make run-all` runs it:
#   root (kept if present) -> CA -> client enrolls (token) -> server token ->
#   server (enrolls; requires client certificates) -> client memo, both sides
#   authenticated by certificate.
# The CA and the server are stopped on exit, failure or Ctrl-C; the exit status
# is the client's. Readiness is polled, never assumed after a fixed sleep.
# Tokens reach the programs in PKI_TOKEN, set for that one command only: an
# argument such as `--token …` would sit in /proc/<pid>/cmdline, where every
# local user can read it, while a process's environment is its owner's only.
set -uo pipefail

CERTS=${CERTS:-certs}
CA_LISTEN=${CA_LISTEN:-127.0.0.1:8443}
SERVER_LISTEN=${SERVER_LISTEN:-127.0.0.1:9443}
SERVER_NAME=${SERVER_NAME:-app.pki.test}
CLIENT_NAME=${CLIENT_NAME:-client1.pki.test}
REQUEST=${REQUEST:-memo}
BIN=${BIN:-target/debug}
# The offline root: its key lives outside certs/ (which the online CA and
# the parties use), encrypted with a passphrase. A real operator keeps this
# directory on another machine and types the passphrase; the demo makes a
# random one, in a file of mode 0600 next to the key.
ROOT_DIR=${ROOT_DIR:-${CERTS%/}-root}

export PKI_CERTS_DIR="$CERTS"
pids=()
seds=()
started=$(date +%s%N)

# Every line on stderr starts with the program it came from: [ca], [server],
# [client], or [run-all] for the script's own. Each program writes a log
# line with one write, and each prefixer is a line-buffered `sed -u` that
# writes a prefixed line with one write too, so lines from the three
# programs can only interleave between lines, never inside one.
declare -A log
open_prefix() {
  local fd
  exec {fd}> >(sed -u "s/^/$(printf '%-9s' "[$1]")/" >&2)
  seds+=($!)
  log[$1]=$fd
}
open_prefix ca
open_prefix server
open_prefix client
say() { printf '[run-all] %s\n' "$*" >&2; }
step() { say "== $*"; }

stop_all() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
  pids=()
  # Close the prefixers and let them print what they still hold.
  for name in "${!log[@]}"; do exec {log[$name]}>&-; done
  for pid in "${seds[@]}"; do wait "$pid" 2>/dev/null; done
  seds=()
}
trap 'stop_all' EXIT
trap 'say "interrupted"; exit 130' INT TERM

# fail WHAT: stops everything, then ends with a one-line summary of what
# failed (the programs' own lines above say why).
fail() {
  stop_all
  say "FAILED — $*"
  exit 1
}

# wait_for_port NAME PID HOST:PORT: polls until the port accepts connections,
# failing early if the process died; at most 60 s.
wait_for_port() {
  local name=$1 pid=$2 host=${3%:*} port=${3##*:}
  for _ in $(seq 600); do
    if ! kill -0 "$pid" 2>/dev/null; then
      say "$name exited before it was ready"
      return 1
    fi
    if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  say "$name was not ready on $host:$port within 60 s"
  return 1
}

# request LOGFILE: `pki-client request` as configured; the response on
# stdout, the narration both shown (prefixed) and kept in LOGFILE; the
# client's exit status. --no-ticket: every run shows the whole
# registration (steps 3 to 8), not a resumption from a kept ticket.
request() {
  local logfile=$1
  { "$BIN/pki-client" --server "$SERVER_LISTEN" --name "$SERVER_NAME" --ca "$CERTS/ca.pem" \
      --ca-url "https://$CA_LISTEN" --cert "$CERTS/client.pem" --key "$CERTS/client.key" \
      --no-ticket request "$REQUEST" 2>&1 1>&3 3>&- | tee "$logfile" >&"${log[client]}"
    return "${PIPESTATUS[0]}"; } 3>&1
}

step "CA root (key offline in $ROOT_DIR/, encrypted) and intermediate in $CERTS/ (created if missing, kept otherwise)"
mkdir -p "$ROOT_DIR" && chmod 700 "$ROOT_DIR" || fail "cannot create $ROOT_DIR"
if [ ! -s "$ROOT_DIR/passphrase" ]; then
  (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$ROOT_DIR/passphrase") \
    || fail "cannot write $ROOT_DIR/passphrase"
fi
"$BIN/pki-ca" init --root-dir "$ROOT_DIR" --root-passphrase-file "$ROOT_DIR/passphrase" \
  >&"${log[ca]}" 2>&1 || fail "pki-ca init"

step "starting the CA on https://$CA_LISTEN"
"$BIN/pki-ca" serve --listen "$CA_LISTEN" >&"${log[ca]}" 2>&1 &
pids+=($!)
wait_for_port pki-ca "${pids[0]}" "$CA_LISTEN" || fail "the CA did not start"

step "client enrollment (not in the lab): certificate for $CLIENT_NAME, kept if still good, else enrolled with a client token"
CLIENT_TOKEN=$("$BIN/pki-ca" token --name "$CLIENT_NAME" --profile client 2>&"${log[ca]}") ||
  fail "pki-ca token (client)"
enrolled=$(PKI_TOKEN="$CLIENT_TOKEN" "$BIN/pki-client" --ca "$CERTS/ca.pem" --ca-url "https://$CA_LISTEN" \
  --cert "$CERTS/client.pem" --key "$CERTS/client.key" \
  enroll --as "$CLIENT_NAME" 2>&"${log[client]}") || fail "pki-client enroll"
printf '%s\n' "$enrolled" >&"${log[client]}"

step "minting a one-time server token for $SERVER_NAME"
TOKEN=$("$BIN/pki-ca" token --name "$SERVER_NAME" --profile server 2>&"${log[ca]}") ||
  fail "pki-ca token (server)"

step "starting the server on $SERVER_LISTEN (phase 1: reuse or enroll)"
PKI_TOKEN="$TOKEN" "$BIN/pki-server" --listen "$SERVER_LISTEN" --name "$SERVER_NAME" \
  --ca-url "https://$CA_LISTEN" --require-client-cert >&"${log[server]}" 2>&1 &
pids+=($!)
wait_for_port pki-server "${pids[1]}" "$SERVER_LISTEN" || fail "the server did not start"

step "client: phase 2 (TLS, steps 3 to 6) and phase 3 (steps 7 and 8), request '$REQUEST'"
narration=$(mktemp)
trap 'stop_all; rm -f "$narration"' EXIT
memo=$(request "$narration")
status=$?
[ $status -eq 0 ] && printf '%s\n' "$memo"

# With REVOKE=<reason>: revoke the server's certificate while everything
# runs, and show the client refusing the server on its next connection.
revoked=""
if [ -n "${REVOKE:-}" ] && [ $status -eq 0 ]; then
  step "revoking the server's certificate ($REVOKE) and waiting for the CA to publish the CRL"
  "$BIN/pki-ca" revoke --cert "$CERTS/server.pem" --reason "$REVOKE" --ca-url "https://$CA_LISTEN" \
    >&"${log[ca]}" 2>&1 || fail "pki-ca revoke"
  step "client again: it must now refuse the server"
  again_log=$(mktemp)
  request "$again_log" >/dev/null
  again=$?
  if [ $again -ne 0 ] && grep -q 'server certificate revoked' "$again_log"; then
    say "the client refused the revoked server, as it must; the next run re-enrolls the server"
    revoked=", then refused it once revoked ($REVOKE)"
  else
    say "the client did not refuse the revoked server"
    status=1
  fi
  rm -f "$again_log"
fi
stop_all

# The one-line summary, last: the serials as the client saw them.
server_serial=$(sed -n 's/.*TLS 1.3 to .*(serial \([^,]*\),.*/\1/p' "$narration" | head -n1)
client_serial=$(sed -n 's/.*presenting client certificate \([^ ]*\) .*/\1/p' "$narration" | head -n1)
elapsed=$((($(date +%s%N) - started) / 1000000))
took=$(printf '%d.%d s' $((elapsed / 1000)) $((elapsed % 1000 / 100)))
if [ $status -eq 0 ]; then
  say "OK — CA on $CA_LISTEN, server $SERVER_NAME (serial ${server_serial:-?}), client $CLIENT_NAME (serial ${client_serial:-?})$revoked — $REQUEST: \"$memo\" in $took"
else
  say "FAILED — pki-client request '$REQUEST' exited $status (its lines above say why) after $took"
fi
exit $status

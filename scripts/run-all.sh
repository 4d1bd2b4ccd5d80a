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

export PKI_CERTS_DIR="$CERTS"
pids=()

stop_all() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
  pids=()
}
trap 'stop_all' EXIT
trap 'echo "run-all: interrupted" >&2; exit 130' INT TERM

# wait_for_port NAME PID HOST:PORT: polls until the port accepts connections,
# failing early if the process died; at most 60 s.
wait_for_port() {
  local name=$1 pid=$2 host=${3%:*} port=${3##*:}
  for _ in $(seq 600); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "run-all: $name exited before it was ready" >&2
      return 1
    fi
    if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "run-all: $name was not ready on $host:$port within 60 s" >&2
  return 1
}

step() { printf '\n== %s\n' "$*" >&2; }

step "CA root in $CERTS/ (created if missing, kept otherwise)"
"$BIN/pki-ca" init >&2 || exit 1

step "starting the CA on https://$CA_LISTEN"
"$BIN/pki-ca" serve --listen "$CA_LISTEN" > >(sed -u 's/^/[ca]     /' >&2) 2>&1 &
pids+=($!)
wait_for_port pki-ca "${pids[0]}" "$CA_LISTEN" || exit 1

step "client certificate for $CLIENT_NAME (kept if still good, else enrolled with a client token)"
CLIENT_TOKEN=$("$BIN/pki-ca" token --name "$CLIENT_NAME" --profile client) || exit 1
PKI_TOKEN="$CLIENT_TOKEN" "$BIN/pki-client" --ca "$CERTS/ca.pem" --ca-url "https://$CA_LISTEN" \
  --cert "$CERTS/client.pem" --key "$CERTS/client.key" \
  enroll --as "$CLIENT_NAME" 2>&1 | sed -u 's/^/[client] /' >&2
[ "${PIPESTATUS[0]}" -eq 0 ] || exit 1

step "minting a one-time server token for $SERVER_NAME"
TOKEN=$("$BIN/pki-ca" token --name "$SERVER_NAME" --profile server) || exit 1

step "starting the server on $SERVER_LISTEN (phase 1: reuse or enroll)"
PKI_TOKEN="$TOKEN" "$BIN/pki-server" --listen "$SERVER_LISTEN" --name "$SERVER_NAME" \
  --ca-url "https://$CA_LISTEN" --require-client-cert \
  > >(sed -u 's/^/[server] /' >&2) 2>&1 &
pids+=($!)
wait_for_port pki-server "${pids[1]}" "$SERVER_LISTEN" || exit 1

step "client: phases 2 and 3, request '$REQUEST'"
"$BIN/pki-client" --server "$SERVER_LISTEN" --name "$SERVER_NAME" --ca "$CERTS/ca.pem" \
  --ca-url "https://$CA_LISTEN" --cert "$CERTS/client.pem" --key "$CERTS/client.key" \
  request "$REQUEST" 2> >(sed -u 's/^/[client] /' >&2)
status=$?

# With REVOKE=<reason>: revoke the server's certificate while everything
# runs, and show the client refusing the server on its next connection.
if [ -n "${REVOKE:-}" ] && [ $status -eq 0 ]; then
  step "revoking the server's certificate ($REVOKE) and waiting for the CA to publish the CRL"
  "$BIN/pki-ca" revoke --cert "$CERTS/server.pem" --reason "$REVOKE" --ca-url "https://$CA_LISTEN" || exit 1
  step "client again: it must now refuse the server"
  out=$("$BIN/pki-client" --server "$SERVER_LISTEN" --name "$SERVER_NAME" --ca "$CERTS/ca.pem" \
    --ca-url "https://$CA_LISTEN" --cert "$CERTS/client.pem" --key "$CERTS/client.key" \
    request "$REQUEST" 2>&1)
  again=$?
  printf '%s\n' "$out" | sed 's/^/[client] /' >&2
  if [ $again -ne 0 ] && printf '%s' "$out" | grep -q 'server certificate revoked'; then
    echo "run-all: the client refused the revoked server, as it must; the next run re-enrolls the server" >&2
    status=0
  else
    echo "run-all: the client did not refuse the revoked server" >&2
    status=1
  fi
fi
sleep 0.1 # let the log pipes flush the last narrated lines
stop_all
exit $status

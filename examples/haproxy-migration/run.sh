#!/usr/bin/env bash
# Runs the example on loopback: HAProxy (TLS terminated there, `accept-proxy` on both frontends) behind
# twinport, which takes port 5000 for both protocols. Ctrl-C (or SIGTERM) stops both.
#
#   ./run.sh
#   curl http://127.0.0.1:5000/        → keystone via HAProxy: http from 127.0.0.1:PORT
#   curl -k https://127.0.0.1:5000/    → keystone via HAProxy: https from 127.0.0.1:PORT
#
# Other ports (for a second copy, or a test): PORT (twinport, 5000), HAPROXY_HTTP_PORT (15000) and
# HAPROXY_HTTPS_PORT (15443). HAProxy reads the last two from its environment; twinport's config has no
# variables, so with other ports run.sh writes a copy of twinport.yaml with only those numbers changed
# to a temporary directory (removed when it stops) and runs that. TWINPORT names the twinport command (default: this checkout's
# bin/twinport, which needs `npm run build` once; an installed `twinport` works too).
set -euo pipefail
cd "$(dirname "$0")"
PORT=${PORT:-5000}
HAPROXY_HTTP_PORT=${HAPROXY_HTTP_PORT:-15000}
HAPROXY_HTTPS_PORT=${HAPROXY_HTTPS_PORT:-15443}
export HAPROXY_HTTP_PORT HAPROXY_HTTPS_PORT
TWINPORT=${TWINPORT:-../../bin/twinport}

[ -f keystone.pem ] || sh ./make-cert.sh
haproxy -c -q -f haproxy.cfg

config=twinport.yaml
tmp=
if [ "$PORT/$HAPROXY_HTTP_PORT/$HAPROXY_HTTPS_PORT" != 5000/15000/15443 ]; then
  tmp=$(mktemp -d)
  sed -e "s/\"127\.0\.0\.1:5000\"/\"127.0.0.1:$PORT\"/" \
    -e "s/\"127\.0\.0\.1:15000\"/\"127.0.0.1:$HAPROXY_HTTP_PORT\"/" \
    -e "s/\"127\.0\.0\.1:15443\"/\"127.0.0.1:$HAPROXY_HTTPS_PORT\"/" twinport.yaml > "$tmp/twinport.yaml"
  config=$tmp/twinport.yaml
  echo "run.sh: twinport.yaml with ports $PORT, $HAPROXY_HTTP_PORT, $HAPROXY_HTTPS_PORT: $config" >&2
fi

haproxy -db -f haproxy.cfg &
haproxy_pid=$!
"$TWINPORT" --config "$config" &
twinport_pid=$!
stop() {
  kill -TERM "$twinport_pid" "$haproxy_pid" 2>/dev/null || true
  wait "$twinport_pid" "$haproxy_pid" 2>/dev/null || true
  [ -z "$tmp" ] || rm -rf "$tmp"
}
trap 'stop; exit 0' INT TERM
# Whichever exits first (a bad config, a port in use) takes the other down with it.
status=0
wait -n "$haproxy_pid" "$twinport_pid" || status=$?
stop
exit "$status"

#!/bin/sh
# What bin/twinport's malloc tuning does for uploads (client→server bulk). With `io_engine: streams` the
# client side reads through Node's default path (a fresh buffer per read); with `libuv` (the default)
# both sides read into the shared buffer and copy into the ChunkPool. Not a scenario of
# the runner (autocannon reports response bytes, not request bytes): twinport pinned to the last CPU in
# front of a Node sink that discards bodies, 8 connections POSTing 1 MiB bodies for 5 s after a 1 s
# warm-up, with and without the tuning, three pairs; CPU and minor faults from /proc/<pid>/stat.
#
#   sh bench/malloc-uploads.sh                     (after npm run build; engine: auto)
#   IO_ENGINE=streams sh bench/malloc-uploads.sh
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d)
last=$(($(nproc) - 1))
trap 'kill $sink 2>/dev/null; rm -rf "$dir"' EXIT
cat > "$dir/sink.mjs" <<'JS'
import http from 'node:http';
const s = http.createServer((q, r) => { q.resume(); q.on('end', () => r.end('ok')); }).listen(0, '127.0.0.1', () => console.log(s.address().port));
JS
cat > "$dir/load.cjs" <<JS
const a = require('$root/node_modules/autocannon');
a({ url: 'http://127.0.0.1:' + process.argv[2] + '/', connections: 8, duration: Number(process.argv[3]), method: 'POST', body: Buffer.alloc(1 << 20, 97) },
  (e, r) => console.log(r.requests.total));
JS
node "$dir/sink.mjs" > "$dir/sink.port" & sink=$!
sleep 0.5
cat > "$dir/tw.yaml" <<YAML
io_engine: ${IO_ENGINE:-auto}
listeners:
  - name: up
    bind: "127.0.0.1:0"
    routes:
      - { match: { protocol: [http, h2c] }, to: sink }
pools:
  sink:
    servers: ["127.0.0.1:$(cat "$dir/sink.port")"]
YAML
measure() { # label, env...
  label=$1; shift
  env "$@" taskset -c "$last" "$root/bin/twinport" --config "$dir/tw.yaml" --log-level info > "$dir/tw.log" & tw=$!
  while ! grep -q '"listening"' "$dir/tw.log" 2>/dev/null; do sleep 0.1; done
  port=$(sed -n 's/.*"address":"127.0.0.1:\([0-9]*\)".*/\1/p' "$dir/tw.log" | head -1)
  node "$dir/load.cjs" "$port" 1 > /dev/null
  before=$(awk '{print $14 + $15, $10}' /proc/$tw/stat)
  n=$(node "$dir/load.cjs" "$port" 5)
  after=$(awk '{print $14 + $15, $10}' /proc/$tw/stat)
  kill $tw; wait $tw 2>/dev/null || true
  echo "$label $before $after $n" | awk -v tck="$(getconf CLK_TCK)" \
    '{ printf "%-15s %5d uploads  %6.0f µs CPU per 1 MiB upload  %6.1f minor faults per upload\n", $1, $6, ($4 - $2) * 1e6 / tck / $6, ($5 - $3) / $6 }'
}
for i in 1 2 3; do
  measure tuned
  measure glibc-defaults TWINPORT_MALLOC_TUNING=0
done

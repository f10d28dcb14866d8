#!/usr/bin/env node
// Records the first flight of a real client: the bytes it sends before it has heard anything back.
// Used to make the fixtures in test/fixtures/ (see test/fixtures/README.md and capture.sh there).
//
//   node scripts/record-first-flight.mjs --out FILE [--upstream HOST:PORT] [--conn N]
//                                        [--quiet-ms MS] [--grace-ms MS] [--port PORT]
//
// Listens on 127.0.0.1 (port 0 unless --port) and prints the port alone on the first line of stdout, so a
// shell script can read it (`read -r PORT < fifo`). Accepts connections until the Nth (`--conn`, default
// 1) is recorded, then exits 0 once that connection ends. Connections before the Nth are relayed to the
// upstream without recording (resumption captures need a full handshake first; without --upstream they
// are closed at once).
//
// What is recorded (the rule the fixtures README cites):
//  - Without --upstream: every byte the client sends until it is quiet for --quiet-ms (default 500) or
//    half-closes. Nothing is ever sent back, so all of it is first flight.
//  - With --upstream: the connection is relayed both ways, but upstream bytes are held back until
//    --grace-ms (default 300) after the client's first byte. The file holds every client byte received
//    before the first upstream byte is delivered to the client. A client cannot react to bytes it has not
//    received, so this is exactly its first flight: the ClientHello, plus whatever it sends without
//    waiting (TLS 1.3 0-RTT early data records, RFC 8446 §2.3; a pipelined request), as long as it
//    arrives within the grace window. The hold only delays the handshake; it changes no byte.
import { createServer, connect } from 'node:net';
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values: opts } = parseArgs({
  options: {
    out: { type: 'string' },
    upstream: { type: 'string' },
    conn: { type: 'string', default: '1' },
    'quiet-ms': { type: 'string', default: '500' },
    'grace-ms': { type: 'string', default: '300' },
    port: { type: 'string', default: '0' },
  },
  strict: true,
});

function fail(message) {
  process.stderr.write(`record-first-flight: ${message}\n`);
  process.exit(2);
}

function intOption(name, min) {
  const n = Number(opts[name]);
  if (!Number.isInteger(n) || n < min) fail(`--${name} must be an integer >= ${min}, got ${opts[name]}`);
  return n;
}

if (opts.out === undefined) fail('--out FILE is required');
const target = intOption('conn', 1);
const quietMs = intOption('quiet-ms', 1);
const graceMs = intOption('grace-ms', 0);
const port = intOption('port', 0);

let upstream;
if (opts.upstream !== undefined) {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(opts.upstream);
  if (m === null) fail(`--upstream must be HOST:PORT, got ${opts.upstream}`);
  upstream = { host: m[1] ?? m[2], port: Number(m[3]) };
}

let seen = 0;
const server = createServer({ allowHalfOpen: true, noDelay: true }, (client) => {
  seen += 1;
  const recording = seen === target;
  if (recording) server.close(); // the Nth connection is the last one we take
  if (upstream === undefined) {
    if (recording) recordAlone(client);
    else client.destroy();
  } else {
    relay(client, recording);
  }
});

function save(chunks) {
  const bytes = Buffer.concat(chunks);
  writeFileSync(opts.out, bytes);
  process.stderr.write(`record-first-flight: wrote ${bytes.length} bytes to ${opts.out}\n`);
}

function recordAlone(client) {
  const chunks = [];
  let timer;
  let done = false;
  const finish = () => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    save(chunks);
    client.destroy();
  };
  client.on('data', (chunk) => {
    chunks.push(chunk);
    clearTimeout(timer);
    timer = setTimeout(finish, quietMs);
  });
  client.on('end', finish);
  client.on('close', finish);
  client.on('error', () => {});
  timer = setTimeout(finish, quietMs);
}

function relay(client, recording) {
  const server = connect({ ...upstream, allowHalfOpen: true, noDelay: true });
  const chunks = [];
  const held = [];
  let recordingOpen = recording;
  let releaseAt; // set at the client's first byte
  let released = !recording;
  let serverEnded = false;
  let saved = false;

  const stopRecording = () => {
    if (!recordingOpen) return;
    recordingOpen = false;
    save(chunks);
    saved = true;
  };
  const release = () => {
    if (released) return;
    released = true;
    if (held.length > 0) stopRecording();
    for (const chunk of held) client.write(chunk);
    held.length = 0;
    if (serverEnded) client.end();
  };

  client.on('data', (chunk) => {
    if (recordingOpen) chunks.push(chunk);
    if (releaseAt === undefined && recording) {
      releaseAt = setTimeout(release, graceMs);
    }
    server.write(chunk);
  });
  server.on('data', (chunk) => {
    if (released) {
      stopRecording();
      client.write(chunk);
    } else {
      held.push(chunk);
    }
  });
  client.on('end', () => server.end());
  server.on('end', () => {
    serverEnded = true;
    if (released) client.end();
  });
  const teardown = () => {
    clearTimeout(releaseAt);
    client.destroy();
    server.destroy();
    if (recording) {
      if (!saved) stopRecording();
      process.exitCode = 0;
    }
  };
  client.on('close', teardown);
  server.on('close', teardown);
  client.on('error', () => {});
  server.on('error', (e) => process.stderr.write(`record-first-flight: upstream: ${e.message}\n`));
}

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`${server.address().port}\n`);
});

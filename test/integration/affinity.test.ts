// TLS affinity against real TLS servers (docs/affinity.md): three backends that each keep their own
// sessions and ticket keys behind one twinport port. With `affinity: tls` every resumption lands on the
// server that holds the session ("Reused" / isSessionReused()); the same backends behind a pool without
// affinity (shown in the same test) send some resumptions elsewhere, where they become full handshakes.
//
// TLS 1.3 tickets are encrypted, so the first resumption must reach the issuing server through the
// fallback balance (`hash` on `source-ip`, client from one address); later clients come from other
// loopback addresses (127.0.0.N), which that balance would spread over the servers.
import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net, { type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { generate } from 'selfsigned';
import { listenServer, startProxy, type RunningProxy } from '../helpers/proxy-harness.js';
import { testWithTools } from '../helpers/tools.js';

interface Pems {
  readonly key: string;
  readonly cert: string;
}

let pems: Promise<Pems> | undefined;
function certificate(): Promise<Pems> {
  pems ??= generate([{ name: 'commonName', value: 'localhost' }], { keyType: 'ec', algorithm: 'sha256' }).then((p) => ({
    key: p.private,
    cert: p.cert,
  }));
  return pems;
}

function tempDir(t: ExecutionContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'twinport-affinity-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** An `openssl s_server` on a port it picked itself (ACCEPT line), killed in teardown. */
async function opensslServer(t: ExecutionContext, dir: string, args: string[]): Promise<number> {
  const { key, cert } = await certificate();
  writeFileSync(join(dir, 'key.pem'), key);
  writeFileSync(join(dir, 'cert.pem'), cert);
  const child = spawn(
    'openssl',
    ['s_server', '-accept', '127.0.0.1:0', '-cert', join(dir, 'cert.pem'), '-key', join(dir, 'key.pem'), ...args],
    { stdio: ['pipe', 'pipe', 'ignore'] },
  );
  const kill = (): void => {
    child.kill();
  };
  process.once('exit', kill);
  t.teardown(() => {
    process.off('exit', kill);
    kill();
  });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString('latin1');
      const m = /ACCEPT 127\.0\.0\.1:(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.on('exit', (code) => reject(new Error(`openssl s_server exited with ${code}: ${out}`)));
  });
  child.stdout.resume();
  return port;
}

/** Runs `openssl s_client`, returns the "New, …" / "Reused, …" lines it printed (one or two per connection). */
async function sClient(port: number, args: string[], input = ''): Promise<string[]> {
  const child = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, ...args], { stdio: ['pipe', 'pipe', 'pipe'], timeout: 30_000 });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString('latin1')));
  child.stderr.resume();
  child.stdin.end(input);
  await once(child, 'close');
  return out.split('\n').filter((l) => /^(New|Reused), /.test(l));
}

/** A relay whose connections to twinport come from `localAddress`, so `hash_key: source-ip` sees it. */
async function sourceRelay(t: ExecutionContext, targetPort: number, localAddress: string): Promise<number> {
  const sockets = new Set<Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    const upstream = net.connect({ host: '127.0.0.1', port: targetPort, localAddress, allowHalfOpen: true });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
      s.on('close', () => sockets.delete(s));
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  const port = await listenServer(server);
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return port;
}

interface PoolOptions {
  readonly affinity: boolean;
  readonly balance: 'round-robin' | 'hash';
}

async function proxyFor(t: ExecutionContext, ports: readonly number[], o: PoolOptions): Promise<RunningProxy> {
  const yaml = `
listeners:
  - name: front
    bind: "127.0.0.1:0"
    timeouts: { peek: 5s, connect: 2s, idle: 30s }
    routes:
      - match: { protocol: tls }
        to: backends
pools:
  backends:
    balance: ${o.balance}
${o.balance === 'hash' ? '    hash_key: source-ip\n' : ''}${o.affinity ? '    affinity: tls\n' : ''}    servers: [${ports.map((p) => `"127.0.0.1:${p}"`).join(', ')}]
`;
  const proxy = await startProxy(yaml);
  t.teardown(() => proxy.stop());
  return proxy;
}

/** Close lines of the first n connections of a proxy (ids count from 1 per runtime). */
async function closes(proxy: RunningProxy, n: number): Promise<Record<string, unknown>[]> {
  return Promise.all(Array.from({ length: n }, (_, i) => proxy.logs.waitForClose((l) => l['conn'] === i + 1)));
}

function stats(proxy: RunningProxy): Record<string, number> {
  const s = proxy.runtime.affinityStats()['backends'];
  if (s === undefined) throw new Error('no affinity stats for pool backends');
  return { ...s };
}

testWithTools({ openssl: 'openssl' }, 'TLS 1.2 session IDs (s_server -no_ticket): every s_client -reconnect is Reused with affinity, not without', async (t) => {
  const ports = await Promise.all([0, 1, 2].map(() => opensslServer(t, tempDir(t), ['-tls1_2', '-no_ticket', '-www'])));
  const sticky = await proxyFor(t, ports, { affinity: true, balance: 'round-robin' });
  const spread = await proxyFor(t, ports, { affinity: false, balance: 'round-robin' });

  // The client offers TLS 1.3 and 1.2; the servers choose 1.2 and assign session IDs.
  const withAffinity = await sClient(sticky.port(), ['-reconnect']);
  t.is(withAffinity.length, 6, withAffinity.join('\n'));
  t.regex(withAffinity[0]!, /^New, TLSv1\.2/);
  for (const line of withAffinity.slice(1)) t.regex(line, /^Reused, TLSv1\.2/);
  const lines = await closes(sticky, 6);
  t.deepEqual(
    lines.map((l) => l['affinity']),
    [undefined, 'sid', 'sid', 'sid', 'sid', 'sid'],
  );
  t.is(new Set(lines.map((l) => l['server'])).size, 1, 'all on the server that holds the session');
  // The first hello's legacy ID (random: the client also offers 1.3) is looked up and misses.
  t.like(stats(sticky), { learned: 1, hit: 5, miss: 1, stale: 0, entries: 1 });

  const without = await sClient(spread.port(), ['-reconnect']);
  t.is(without.length, 6, without.join('\n'));
  t.true(
    without.slice(1).some((l) => l.startsWith('New, ')),
    `round-robin over three servers sends reconnects elsewhere:\n${without.join('\n')}`,
  );
});

testWithTools({ openssl: 'openssl' }, 'TLS 1.2 tickets (distinct keys per s_server): every s_client -reconnect is Reused, routed by the ticket key name', async (t) => {
  const ports = await Promise.all([0, 1, 2].map(() => opensslServer(t, tempDir(t), ['-tls1_2', '-www'])));
  const sticky = await proxyFor(t, ports, { affinity: true, balance: 'round-robin' });
  const spread = await proxyFor(t, ports, { affinity: false, balance: 'round-robin' });

  const withAffinity = await sClient(sticky.port(), ['-reconnect', '-tls1_2']);
  t.is(withAffinity.length, 6, withAffinity.join('\n'));
  t.regex(withAffinity[0]!, /^New, TLSv1\.2/);
  for (const line of withAffinity.slice(1)) t.regex(line, /^Reused, TLSv1\.2/);
  // Key names come first in the lookup: the ticket, not the session ID, routed every reconnect.
  t.deepEqual(
    (await closes(sticky, 6)).map((l) => l['affinity']),
    [undefined, 'tkt', 'tkt', 'tkt', 'tkt', 'tkt'],
  );
  t.like(stats(sticky), { hit: 5, miss: 0 });

  const without = await sClient(spread.port(), ['-reconnect', '-tls1_2']);
  t.true(without.slice(1).some((l) => l.startsWith('New, ')), without.join('\n'));
});

/** Resumes from 127.0.0.2 … 127.0.0.(n+1); returns how many were resumed. */
async function resumeFromSources(
  t: ExecutionContext,
  n: number,
  connectFrom: (localAddress: string) => Promise<boolean>,
): Promise<boolean[]> {
  const out: boolean[] = [];
  for (let i = 2; i < n + 2; i++) out.push(await connectFrom(`127.0.0.${i}`));
  t.log(`resumed: ${out.map((r) => (r ? 'R' : 'N')).join('')}`);
  return out;
}

testWithTools({ openssl: 'openssl' }, 'TLS 1.3 PSK (s_server -tls1_3, -sess_out/-sess_in): learned from the first accepted resumption, then Reused from every source', async (t) => {
  const dir = tempDir(t);
  const ports = await Promise.all([0, 1, 2].map(() => opensslServer(t, tempDir(t), ['-tls1_3', '-www'])));
  const sticky = await proxyFor(t, ports, { affinity: true, balance: 'hash' });
  const spread = await proxyFor(t, ports, { affinity: false, balance: 'hash' });
  const sess = join(dir, 'tls13.sess');
  const get = 'GET / HTTP/1.0\r\n\r\n';
  // -ign_eof: stay until s_server -www closes, so the NewSessionTicket (sent after the handshake) is read.
  const client = ['-tls1_3', '-ign_eof'];

  const home = await sourceRelay(t, sticky.port(), '127.0.0.1');
  t.regex((await sClient(home, [...client, '-sess_out', sess], get))[0] ?? '', /^New, TLSv1\.3/);
  // The ticket went out encrypted: nothing learned, and the random legacy session ID was not learned either.
  t.like(stats(sticky), { learned: 0, entries: 0 });
  // First resumption: the fallback (hash of the same source address) lands it on the issuing server.
  t.regex((await sClient(home, [...client, '-sess_in', sess], get))[0] ?? '', /^Reused, TLSv1\.3/);
  t.like(stats(sticky), { learned: 1, entries: 1 });

  const sources = 12;
  const sticky13 = await resumeFromSources(t, sources, async (from) => {
    const relay = await sourceRelay(t, sticky.port(), from);
    return ((await sClient(relay, [...client, '-sess_in', sess], get))[0] ?? '').startsWith('Reused, TLSv1.3');
  });
  t.deepEqual(sticky13, Array(sources).fill(true));
  t.like(stats(sticky), { hit: sources, learned: 1 });
  const lines = await closes(sticky, sources + 2);
  t.true(lines.slice(2).every((l) => l['affinity'] === 'tkt'));

  // Without affinity the same sources spread over the three servers (Maglev on the address): with 12
  // sources, all landing on the issuing server has probability (1/3)^12.
  const spread13 = await resumeFromSources(t, sources, async (from) => {
    const relay = await sourceRelay(t, spread.port(), from);
    return ((await sClient(relay, [...client, '-sess_in', sess], get))[0] ?? '').startsWith('Reused, TLSv1.3');
  });
  t.true(spread13.includes(false));
});

// ── node:tls servers with distinct ticketKeys ───────────────────────────────────────────────────────

async function nodeServers(t: ExecutionContext, maxVersion: tls.SecureVersion): Promise<number[]> {
  const { key, cert } = await certificate();
  return Promise.all(
    [0, 1, 2].map(async (i) => {
      const sockets = new Set<Socket>();
      // 48 random bytes: key name (16) | HMAC key (16) | AES key (16); distinct per server.
      const server = tls.createServer({ key, cert, maxVersion, ticketKeys: randomBytes(48) }, (s) => {
        s.on('error', () => {});
        s.end(`server ${i}\n`);
      });
      server.on('connection', (s: Socket) => {
        sockets.add(s);
        s.on('close', () => sockets.delete(s));
      });
      const port = await listenServer(server);
      t.teardown(() => {
        for (const s of sockets) s.destroy();
        server.close();
      });
      return port;
    }),
  );
}

interface NodeResult {
  readonly reused: boolean;
  readonly session?: Buffer;
}

/**
 * One TLS connection from `localAddress`; waits for the server's reply and close. Resolves with
 * whether the session was resumed and the last session the client received (its ticket).
 */
function nodeConnect(port: number, localAddress: string, session?: Buffer): Promise<NodeResult> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port, localAddress });
    const c = tls.connect({ socket, rejectUnauthorized: false, ...(session === undefined ? {} : { session }) });
    let latest: Buffer | undefined;
    let reused = false;
    c.on('session', (s: Buffer) => (latest = s));
    c.on('secureConnect', () => (reused = c.isSessionReused()));
    c.on('error', reject);
    c.resume();
    c.on('end', () => c.end());
    c.on('close', () => resolve(latest === undefined ? { reused } : { reused, session: latest }));
  });
}

test('node tls, TLS 1.2 tickets in the clear: learned from the first handshake; every resumption reused with affinity', async (t) => {
  const ports = await nodeServers(t, 'TLSv1.2');
  const sticky = await proxyFor(t, ports, { affinity: true, balance: 'round-robin' });
  const spread = await proxyFor(t, ports, { affinity: false, balance: 'round-robin' });

  const first = await nodeConnect(sticky.port(), '127.0.0.1');
  t.false(first.reused);
  t.truthy(first.session);
  t.true(stats(sticky)['learned']! >= 1, 'the NewSessionTicket was read in the clear');
  for (let i = 0; i < 5; i++) t.true((await nodeConnect(sticky.port(), '127.0.0.1', first.session)).reused, `resumption ${i + 1}`);
  t.like(stats(sticky), { hit: 5 });

  const base = await nodeConnect(spread.port(), '127.0.0.1');
  const spreadResults: boolean[] = [];
  for (let i = 0; i < 5; i++) spreadResults.push((await nodeConnect(spread.port(), '127.0.0.1', base.session)).reused);
  t.true(spreadResults.includes(false));
});

test('node tls, TLS 1.3 PSK: the first accepted resumption teaches the key name; later clients from any source are reused', async (t) => {
  const ports = await nodeServers(t, 'TLSv1.3');
  const sticky = await proxyFor(t, ports, { affinity: true, balance: 'hash' });
  const spread = await proxyFor(t, ports, { affinity: false, balance: 'hash' });

  const first = await nodeConnect(sticky.port(), '127.0.0.1');
  t.false(first.reused);
  t.truthy(first.session);
  t.like(stats(sticky), { learned: 0, entries: 0 });
  t.true((await nodeConnect(sticky.port(), '127.0.0.1', first.session)).reused);
  t.like(stats(sticky), { learned: 1 });

  const sources = 12;
  const sticky13 = await resumeFromSources(t, sources, async (from) => (await nodeConnect(sticky.port(), from, first.session)).reused);
  t.deepEqual(sticky13, Array(sources).fill(true));

  const base = await nodeConnect(spread.port(), '127.0.0.1');
  t.true((await nodeConnect(spread.port(), '127.0.0.1', base.session)).reused);
  const spread13 = await resumeFromSources(t, sources, async (from) => (await nodeConnect(spread.port(), from, base.session)).reused);
  t.true(spread13.includes(false));
});

test('fresh TLS 1.3 handshakes (random 32-byte legacy session IDs) never grow the table', async (t) => {
  const ports = await nodeServers(t, 'TLSv1.3');
  const sticky = await proxyFor(t, ports, { affinity: true, balance: 'round-robin' });
  const n = 10;
  for (let i = 0; i < n; i++) t.false((await nodeConnect(sticky.port(), '127.0.0.1')).reused);
  // Node's client offers 1.3 and 1.2, so its random legacy ID is looked up (it might be a 1.2 session)
  // and misses; the 1.3 ServerHello only echoes it, so nothing is learned.
  t.like(stats(sticky), { learned: 0, entries: 0, miss: n, hit: 0 });
});

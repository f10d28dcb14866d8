// Inherited listening sockets (src/proxy/listen-fds.ts): the LISTEN_* contract of sd_listen_fds(3), the
// address read from /proc, and which listener takes which socket. The real systemd-socket-activate runs in
// test/integration/socket-activation.test.ts.
import test from 'ava';
import net, { type AddressInfo } from 'node:net';
import { parseConfigText } from '../../src/config/load.js';
import { describeListenFds, matchListenFds, takeListenFds, takeListenFdsFor } from '../../src/proxy/listen-fds.js';

const config = (binds: string[]) =>
  parseConfigText(
    `listeners:\n${binds.map((b, i) => `  - name: l${i}\n    bind: "${b}"\n    routes: [{ match: { protocol: http }, to: p }]\n`).join('')}pools:\n  p:\n    servers: ["127.0.0.1:1"]\n`,
    'lfds.yaml',
  );

test('LISTEN_* are for the process LISTEN_PID names, from fd 3 on, names defaulting to "unknown"; read once and removed', (t) => {
  const env: NodeJS.ProcessEnv = { LISTEN_PID: '42', LISTEN_FDS: '3', LISTEN_FDNAMES: 'web::api', OTHER: 'x' };
  t.deepEqual(takeListenFds(env, 42), [
    { fd: 3, name: 'web' },
    { fd: 4, name: 'unknown' },
    { fd: 5, name: 'api' },
  ]);
  t.deepEqual(env, { OTHER: 'x' });
  const forOther: NodeJS.ProcessEnv = { LISTEN_PID: '41', LISTEN_FDS: '1' };
  t.is(takeListenFds(forOther, 42), undefined);
  t.deepEqual(forOther, {}, 'removed even when meant for another process, so no child takes them');
  t.is(takeListenFds({}, 42), undefined);
  t.is(takeListenFds({ LISTEN_PID: '42', LISTEN_FDS: '0' }, 42), undefined);
});

test('the bound address of a descriptor is read from /proc, IPv4 and IPv6', async (t) => {
  const v4 = net.createServer();
  await new Promise<void>((r) => v4.listen(0, '127.0.0.1', () => r()));
  const v6 = net.createServer();
  const hasV6 = await new Promise<boolean>((r) => {
    v6.once('error', () => r(false));
    v6.listen(0, '::1', () => r(true));
  });
  try {
    const fd = (s: net.Server): number => (s as unknown as { _handle: { fd: number } })._handle.fd;
    const [a, b] = describeListenFds([
      { fd: fd(v4), name: 'four' },
      { fd: 0, name: 'stdin' },
    ]);
    t.deepEqual(a, { fd: fd(v4), name: 'four', address: { host: '127.0.0.1', port: (v4.address() as AddressInfo).port } });
    t.deepEqual(b, { fd: 0, name: 'stdin' }, 'not a listening TCP socket: no address');
    if (hasV6) {
      const [c] = describeListenFds([{ fd: fd(v6), name: 'six' }]);
      t.deepEqual(c?.address, { host: '0:0:0:0:0:0:0:1', port: (v6.address() as AddressInfo).port });
    }
  } finally {
    v4.close();
    v6.close();
  }
});

test('fd:NAME takes the socket of that name, host:port the socket bound there (IPv6 compared as bytes)', (t) => {
  const c = config(['fd:web', '[::1]:8443', '127.0.0.1:8080']);
  const m = matchListenFds(
    c.listeners,
    [
      { fd: 3, name: 'x', address: { host: '127.0.0.1', port: 8080 } },
      { fd: 4, name: 'web', address: { host: '0.0.0.0', port: 80 } },
      { fd: 5, name: 'unknown', address: { host: '0:0:0:0:0:0:0:1', port: 8443 } },
    ],
    true,
  );
  t.deepEqual([...m].map(([bind, s]) => [bind, s.fd]), [
    ['fd:web', 4],
    ['[::1]:8443', 5],
    ['127.0.0.1:8080', 3],
  ]);
});

test('unmatched binds and sockets, and an ambiguous name, are one error naming both sides', (t) => {
  const c = config(['fd:web', '127.0.0.1:8080', 'localhost:9000']);
  const e = t.throws(() =>
    matchListenFds(
      c.listeners,
      [
        { fd: 3, name: 'web', address: { host: '127.0.0.1', port: 1 } },
        { fd: 4, name: 'web', address: { host: '127.0.0.1', port: 2 } },
        { fd: 5, name: 'admin' },
      ],
      true,
    ),
  ) as Error & { code: string };
  t.is(e.code, 'TWP_ERR_LISTEN_FDS');
  t.regex(e.message, /listener "l0" bind "fd:web" matches 2 inherited sockets: fd 3 "web" \(127\.0\.0\.1:1\), fd 4 "web" \(127\.0\.0\.1:2\)/);
  t.regex(e.message, /listener "l1" bind "127\.0\.0\.1:8080": no inherited socket is bound to that address/);
  t.regex(e.message, /listener "l2" bind "localhost:9000": no inherited socket/);
  t.regex(e.message, /inherited fd 5 "admin" \(not a listening TCP socket\): no listener binds it/);
  t.regex(e.message, /Listeners: "l0" fd:web, "l1" 127\.0\.0\.1:8080, "l2" localhost:9000$/);
});

test('not strict (a reload adding listeners): an address bind without a socket binds itself; fd:NAME must still match', (t) => {
  const c = config(['127.0.0.1:8080', 'fd:web']);
  t.deepEqual([...matchListenFds(c.listeners.slice(0, 1), [], false)], []);
  t.throws(() => matchListenFds(c.listeners.slice(1), [], false), { message: /no inherited socket is named "web"/ });
  t.throws(() => takeListenFdsFor(c.listeners, undefined, true), { message: /"fd:web": no sockets were inherited/ });
  t.deepEqual([...takeListenFdsFor(c.listeners.slice(0, 1), undefined, true)], []);
});

test('config: fd:NAME is a bind; a bad name and two listeners on one name are errors at file:line:col', (t) => {
  const ok = config(['fd:web', 'fd:api']);
  t.deepEqual(ok.listeners[0]!.bind, { text: 'fd:web', host: '', port: 0, fdName: 'web' });
  const err = (binds: string[]): string[] => {
    try {
      config(binds);
      return [];
    } catch (e) {
      return (e as { issues: { path: string; message: string; line: number; col: number }[] }).issues.map((i) => `${i.line}:${i.col} ${i.path}: ${i.message}`);
    }
  };
  t.deepEqual(err(['fd:a:b']), ['3:11 listeners[0].bind: "fd:a:b": NAME must be 1-255 printable ASCII characters without ":" or spaces, as systemd\'s FileDescriptorName= allows']);
  t.deepEqual(err(['fd:web', 'fd:web']), ['6:11 listeners[1].bind: "fd:web" is also listeners[0] bind: one inherited socket serves one listener']);
});

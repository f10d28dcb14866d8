// examples/haproxy-migration as shipped: its script makes the certificate, `haproxy -c` accepts the config
// unedited, and its run.sh starts HAProxy and twinport (the installed launcher) on loopback. curl over
// plaintext and over TLS on twinport's one port both get HAProxy's answer, and that answer (HAProxy's
// `src`, from the PROXY v2 header twinport sent) names the address curl really connected from.
// Only the ports are chosen here, through the environment variables run.sh documents.
import test from 'ava';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { freePort } from '../helpers/proxy-harness.js';
import { testWithTools } from '../helpers/tools.js';

const EXAMPLE = fileURLToPath(new URL('../../../examples/haproxy-migration/', import.meta.url));
const TOOLS = { haproxy: 'haproxy', openssl: 'openssl', curl: 'curl', bash: 'bash' };

/** The environment without anything that would steer the example away from its defaults. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of ['PORT', 'HAPROXY_HTTP_PORT', 'HAPROXY_HTTPS_PORT', 'TWINPORT']) delete env[k];
  return env;
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

function curl(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync('curl', ['-sS', '--max-time', '10', '--interface', '127.0.0.2', ...args], { encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** curl -w '\n%{local_port}' output: the body's first line and the port curl connected from. */
function bodyAndPort(stdout: string): [string, string] {
  const lines = stdout.split('\n');
  return [lines[0] ?? '', lines[lines.length - 1] ?? ''];
}

function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

// One test, in order: the certificate the run needs is the one the first step makes (tests in a file run
// concurrently, and this one deletes and rewrites that file).
testWithTools(TOOLS, 'examples/haproxy-migration as shipped: make-cert.sh, haproxy -c, then run.sh serves http and https on one port; HAProxy sees the real client via PROXY', async (t) => {
  rmSync(`${EXAMPLE}keystone.pem`, { force: true });
  const before = spawnSync('haproxy', ['-c', '-f', 'haproxy.cfg'], { cwd: EXAMPLE, env: cleanEnv(), encoding: 'utf8' });
  t.not(before.status, 0, 'without its certificate the config cannot load: the check can fail');
  const made = spawnSync('sh', ['make-cert.sh'], { cwd: EXAMPLE, encoding: 'utf8' });
  t.is(made.status, 0, made.stderr);
  const pem = readFileSync(`${EXAMPLE}keystone.pem`, 'utf8');
  t.regex(pem, /-----BEGIN CERTIFICATE-----/);
  t.regex(pem, /-----BEGIN PRIVATE KEY-----/);
  const subject = spawnSync('openssl', ['x509', '-noout', '-subject', '-ext', 'subjectAltName', '-in', 'keystone.pem'], { cwd: EXAMPLE, encoding: 'utf8' });
  t.regex(subject.stdout, /CN\s*=\s*keystone\.example/);
  t.regex(subject.stdout, /DNS:keystone\.example, DNS:localhost, IP Address:127\.0\.0\.1/);
  const check = spawnSync('haproxy', ['-c', '-f', 'haproxy.cfg'], { cwd: EXAMPLE, env: cleanEnv(), encoding: 'utf8' });
  t.is(check.status, 0, `${check.stdout}${check.stderr}`);
  t.regex(check.stdout, /Configuration file is valid/);
  const [port, httpPort, httpsPort] = [await freePort(), await freePort(), await freePort()];
  const run = spawn('bash', ['run.sh'], {
    cwd: EXAMPLE,
    env: { ...cleanEnv(), PORT: String(port), HAPROXY_HTTP_PORT: String(httpPort), HAPROXY_HTTPS_PORT: String(httpsPort) },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let out = '';
  run.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  run.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  t.teardown(() => {
    // run.sh's own trap stops both; a group kill only if the test ended before that.
    if (run.exitCode === null && run.signalCode === null) {
      try {
        process.kill(-run.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  });
  // Ready when twinport says it listens and both HAProxy frontends accept (bounded: 10 s). twinport's
  // port is not probed: every connection to it is a close line, and the test counts those.
  for (let i = 0; i < 200; i++) {
    if (out.includes('"msg":"listening"') && (await accepts(httpPort)) && (await accepts(httpsPort))) break;
    if (run.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  t.is(run.exitCode, null, `run.sh exited early:\n${out}`);

  const plain = curl(['-w', '\n%{local_port}', `http://127.0.0.1:${port}/`]);
  t.is(plain.code, 0, plain.stderr);
  const [plainBody, plainPort] = bodyAndPort(plain.stdout);
  t.is(plainBody, `keystone via HAProxy: http from 127.0.0.2:${plainPort}`);

  const secure = curl(['-k', '-w', '\n%{local_port}', '--resolve', `keystone.example:${port}:127.0.0.1`, `https://keystone.example:${port}/`]);
  t.is(secure.code, 0, secure.stderr);
  const [secureBody, securePort] = bodyAndPort(secure.stdout);
  t.is(secureBody, `keystone via HAProxy: https from 127.0.0.2:${securePort}`);

  // HAProxy's own log (httplog starts with the client) and twinport's close lines agree with curl. Both
  // are written as the connections end, which may be just after curl returned.
  const waitOut = async (pred: (lines: string[]) => boolean): Promise<string[]> => {
    for (let i = 0; i < 100 && !pred(out.split('\n')); i++) await new Promise((r) => setTimeout(r, 50));
    return out.split('\n');
  };
  const closesOf = (lines: string[]): Record<string, unknown>[] =>
    lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l['msg'] === 'close');
  const lines = await waitOut(
    (ls) => closesOf(ls).length >= 2 && ls.filter((l) => / keystone_https?~? keystone\//.test(l)).length >= 2,
  );
  t.true(lines.some((l) => l.startsWith(`127.0.0.2:${plainPort} `) && l.includes(' keystone_http keystone/')), out);
  t.true(lines.some((l) => l.startsWith(`127.0.0.2:${securePort} `) && l.includes(' keystone_https~ keystone/')), out);
  t.deepEqual(
    closesOf(lines).map((c) => [c['client'], c['protocol'], c['pool']]).sort(),
    [
      [`127.0.0.2:${plainPort}`, 'http', 'haproxy-http'],
      [`127.0.0.2:${securePort}`, 'tls', 'haproxy-tls'],
    ].sort(),
  );
  const copy = /run\.sh: twinport\.yaml with ports \d+, \d+, \d+: (\S+)/.exec(out)?.[1] ?? '';
  t.regex(readFileSync(copy, 'utf8'), new RegExp(`bind: "127\\.0\\.0\\.1:${port}"`), 'other ports ran a copy of the config…');
  t.regex(readFileSync(`${EXAMPLE}twinport.yaml`, 'utf8'), /bind: "127\.0\.0\.1:5000"/);

  // SIGTERM to run.sh stops both servers and exits 0.
  const twinportPid = Number((lines.map((l) => /"pid":(\d+).*"msg":"listening"/.exec(l)).find((m) => m !== null) ?? [])[1]);
  t.true(twinportPid > 0, out);
  run.kill('SIGTERM');
  t.is(await exited(run), 0, out);
  t.false(alive(twinportPid), 'twinport stopped with run.sh');
  t.false(await accepts(httpsPort), 'HAProxy stopped with run.sh');
  t.false(existsSync(copy), 'and the copy went with them');
});

// The layer picture of design.md §7 / docs/architecture.md, checked on the sources: protocol/ and
// routing/ never reach into the socket, admin or CLI layers, and data flows one way.
import test from 'ava';
import { readdirSync, readFileSync } from 'node:fs';

const src = new URL('../../src/', import.meta.url);

function importsOf(layer: string): { file: string; spec: string }[] {
  const dir = new URL(`${layer}/`, src);
  return readdirSync(dir)
    .filter((f) => f.endsWith('.ts'))
    .flatMap((file) =>
      [...readFileSync(new URL(file, dir), 'utf8').matchAll(/\b(?:from|import)\s+'([^']+)'/g)].map((m) => ({ file: `${layer}/${file}`, spec: m[1]! })),
    );
}

const FORBIDDEN: Record<string, RegExp> = {
  protocol: /^\.\.\/(routing|proxy|admin|cli|config|demo)\//,
  routing: /^\.\.\/(proxy|admin|cli|demo)\//,
  config: /^\.\.\/(proxy|admin|cli|demo)\//,
  proxy: /^\.\.\/(cli|demo|admin)\//,
  // The subsystems around the socket lifecycle: proxy/ uses them, never the reverse.
  io: /^\.\.\/(proxy|health|affinity|admin|cli|demo)\//,
  health: /^\.\.\/(proxy|io|affinity|admin|cli|demo)\//,
  affinity: /^\.\.\/(proxy|io|health|admin|cli|demo)\//,
  // Migration phases, and later its record, stores and report: built on routing/protocol/config, used
  // by proxy/ (and the CLI's report), never the reverse.
  migration: /^\.\.\/(proxy|io|health|affinity|admin|cli|demo)\//,
  // The admin listener reads the runtime (proxy/ and below) through the hooks it exposes; only the CLI
  // starts it, and nothing below imports it.
  admin: /^\.\.\/(cli|demo)\//,
};

for (const [layer, bad] of Object.entries(FORBIDDEN)) {
  test(`src/${layer} imports nothing from the layers above it`, (t) => {
    const imports = importsOf(layer);
    t.true(imports.length > 0);
    for (const { file, spec } of imports) t.notRegex(spec, bad, `${file} imports ${spec}`);
  });
}

test('src/protocol is pure: no sockets, timers, logging or process access', (t) => {
  for (const { file, spec } of importsOf('protocol')) {
    // node:net only for its address-syntax checks (isIPv4/isIPv6); the socket API is refused below.
    t.true(spec.startsWith('./') || spec === '../errors.js' || spec === 'node:crypto' || spec === 'node:buffer', `${file} imports ${spec}`);
  }
  const dir = new URL('protocol/', src);
  for (const f of readdirSync(dir).filter((x) => x.endsWith('.ts'))) {
    t.notRegex(readFileSync(new URL(f, dir), 'utf8'), /\b(setTimeout|setInterval|setImmediate|createConnection|createServer)\b|\bconsole\.|\bprocess\.|\bDate\.now|\bnet\.connect|\bnew Socket\b/, f);
  }
});

test('only src/cli calls process.exit', (t) => {
  for (const layer of ['protocol', 'routing', 'config', 'proxy', 'io', 'health', 'affinity', 'migration', 'admin', 'demo']) {
    const dir = new URL(`${layer}/`, src);
    for (const f of readdirSync(dir).filter((x) => x.endsWith('.ts'))) {
      t.notRegex(readFileSync(new URL(f, dir), 'utf8'), /process\.exit\(/, `${layer}/${f}`);
    }
  }
});

test('src/migration: the phase decision, the answers and the User-Agent patterns are pure (no sockets, timers or process access)', (t) => {
  for (const f of ['phase.ts', 'response.ts', 'user-agent.ts', 'record.ts', 'report.ts']) {
    const text = readFileSync(new URL(`migration/${f}`, src), 'utf8');
    t.notRegex(text, /\bfrom 'node:(net|tls|dgram|fs|child_process)'|\b(setTimeout|setInterval|setImmediate)\b|\bprocess\./, f);
  }
});

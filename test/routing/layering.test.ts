// routing/ is pure decisions (design.md §7): no imports from proxy/, admin/, cli/, no sockets, no timers,
// and nothing process-seeded in the hash that two instances must agree on.
import test from 'ava';
import { readdirSync, readFileSync } from 'node:fs';

const dir = new URL('../../../src/routing/', import.meta.url);
const files = readdirSync(dir).filter((f) => f.endsWith('.ts'));

// re2js is pure computation (RE2 ported to JavaScript, no dependencies): the linear-time engine every
// operator regex runs on (operator-regex.ts), and only that file may use it.
test('src/routing imports only config types, errors, its own modules and the regex engine', (t) => {
  t.true(files.length >= 5);
  for (const f of files) {
    const src = readFileSync(new URL(f, dir), 'utf8');
    for (const m of src.matchAll(/\bfrom\s+'([^']+)'/g)) {
      const spec = m[1]!;
      const ok =
        spec.startsWith('./') ||
        spec === '../config/types.js' ||
        spec === '../errors.js' ||
        spec === '../protocol/ip-address.js' ||
        (spec === 're2js' && f === 'operator-regex.ts');
      t.true(ok, `${f} imports ${spec}`);
    }
  }
});

test('src/routing uses no timers or sockets, and the Maglev hash nothing random', (t) => {
  for (const f of files) {
    const src = readFileSync(new URL(f, dir), 'utf8');
    t.notRegex(src, /\b(setTimeout|setInterval|setImmediate|Date\.now|performance\.now|createConnection|createServer|new Socket)\b/, f);
  }
  for (const f of ['maglev.ts', 'balance-hash.ts']) {
    t.notRegex(readFileSync(new URL(f, dir), 'utf8'), /Math\.random|randomBytes|process\.pid/, f);
  }
});

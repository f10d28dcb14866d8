// Durations, sizes and addresses: the pieces of config text with a meaning, checked on their own.
import test from 'ava';
import fc from 'fast-check';
import { parseBind, parseServerAddress } from '../../src/config/address.js';
import { MAX_DURATION_MS, formatDuration, formatSize, parseDuration, parseSize } from '../../src/config/units.js';

test('durations: every unit, decimals that are whole milliseconds', (t) => {
  t.is(parseDuration('250ms'), 250);
  t.is(parseDuration('5s'), 5000);
  t.is(parseDuration('1.5s'), 1500);
  t.is(parseDuration('1.005s'), 1005);
  t.is(parseDuration('10m'), 600_000);
  t.is(parseDuration('1h'), 3_600_000);
  t.is(parseDuration('596h'), 596 * 3_600_000);
});

test('durations: what is refused', (t) => {
  for (const bad of [5, '5', '5 s', '5S', '1m30s', '-1s', '.5s', '1.5ms', '0s', '597h', '', 'forever', true, null, [], {}]) {
    t.is(typeof parseDuration(bad), 'string', JSON.stringify(bad));
  }
  t.regex(parseDuration(5) as string, /^durations need a unit/);
});

test('durations: n + unit is n times the unit, within the timer limit', (t) => {
  const factor = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 1_000_000_000 }), fc.constantFrom('ms', 's', 'm', 'h'), (n, unit) => {
      const ms = n * factor[unit as keyof typeof factor];
      const got = parseDuration(`${n}${unit}`);
      return ms <= MAX_DURATION_MS ? got === ms : typeof got === 'string';
    }),
  );
  t.pass();
});

test('durations and sizes: arbitrary input gets a number or a message, never a throw', (t) => {
  fc.assert(
    fc.property(fc.anything(), (v) => {
      const d = parseDuration(v);
      const s = parseSize(v);
      return (typeof d === 'string' || Number.isInteger(d)) && (typeof s === 'string' || Number.isInteger(s));
    }),
  );
  fc.assert(fc.property(fc.string(), (v) => typeof parseBind(v) === 'string' || typeof parseBind(v) === 'object'));
  t.pass();
});

test('sizes: bytes, B, KiB, MiB; decimal units refused with the unit to use', (t) => {
  t.is(parseSize(512), 512);
  t.is(parseSize('512'), 512);
  t.is(parseSize('512B'), 512);
  t.is(parseSize('16KiB'), 16 * 1024);
  t.is(parseSize('1MiB'), 1024 * 1024);
  t.is(parseSize('64KB'), '"64KB": use binary units, KiB (1024 bytes), not "KB"');
  t.is(parseSize('2mb'), '"2mb": use binary units, MiB (1048576 bytes), not "mb"');
  for (const bad of [-1, 1.5, '1.5KiB', '16 KiB', '16kib', '16GiB', '', true]) t.is(typeof parseSize(bad), 'string', JSON.stringify(bad));
});

test('formatting sizes and durations for messages', (t) => {
  t.is(formatSize(1024 * 1024), '1MiB');
  t.is(formatSize(65536), '64KiB');
  t.is(formatSize(700), '700 bytes');
  t.is(formatDuration(5000), '5s');
  t.is(formatDuration(1500), '1500ms');
  t.is(formatDuration(7_200_000), '2h');
});

test('binds: IPv4, bracketed IPv6, host names, port 0', (t) => {
  t.deepEqual(parseBind('127.0.0.1:5000'), { text: '127.0.0.1:5000', host: '127.0.0.1', port: 5000 });
  t.deepEqual(parseBind('[::1]:5000'), { text: '[::1]:5000', host: '::1', port: 5000 });
  t.deepEqual(parseBind('[::]:0'), { text: '[::]:0', host: '::', port: 0 });
  t.deepEqual(parseBind('localhost:80'), { text: 'localhost:80', host: 'localhost', port: 80 });
  for (const bad of ['127.0.0.1', ':80', '::1:80', '[::1]', '[127.0.0.1]:80', '300.1.1.1:80', 'a b:80', '1.2.3.4:65536', '1.2.3.4:-1', '1.2.3.4:0x50', '*:80']) {
    t.is(typeof parseBind(bad), 'string', bad);
  }
});

test('server addresses: port 0 refused, unix sockets absolute and short enough', (t) => {
  t.deepEqual(parseServerAddress('10.0.0.1:443'), { text: '10.0.0.1:443', host: '10.0.0.1', port: 443 });
  t.deepEqual(parseServerAddress('[2001:db8::1]:443'), { text: '[2001:db8::1]:443', host: '2001:db8::1', port: 443 });
  t.deepEqual(parseServerAddress('unix:/run/a.sock'), { text: 'unix:/run/a.sock', path: '/run/a.sock' });
  t.is(parseServerAddress('10.0.0.1:0'), 'port "0" must be a number from 1 to 65535');
  t.is(typeof parseServerAddress('unix:run/a.sock'), 'string');
  t.is(typeof parseServerAddress(`unix:/${'x'.repeat(107)}`), 'string');
  t.is(typeof parseServerAddress(`unix:/${'x'.repeat(106)}`), 'object');
});

// CIDR blocks written in IPv4-mapped form (security review F12): client addresses ::ffff:a.b.c.d are
// compared as IPv4, so the config's blocks must be too, or `::ffff:127.0.0.0/104` never matches anyone.
import test from 'ava';
import fc from 'fast-check';
import type { Cidr } from '../../src/config/types.js';
import { anyCidrContains, cidrContains, parseCidr } from '../../src/routing/cidr.js';

function cidr(text: string): Cidr {
  const c = parseCidr(text);
  if (typeof c === 'string') throw new Error(c);
  return c;
}

test('a block inside ::ffff:0:0/96 is unmapped to IPv4, prefix − 96; its text stays as written', (t) => {
  const c = cidr('::ffff:127.0.0.0/104');
  t.is(c.family, 4);
  t.is(c.prefix, 8);
  t.deepEqual([...c.network], [127, 0, 0, 0]);
  t.is(c.text, '::ffff:127.0.0.0/104');
  t.deepEqual(cidr('::ffff:0:0/96'), { text: '::ffff:0:0/96', family: 4, network: Buffer.from([0, 0, 0, 0]), prefix: 0 });
  t.deepEqual(cidr('::ffff:7f00:2'), { text: '::ffff:7f00:2', family: 4, network: Buffer.from([127, 0, 0, 2]), prefix: 32 });
  t.deepEqual(cidr('0:0:0:0:0:FFFF:10.1.2.3/120'), { text: '0:0:0:0:0:FFFF:10.1.2.3/120', family: 4, network: Buffer.from([10, 1, 2, 0]), prefix: 24 });
  t.true(Object.isFrozen(c));
});

test('an unmapped block matches IPv4 clients, however the listener reports them', (t) => {
  const c = cidr('::ffff:127.0.0.0/104');
  t.true(cidrContains(c, '127.0.0.5'));
  t.true(cidrContains(c, '::ffff:127.0.0.5'));
  t.true(cidrContains(c, '::FFFF:7f00:5'));
  t.false(cidrContains(c, '128.0.0.1'));
  t.false(cidrContains(c, '::ffff:10.0.0.1'));
  t.false(cidrContains(c, '::1'));
  t.false(cidrContains(c, '::7f00:5'), 'IPv4-compatible (deprecated) is not IPv4-mapped');
  const trusted = [cidr('::ffff:127.0.0.2')];
  t.true(anyCidrContains(trusted, '127.0.0.2'));
  t.false(anyCidrContains(trusted, '127.0.0.3'));
  t.true(cidrContains(cidr('::ffff:0:0/96'), '203.0.113.9'));
});

test('IPv6 blocks outside the mapped block stay IPv6', (t) => {
  for (const text of ['::1', '::/96', '::/127', '2001:db8::/32', '::fffe:0:0/96', '::1:ffff:0:0/96', '::ffff:0:0:0/96']) {
    const c = cidr(text);
    t.is(c.family, 6, text);
  }
  t.true(cidrContains(cidr('::/0'), '2001:db8::1'));
  t.false(cidrContains(cidr('::/0'), '127.0.0.1'), '::/0 is every IPv6 client, not the IPv4 ones');
  t.false(cidrContains(cidr('::/0'), '::ffff:127.0.0.1'));
});

test('a wider IPv6 block holding all of ::ffff:0:0/96 is refused, saying how to write it; ::/0 is not', (t) => {
  for (const text of ['::/1', '::/8', '::/64', '::/80', '::ffff:0:0/80', '::ffff:0:0/81', '::ffff:0:0/95', '::ffff:1.2.3.4/90']) {
    const r = parseCidr(text);
    t.is(typeof r, 'string', text);
    t.is(
      r,
      `"${text}" holds the IPv4-mapped block ::ffff:0:0/96, but an IPv6 block never matches an IPv4 client (a dual-stack listener's ::ffff:a.b.c.d is compared as a.b.c.d): write IPv4 clients as IPv4 blocks ("0.0.0.0/0" for all), and all IPv6 clients as "::/0"`,
    );
  }
  t.is(typeof parseCidr('::/0'), 'object');
  t.is(typeof parseCidr('::fffc:0:0/95'), 'object', 'next to the mapped block, not holding it');
});

test('property: ::ffff:a.b.c.d/(96+n) and a.b.c.d/n hold the same clients', (t) => {
  fc.assert(
    fc.property(fc.ipV4(), fc.integer({ min: 0, max: 32 }), fc.ipV4(), (net, n, client) => {
      const mapped = cidr(`::ffff:${net}/${96 + n}`);
      const plain = cidr(`${net}/${n}`);
      return (
        mapped.family === 4 &&
        mapped.prefix === plain.prefix &&
        mapped.network.equals(plain.network) &&
        cidrContains(mapped, client) === cidrContains(plain, client) &&
        cidrContains(mapped, `::ffff:${client}`) === cidrContains(plain, client)
      );
    }),
    { numRuns: 2000 },
  );
  t.pass();
});

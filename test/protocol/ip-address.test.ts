// Our IP syntax checks give node:net's answers on every input.
import test from 'ava';
import fc from 'fast-check';
import net from 'node:net';
import { isIP, isIPv4, isIPv6 } from '../../src/protocol/ip-address.js';

const samples = [
  '1.2.3.4', '255.255.255.255', '256.1.1.1', '01.2.3.4', '1.2.3', '::', '::1', '1::', ':::', '1:2:3:4:5:6:7:8',
  '1:2:3:4:5:6:7:8:9', '1::2::3', '::ffff:1.2.3.4', '::ffff:1.2.3.04', 'fe80::1%eth0', 'fe80::1%', '1:2:3:4:5:6:1.2.3.4',
  '1:2:3:4:5:6:7:1.2.3.4', 'g::1', '12345::', '', '[::1]', '1.2.3.4:80',
];

test('known forms agree with node:net', (t) => {
  for (const s of samples) {
    t.is(isIPv4(s), net.isIPv4(s), s);
    t.is(isIPv6(s), net.isIPv6(s), s);
    t.is(isIP(s) as number, net.isIP(s), s);
  }
});

test('property: random address-like strings agree with node:net', (t) => {
  const piece = fc.constantFrom('0', '1', '9', 'a', 'F', 'ffff', '12', '255', '256', ':', '::', '.', '%', 'e');
  fc.assert(
    fc.property(fc.array(piece, { maxLength: 24 }).map((a) => a.join('')), (s) => isIPv4(s) === net.isIPv4(s) && isIPv6(s) === net.isIPv6(s)),
    { numRuns: 20000 },
  );
  t.pass();
});

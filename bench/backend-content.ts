// What the benchmark backends serve, shared by the nginx config, the Node fallback and the routing check.

export const MIB = 1024 * 1024;
export const SMALL_BODY_BYTES = 100;

/** A 100-byte body that starts with `backend=<name>`: the routing check reads it back. */
export function bodyFor(name: 'http' | 'https'): string {
  const head = `backend=${name}\n`;
  return head + 'x'.repeat(SMALL_BODY_BYTES - head.length - 1) + '\n';
}

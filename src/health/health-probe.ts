// One active health check of one server (docs/health.md): connect, and for `tls` a full handshake, for
// `http` one GET and its status line. Every check is bounded by `timeout`, ends with its socket closed,
// and answers ok or not with a short reason for the log; it never throws.
import net, { type Socket } from 'node:net';
import tls from 'node:tls';
import type { HealthCheckConfig, ServerAddress } from '../config/types.js';

export interface CheckOutcome {
  readonly ok: boolean;
  /** "connected", "TLSv1.3 alpn h2", "status 503", "ECONNREFUSED", "timeout after 1000ms" … */
  readonly detail: string;
}

/** A status line is short; a server that sends this much without one is not speaking HTTP/1 to us. */
const MAX_STATUS_LINE = 1024;

// status-line = HTTP-version SP status-code SP [ reason-phrase ] (RFC 9112 §4).
const STATUS_LINE = /^HTTP\/1\.[01] ([0-9]{3})(?: |$)/;

/** Host header for a check without `host`: the address as written (RFC 9110 §7.2 allows host:port). */
function defaultHost(address: ServerAddress): string {
  return address.path !== undefined ? 'localhost' : address.text;
}

function connectOptions(address: ServerAddress): net.NetConnectOpts {
  return address.path !== undefined ? { path: address.path } : { host: address.host!, port: address.port!, noDelay: true };
}

/**
 * Runs one check. `signal` aborts it (reload, shutdown): the socket is destroyed and the outcome is a
 * failure nobody acts on.
 */
export function runHealthCheck(address: ServerAddress, cfg: HealthCheckConfig, signal?: AbortSignal): Promise<CheckOutcome> {
  return new Promise((resolve) => {
    let sock: Socket;
    let settled = false;
    const settle = (outcome: CheckOutcome, close: 'end' | 'destroy'): void => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      signal?.removeEventListener('abort', onAbort);
      if (close === 'end') closePolitely(sock);
      else sock.destroy();
      resolve(outcome);
    };
    const onAbort = (): void => settle({ ok: false, detail: 'stopped' }, 'destroy');
    // The deadline yields once to the poll phase first: when the event loop was blocked past the deadline,
    // an answer already waiting in the kernel is read before the check is declared timed out, so a stall
    // in twinport itself does not take healthy servers down.
    const deadline = setTimeout(
      () => setImmediate(() => settle({ ok: false, detail: `timeout after ${cfg.timeout}ms` }, 'destroy')),
      cfg.timeout,
    );
    const fail = (err: NodeJS.ErrnoException): void => settle({ ok: false, detail: err.code ?? err.message }, 'destroy');

    switch (cfg.type) {
      case 'tcp':
        sock = net.connect(connectOptions(address));
        sock.once('connect', () => settle({ ok: true, detail: 'connected' }, 'end'));
        break;
      case 'tls': {
        // A real, modern ClientHello from the TLS stack the process already trusts — not HAProxy's
        // hand-built SSLv3 hello (`option ssl-hello-chk`), which servers that disabled SSLv3 and TLS 1.0
        // reject, so it would mark healthy servers down. Identity is not checked: liveness is.
        const socket = tls.connect({
          ...connectOptions(address),
          ...(cfg.sni === undefined ? {} : { servername: cfg.sni }),
          ...(cfg.alpn === undefined ? {} : { ALPNProtocols: [...cfg.alpn] }),
          minVersion: 'TLSv1.2',
          rejectUnauthorized: false,
        });
        sock = socket;
        // 'secureConnect' fires once the server's Finished has been verified: a ServerHello came back
        // and the handshake completed (RFC 8446 §2). A plaintext server fails the record layer instead.
        socket.once('secureConnect', () => {
          const alpn = typeof socket.alpnProtocol === 'string' ? ` alpn ${socket.alpnProtocol}` : '';
          settle({ ok: true, detail: `${socket.getProtocol() ?? 'tls'}${alpn}` }, 'end');
        });
        break;
      }
      case 'http': {
        sock = net.connect(connectOptions(address));
        const request =
          `GET ${cfg.path} HTTP/1.1\r\nHost: ${cfg.host ?? defaultHost(address)}\r\n` +
          'User-Agent: twinport-health\r\nAccept: */*\r\nConnection: close\r\n\r\n';
        sock.once('connect', () => sock.write(request));
        let head = Buffer.alloc(0);
        sock.on('data', (chunk: Buffer) => {
          head = Buffer.concat([head, chunk]);
          const eol = head.indexOf('\r\n');
          if (eol < 0 && head.length < MAX_STATUS_LINE) return;
          const line = head.subarray(0, eol < 0 ? MAX_STATUS_LINE : eol).toString('latin1');
          const m = STATUS_LINE.exec(line);
          if (m === null) {
            settle({ ok: false, detail: 'not an HTTP/1 status line' }, 'destroy');
            return;
          }
          const status = Number(m[1]);
          const ok = cfg.expectStatus.some((r) => status >= r.from && status <= r.to);
          settle({ ok, detail: `status ${status}` }, 'destroy');
        });
        sock.once('end', () => settle({ ok: false, detail: 'closed before a status line' }, 'destroy'));
        break;
      }
    }
    sock.on('error', fail);
    sock.once('close', () => settle({ ok: false, detail: 'closed' }, 'destroy'));
    if (signal?.aborted === true) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * After a passed check: send FIN (and close_notify for TLS) rather than a reset, so the backend's logs
 * show an orderly close; destroy anyway if it never closes its side.
 */
function closePolitely(sock: Socket): void {
  sock.on('error', () => {});
  sock.once('end', () => sock.destroy());
  sock.end();
  setTimeout(() => sock.destroy(), 1000).unref();
}

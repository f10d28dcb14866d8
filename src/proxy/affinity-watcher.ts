// Reads the server→client bytes of a spliced TLS connection only until the server's first flight is
// complete (tls-server-hello.ts), hands the flight over, and then detaches: the rest of the connection
// costs nothing. The bytes themselves are untouched — pipe() forwards them; this is a second listener.
import type { Socket } from 'node:net';
import { createServerFlightParser, type ServerFlight } from '../protocol/tls-server-hello.js';

/** Calls `onFlight` at most once; never when the server's bytes are not a TLS server flight. */
export function watchServerFlight(server: Socket, onFlight: (flight: ServerFlight) => void): void {
  const parser = createServerFlightParser();
  const stop = (): void => {
    server.off('data', onData);
    server.off('close', stop);
  };
  const onData = (chunk: Buffer): void => {
    const state = parser.push(chunk);
    if (state.kind === 'need-more') return;
    stop();
    if (state.kind === 'done') onFlight(state.flight);
  };
  server.on('data', onData);
  server.on('close', stop);
}

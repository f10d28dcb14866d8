// Reads the server→client bytes of a spliced TLS connection only until the server's first flight is
// complete (tls-server-hello.ts), hands the flight over, and is then dropped: the rest of the connection
// costs nothing. The bytes themselves are untouched: the splice forwards them and shows them to this too.
import { createServerFlightParser, type ServerFlight } from '../protocol/tls-server-hello.js';

/**
 * Returns a function to feed with the server's bytes in order; it answers true once it needs no more.
 * `onFlight` is called at most once, never when the server's bytes are not a TLS server flight.
 */
export function watchServerFlight(onFlight: (flight: ServerFlight) => void): (chunk: Buffer) => boolean {
  const parser = createServerFlightParser();
  return (chunk) => {
    const state = parser.push(chunk);
    if (state.kind === 'need-more') return false;
    if (state.kind === 'done') onFlight(state.flight);
    return true;
  };
}

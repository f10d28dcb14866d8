// Connection outcomes (docs/reasons.md): exactly one per connection, in the close log and the outcome
// counters. Extend, never reuse a code for another meaning; docs/reasons.md lists the same set.

export const CLOSE_REASONS = [
  'done', // both sides closed cleanly
  'client-reset', // the client reset or errored
  'server-reset', // the server reset or errored mid-stream
  'idle-timeout', // no bytes either way for timeouts.idle
  'fin-timeout', // one side sent FIN and the half-closed pair outlived timeouts.client_fin / server_fin (detail: which)
  'peek-timeout', // no verdict within timeouts.peek
  'peek-too-large', // max_client_hello bytes buffered without a verdict
  'peek-eof', // the client closed before a verdict
  'rejected', // a parser said no (detail: its reason)
  'no-route', // no route matched
  'connect-failed', // every server attempt was refused or failed
  'connect-timeout', // every server attempt failed and the last one timed out
  'limit', // a connection limit (max_connections, limits, a full pool queue: detail says which)
  'queue-timeout', // every usable server was at its max_connections for the pool's queue.timeout
  'shutdown', // closed by a shutdown (SIGTERM/SIGINT) after shutdown_timeout
  'redirected', // migration phase redirect: twinport answered a plaintext HTTP/1 request with a redirect to https
  'migration-reject', // migration phase redirect/reject: twinport answered plaintext with an error, or closed it
  'admin', // closed by an operator: DELETE /connections/{id}, or its server put in maint (detail says which)
  'server-down', // its server was marked down by health, in a pool with on_down: close (detail: why)
  'internal-error', // our own code threw while handling this connection (a bug): this connection only
] as const;

export type CloseReason = (typeof CLOSE_REASONS)[number];

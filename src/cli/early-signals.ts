// Installed before the rest of the program loads (main.ts imports this first): a SIGHUP that arrives while
// twinport starts — a process manager's reload right after start, or a cluster primary forwarding one to a
// worker still booting — must not kill the process (Node's default for SIGHUP is exit 129).
let handler: (() => void) | undefined;
let pending = false;

process.on('SIGHUP', () => {
  if (handler === undefined) pending = true;
  else handler();
});

/** Sets what SIGHUP does from now on; a SIGHUP received before runs it once, now. */
export function setHangupHandler(h: () => void): void {
  handler = h;
  if (pending) {
    pending = false;
    h();
  }
}

/** The cluster primary forwards SIGHUP instead of reloading itself. */
export function replaceHangupHandler(h: () => void): void {
  handler = h;
  pending = false;
}

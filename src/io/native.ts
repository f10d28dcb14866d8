// The `native` engine's addon (src/native/, docs/native.md): a connected pair (adopted by slot when the
// addon accepted and connected it, native-socket.ts, else handed over by descriptor) is forwarded by C
// code on the event loop (an epoll set of its own, watched by one uv_poll), without a JavaScript call per
// read or write, and ends with one call back here. Built by `npm install`
// when a compiler and Node's headers are there; when it is missing, fails to load or fails its
// self-check, `NATIVE.engine` is undefined, `NATIVE.why` says why, and `io_engine: auto` runs `libuv`.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { getSystemErrorName } from 'node:util';
import { LIBUV } from './libuv.js';
import { NativeSockets, type NativeSocketEndpoint, type SockAddon } from './native-socket.js';

interface Addon extends Partial<SockAddon> {
  init(onDone: (slot: number, reason: number, errno: number) => void, counts: Float64Array): void;
  start(
    clientFd: number,
    serverFd: number,
    initial: Buffer | undefined,
    clientEof: boolean,
    serverEof: boolean,
    idleMs: number,
    clientFinMs?: number,
    serverFinMs?: number,
  ): number;
  close(slot: number): boolean;
  counts(slot: number): boolean;
  selfCheck(): string | null;
  live(): number;
  splice(mode: number): string | null;
  spliceStats(): [number, number, number];
}

/** What the splice(2) path did in this process (tests prove the path with it). */
export interface SpliceStats {
  /** Pipes open now: two descriptors each. */
  readonly pipesOpen: number;
  readonly pipesOpened: number;
  /** Bytes written out of a pipe since start. */
  readonly splicedBytes: number;
}

/**
 * Which transfers go through splice(2) (TWINPORT_NATIVE_SPLICE, read once at start; docs/native.md):
 * `auto`, a direction switches to a pipe of its own after a read that filled the 64 KiB scratch buffer
 * (bulk); `always`, every direction reads into its pipe; `off`, recv/send only.
 */
export type SpliceMode = 'off' | 'auto' | 'always';
export const SPLICE_MODES: readonly SpliceMode[] = ['off', 'auto', 'always'];
export const SPLICE_ENV = 'TWINPORT_NATIVE_SPLICE';
/** The measured winner per transfer size (docs/native.md). */
export const DEFAULT_SPLICE: SpliceMode = 'auto';

/** How a natively spliced pair ended: the JavaScript splice's outcomes (docs/reasons.md). */
export type NativeReason = 'done' | 'client-reset' | 'server-reset' | 'idle-timeout' | 'fin-timeout';
/** Indexed by the addon's reason code (enum pair_reason in src/native/pair.h). */
const REASONS: readonly NativeReason[] = ['done', 'client-reset', 'server-reset', 'idle-timeout', 'fin-timeout', 'fin-timeout'];
/** The detail a reason code carries by itself (the others name an errno, or nothing). */
const DETAILS: readonly (string | undefined)[] = [undefined, undefined, undefined, undefined, 'client_fin', 'server_fin'];

/** Bytes of a pair while native code carried it: what each side read and had written to it. */
export interface NativeCounts {
  readonly clientRead: number;
  readonly clientWritten: number;
  readonly serverRead: number;
  readonly serverWritten: number;
}

/** Who hears of a pair's end. Called once, unless the owner closed the pair itself. */
export interface NativeOwner {
  nativeDone(reason: NativeReason, detail: string | undefined, counts: NativeCounts): void;
}

export class NativeEngine {
  private readonly owners: (NativeOwner | undefined)[] = [];
  private readonly counts = new Float64Array(4);
  /**
   * Stage 2, the connection path in C (native-socket.ts): undefined when the addon lacks it, when
   * Node's TCP handles are not reachable (a socket must be able to move into one), or when
   * TWINPORT_NATIVE_ACCEPT=off asks for stage 1 only.
   */
  readonly sockets: NativeSockets | undefined;

  constructor(private readonly addon: Addon) {
    addon.init(this.onDone, this.counts);
    const full = typeof addon.sockInit === 'function' && typeof addon.adopt === 'function';
    this.sockets = full && LIBUV !== undefined && process.env['TWINPORT_NATIVE_ACCEPT'] !== 'off' ? new NativeSockets(addon as Addon & SockAddon, LIBUV) : undefined;
  }

  /**
   * Pairs two sockets the addon holds already (accepted and connected by it): nothing is duplicated.
   * A negative errno when it could not (the sockets are then still the endpoints', out of the epoll set).
   */
  adopt(
    owner: NativeOwner,
    client: NativeSocketEndpoint,
    server: NativeSocketEndpoint,
    initial: Buffer | undefined,
    idleMs: number,
    fin?: { readonly clientFin?: number | undefined; readonly serverFin?: number | undefined },
  ): number {
    const slot = (this.addon as Addon & SockAddon).adopt(client.slot, server.slot, initial, client.readEnded, server.readEnded, idleMs, fin?.clientFin, fin?.serverFin);
    if (slot < 0) return slot;
    client.adopted();
    server.adopted();
    this.owners[slot] = owner;
    return slot;
  }

  /**
   * Hands a pair over. The addon duplicates both descriptors: the caller closes its own endpoints right
   * after a success. `initial` is written to the server first (PROXY header, peeked bytes); an *Eof flag
   * says that side's FIN was read already. `fin` holds timeouts.client_fin / server_fin (absent: no bound).
   * A negative errno when the addon could not take the pair (EMFILE while duplicating): the caller keeps
   * splicing it in JavaScript.
   */
  start(
    owner: NativeOwner,
    clientFd: number,
    serverFd: number,
    initial: Buffer | undefined,
    clientEof: boolean,
    serverEof: boolean,
    idleMs: number,
    fin?: { readonly clientFin?: number | undefined; readonly serverFin?: number | undefined },
  ): number {
    const slot = this.addon.start(clientFd, serverFd, initial, clientEof, serverEof, idleMs, fin?.clientFin, fin?.serverFin);
    if (slot >= 0) this.owners[slot] = owner;
    return slot;
  }

  /** Ends a pair now (plain close both ways), without its owner's callback; its counts, if it was live. */
  close(slot: number): NativeCounts | undefined {
    this.owners[slot] = undefined;
    return this.addon.close(slot) ? this.readCounts() : undefined;
  }

  /** A live pair's counts so far (undefined when the slot is not live). */
  countsOf(slot: number): NativeCounts | undefined {
    return this.addon.counts(slot) ? this.readCounts() : undefined;
  }

  /**
   * Sets the splice mode for pairs started from now on. It runs splice(2) once on socketpairs first: when
   * that fails the mode is `off` and the answer says why.
   */
  setSplice(mode: SpliceMode): { readonly mode: SpliceMode; readonly why?: string } {
    const failed = this.addon.splice(SPLICE_MODES.indexOf(mode));
    return failed === null ? { mode } : { mode: 'off', why: failed };
  }

  spliceStats(): SpliceStats {
    const [pipesOpen, pipesOpened, splicedBytes] = this.addon.spliceStats();
    return { pipesOpen, pipesOpened, splicedBytes };
  }

  /** Pairs being carried now (tests count them). */
  live(): number {
    return this.addon.live();
  }

  private readCounts(): NativeCounts {
    const c = this.counts;
    return { clientRead: c[0]!, clientWritten: c[1]!, serverRead: c[2]!, serverWritten: c[3]! };
  }

  private readonly onDone = (slot: number, reason: number, errno: number): void => {
    const owner = this.owners[slot];
    this.owners[slot] = undefined;
    if (owner === undefined) return;
    owner.nativeDone(REASONS[reason] ?? 'done', errno === 0 ? DETAILS[reason] : errnoCode(errno), this.readCounts());
  };
}

function errnoCode(errno: number): string {
  try {
    return getSystemErrorName(-errno);
  } catch {
    return `E${errno}`;
  }
}

/** Where `npm install` builds the addon; TWINPORT_NATIVE_ADDON names another build (the sanitizer's). */
export function addonPath(): string {
  const configured = process.env['TWINPORT_NATIVE_ADDON'];
  if (configured !== undefined && configured !== '') return configured;
  return fileURLToPath(new URL('../../../src/native/build/Release/twinport_native.node', import.meta.url));
}

export interface NativeStatus {
  readonly engine: NativeEngine | undefined;
  /** Why it is there or not: the start line says it. */
  readonly why: string;
  /** TWINPORT_NATIVE_SPLICE holds something else than off, auto or always: a start error on this engine. */
  readonly spliceError?: string;
}

/** The splice mode the environment asks for, or what is wrong with it. */
export function spliceSetting(env: NodeJS.ProcessEnv = process.env): { mode: SpliceMode } | { error: string } {
  const raw = env[SPLICE_ENV];
  if (raw === undefined || raw === '') return { mode: DEFAULT_SPLICE };
  const mode = SPLICE_MODES.find((m) => m === raw.trim().toLowerCase());
  return mode !== undefined ? { mode } : { error: `${SPLICE_ENV}=${JSON.stringify(raw)} is not one of ${SPLICE_MODES.join(', ')}` };
}

export function loadNative(path = addonPath()): NativeStatus {
  if (!existsSync(path)) return { engine: undefined, why: `addon not built (${path} missing; npm install builds it, docs/native.md)` };
  let addon: Addon;
  try {
    addon = createRequire(import.meta.url)(path) as Addon;
  } catch (e) {
    return { engine: undefined, why: `addon failed to load: ${(e as Error).message.split('\n')[0]}` };
  }
  if (typeof addon.selfCheck !== 'function' || typeof addon.start !== 'function') return { engine: undefined, why: 'addon lacks the expected functions' };
  const failed = addon.selfCheck();
  if (failed !== null) return { engine: undefined, why: `addon self-check failed: ${failed}` };
  const engine = new NativeEngine(addon);
  const setting = spliceSetting();
  if ('error' in setting) return { engine, why: 'addon loaded and its self-check passed', spliceError: setting.error };
  const splice = typeof addon.splice === 'function' ? engine.setSplice(setting.mode) : { mode: 'off' as const, why: 'addon lacks splice()' };
  const spliceWhy = splice.why !== undefined ? `splice(2) off: ${splice.why}` : `splice(2) ${splice.mode}`;
  return { engine, why: `addon loaded and its self-check passed; ${spliceWhy}` };
}

/** Loaded once per process (each --workers worker loads its own). */
export const NATIVE: NativeStatus = loadNative();

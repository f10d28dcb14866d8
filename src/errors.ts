// Every error twinport throws is declared here once: a stable code, a message template, a class.
// docs/errors.md lists the same codes; test/errors.test.ts fails when the two disagree.
// Connection outcomes are not exceptions: they are reason codes (src/proxy/reasons.ts).

export const ERROR_CODES = {
  TWP_ERR_CONFIG_INVALID: 'the configuration has errors',
  TWP_ERR_CONFIG_READ: 'the configuration file could not be read',
  TWP_ERR_CONFIG_YAML: 'the configuration file is not valid YAML',
  TWP_ERR_INSPECT_INPUT: 'the inspect input could not be read or decoded',
  TWP_ERR_LISTEN: 'a listener could not bind its address',
  TWP_ERR_LISTEN_FDS: 'the inherited sockets (systemd socket activation or an upgrade) and the listeners do not match',
  TWP_ERR_IO_ENGINE: 'the configured io_engine is not available in this Node',
  TWP_ERR_NATIVE: 'the native splice addon was called with arguments it does not take (a bug in twinport)',
  TWP_ERR_NATIVE_SPLICE: 'TWINPORT_NATIVE_SPLICE is not off, auto or always',
  TWP_ERR_DEMO_START: 'the demo backends could not start',
  TWP_ERR_PROXY_HEADER_BUILD: 'a PROXY protocol header could not be built from the given addresses',
  TWP_ERR_POOL_MAGLEV_SIZE: 'the Maglev table size is not a usable prime',
  TWP_ERR_POOL_INDEX: 'a server index is outside its pool',
  TWP_ERR_POOL_WEIGHT: 'a server weight must be a finite number of at least 0',
  TWP_ERR_ADMIN_UNKNOWN_POOL: 'the admin request names a pool the running config does not have',
  TWP_ERR_ADMIN_UNKNOWN_SERVER: 'the admin request names a server its pool does not have',
  TWP_ERR_ADMIN_TOKEN: 'the admin token file could not be read or is empty',
  TWP_ERR_ADMIN_LISTEN: 'the admin listener could not bind its address',
  TWP_ERR_ADMIN_REQUEST: 'the admin API answered with an error',
  TWP_ERR_MIGRATION_STORE_OPEN: 'the migration store could not be opened',
  TWP_ERR_MIGRATION_STORE_READ: 'the migration record could not be read',
  TWP_ERR_REPORT_ARGS: 'the report options are not usable',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class TwinportError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, detail?: string, options?: { cause?: unknown }) {
    super(detail === undefined ? ERROR_CODES[code] : `${ERROR_CODES[code]}: ${detail}`, options);
    this.name = 'TwinportError';
    this.code = code;
  }
}

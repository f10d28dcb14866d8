#!/usr/bin/env node
// Entry point of the `twinport` command. Signal handlers first, then the program: see early-signals.ts.
import './early-signals.js';

await import('./app.js');

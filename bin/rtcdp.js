#!/usr/bin/env -S node --max-semi-space-size=64
// --max-semi-space-size=64 (MiB) gives V8's young generation room for the short-lived
// objects of each event: in `npm run bench -- ingest` it raised applied events/s by a fifth.
// Runs the TypeScript CLI without a build step: tsx compiles cli/*.ts as they load.
import { register } from 'tsx/esm/api';

register();

const { run } = await import('../cli/main.ts');
await run(process.argv);

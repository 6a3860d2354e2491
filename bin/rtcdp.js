#!/usr/bin/env node
// Runs the TypeScript CLI without a build step: tsx compiles cli/*.ts as they load.
import { register } from 'tsx/esm/api';

register();

const { run } = await import('../cli/main.ts');
await run(process.argv);

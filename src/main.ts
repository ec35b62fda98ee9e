#!/usr/bin/env node
// The `openclaw-ratelimit` executable (package.json "bin": dist/main.js).
import { runCommandLine } from './server/cli.js';

runCommandLine(process.argv.slice(2));

// h2load posts the same `-d` file with every request, but it pread()s the
// file for each request (checked with nghttp2 1.52). So, to spread gRPC
// requests over many keys, we rewrite each file in place, same length, about
// every millisecond with the next key's framed request: over a 5 s row the
// requests walk thousands of keys (about 16-32 consecutive requests share one
// key, far under its burst). Each h2load process gets its own file, so several
// keys (and cluster slots) are in flight at any moment.
import { closeSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { keySequence, type RoundRobinShape } from './workload.js';

export interface RotatingBodies {
  readonly paths: string[];
  stop(): void;
}

const ROTATE_EVERY_MS = 1;

/** Starts rewriting `count` files in `dir` with `encode(key)`; every encoding must have one length. */
export function startRotatingBodies(dir: string, name: string, count: number, shape: RoundRobinShape, encode: (key: string) => Buffer): RotatingBodies {
  const files = Array.from({ length: count }, (_, i) => {
    const path = join(dir, `${name}-${i}.bin`);
    const next = keySequence(shape, i * 5003);
    const fd = openSync(path, 'w+');
    const first = encode(next());
    writeSync(fd, first, 0, first.length, 0);
    return { path, fd, next, length: first.length };
  });
  const cache = new Map<string, Buffer>();
  const timer = setInterval(() => {
    for (const file of files) {
      const key = file.next();
      let body = cache.get(key);
      if (body === undefined) {
        body = encode(key);
        cache.set(key, body);
      }
      if (body.length !== file.length) throw new Error(`request for ${key} is ${body.length} bytes, not ${file.length}`);
      writeSync(file.fd, body, 0, body.length, 0);
    }
  }, ROTATE_EVERY_MS);
  return {
    paths: files.map((f) => f.path),
    stop() {
      clearInterval(timer);
      for (const file of files) closeSync(file.fd);
    },
  };
}

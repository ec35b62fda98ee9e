/**
 * The delay proxy against a real echo server and a real redis-server: delay
 * both ways, byte order under pipelining and delay changes, back-pressure,
 * cut / heal (reset and resume), counters, and close.
 */
import { randomBytes } from 'node:crypto';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { Redis, type RedisOptions } from 'ioredis';
import tap from 'tap';
import { startDelayProxy, type DelayProxy } from '../../helpers/delay-proxy.js';
import { sleep, startRedis, waitFor, type Teardown } from '../../helpers/redis.js';

tap.setTimeout(60_000);

const DELAY_MS = 60;
// The machine is shared (2 cores, several engineers): earliness is not allowed, lateness is printed, never asserted.

/** An echo server on a free loopback port, closed on teardown. */
async function startEcho(t: Teardown): Promise<{ port: number; server: Server; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const socket of sockets) socket.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const address = server.address();
  return { port: typeof address === 'object' && address !== null ? address.port : 0, server, sockets };
}

/** A raw client socket to the proxy, destroyed on teardown; collects what it reads. */
async function rawClient(t: Teardown, proxy: DelayProxy): Promise<{ socket: Socket; received: () => Buffer; events: string[] }> {
  const socket = connect({ host: proxy.host, port: proxy.port, noDelay: true });
  const chunks: Buffer[] = [];
  const events: string[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.on('error', (error: NodeJS.ErrnoException) => events.push(`error:${error.code ?? error.message}`));
  socket.on('end', () => events.push('end'));
  socket.on('close', () => events.push('close'));
  t.teardown(() => {
    socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return { socket, received: () => Buffer.concat(chunks), events };
}

/** ms until `socket` has read `bytes` bytes in total (bounded). */
async function roundTrip(socket: Socket, payload: Buffer, timeoutMs = 5_000): Promise<number> {
  const started = performance.now();
  let got = 0;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.off('data', onData);
      reject(new Error(`no echo of ${payload.length} bytes in ${timeoutMs} ms (got ${got})`));
    }, timeoutMs);
    const onData = (chunk: Buffer): void => {
      got += chunk.length;
      if (got >= payload.length) {
        clearTimeout(timer);
        socket.off('data', onData);
        resolve();
      }
    };
    socket.on('data', onData);
    socket.write(payload);
  });
  return performance.now() - started;
}

/** An ioredis client through the proxy that never queues offline nor retries: what it says, the wire said. */
function redisThrough(t: Teardown, proxy: DelayProxy, extra: RedisOptions = {}): Redis {
  const client = new Redis({
    host: proxy.host, port: proxy.port, lazyConnect: true, maxRetriesPerRequest: 0,
    enableOfflineQueue: false, autoResendUnfulfilledCommands: false, retryStrategy: () => 50, connectTimeout: 2_000, ...extra,
  });
  client.on('error', () => undefined);
  t.teardown(() => client.disconnect());
  return client;
}

async function timed<T>(work: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = performance.now();
  const value = await work();
  return { value, ms: performance.now() - started };
}

/** Resolves with the promise's outcome, or 'pending' if it has none after `ms`. */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | 'pending'> {
  let timer: NodeJS.Timeout | undefined;
  const pending = new Promise<'pending'>((resolve) => { timer = setTimeout(() => resolve('pending'), ms); });
  try {
    return await Promise.race([promise, pending]);
  } finally {
    clearTimeout(timer);
  }
}

tap.test('echo: a round trip takes two one-way delays, never less', async (t) => {
  const echo = await startEcho(t);
  const proxy = await startDelayProxy({ t, target: { port: echo.port }, delayMs: DELAY_MS });
  const { socket } = await rawClient(t, proxy);
  const samples: number[] = [];
  for (let i = 0; i < 10; i++) samples.push(await roundTrip(socket, Buffer.from(`ping ${i}\n`)));
  const min = Math.min(...samples);
  const median = [...samples].sort((a, b) => a - b)[5]!;
  t.comment(`echo RTT at ${DELAY_MS} ms one way: min ${min.toFixed(1)} ms, median ${median.toFixed(1)} ms, max ${Math.max(...samples).toFixed(1)} ms`);
  // How much more than the delay a round trip takes depends on how busy the machine is: printed, not asserted.
  t.ok(min >= 2 * DELAY_MS, `every round trip >= ${2 * DELAY_MS} ms (min ${min.toFixed(1)})`);
  const stats = proxy.stats();
  t.equal(stats.connections, 1, 'one connection accepted');
  t.equal(stats.open, 1, 'and open');
  t.equal(stats.bytesToTarget, stats.bytesToClient, 'echo: as many bytes each way');
  t.equal(stats.bytesToTarget, samples.length * 7, 'every byte counted once');
});

tap.test('echo: 4 MiB in random-sized writes come back byte for byte while the delay changes and back-pressure bites', async (t) => {
  const echo = await startEcho(t);
  // A small cap so that the source is paused and resumed many times.
  const proxy = await startDelayProxy({ t, target: { port: echo.port }, delayMs: 20, maxQueuedBytes: 32 * 1024 });
  const { socket, received } = await rawClient(t, proxy);
  const payload = randomBytes(4 * 1024 * 1024);
  let offset = 0;
  let maxQueued = 0;
  const sampler = setInterval(() => { maxQueued = Math.max(maxQueued, proxy.stats().bytesQueued); }, 5);
  t.teardown(() => clearInterval(sampler));
  const delays = [20, 0, 45, 5, 30];
  let step = 0;
  while (offset < payload.length) {
    const size = Math.min(payload.length - offset, 1 + Math.floor(Math.random() * 48 * 1024));
    if (!socket.write(payload.subarray(offset, offset + size))) await new Promise((resolve) => socket.once('drain', resolve));
    offset += size;
    if (offset > (step + 1) * (payload.length / delays.length)) proxy.setDelay(delays[++step % delays.length]!);
  }
  await waitFor('every byte echoed', () => received().length >= payload.length, 30_000, 20);
  clearInterval(sampler);
  t.equal(received().length, payload.length, 'no byte more');
  t.ok(received().equals(payload), 'same bytes in the same order');
  // Per connection and direction the cap holds, give or take one read (<= 64 KiB).
  t.ok(maxQueued <= 2 * (32 * 1024 + 64 * 1024), `queued bytes stayed bounded (max seen ${maxQueued})`);
  t.equal(proxy.stats().bytesQueued, 0, 'nothing left queued');
});

tap.test('a target that stops reading pauses the client side: the proxy holds no more than its cap', async (t) => {
  let targetSocket: Socket | undefined;
  let targetBytes = 0;
  const server = createServer((socket) => {
    targetSocket = socket;
    socket.on('data', (chunk: Buffer) => { targetBytes += chunk.length; });
    socket.pause();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    targetSocket?.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const port = (server.address() as { port: number }).port;
  const cap = 64 * 1024;
  const proxy = await startDelayProxy({ t, target: { port }, delayMs: 5, maxQueuedBytes: cap });
  const { socket } = await rawClient(t, proxy);
  const total = 32 * 1024 * 1024;
  const chunk = Buffer.alloc(64 * 1024, 7);
  let written = 0;
  let sawBackPressure = false;
  // Write until the client itself is told to wait (its kernel buffer full), bounded by `total`.
  const writeUntilFull = async (): Promise<void> => {
    while (written < total) {
      written += chunk.length;
      if (!socket.write(chunk)) {
        sawBackPressure = true;
        return;
      }
      await new Promise((resolve) => setImmediate(resolve));
    }
  };
  await writeUntilFull();
  await sleep(300);
  const held = proxy.stats().bytesQueued;
  t.ok(sawBackPressure, `the client saw back-pressure after ${written} bytes`);
  t.ok(held <= cap + 64 * 1024, `the proxy holds ${held} bytes (cap ${cap} + one read)`);
  // The target reads again: everything written arrives.
  targetSocket!.resume();
  socket.on('drain', () => void writeUntilFull());
  await waitFor('the target read every byte', () => targetBytes >= written, 20_000, 20);
  t.ok(targetBytes >= written, `${targetBytes} bytes reached the target`);
});

tap.test('redis-server through the proxy', async (t) => {
  const redis = await startRedis({ t });
  const proxy = await startDelayProxy({ t, target: { port: redis.port }, delayMs: DELAY_MS, name: 'to redis' });

  await t.test('PING round trip takes two one-way delays', async (t) => {
    const client = redisThrough(t, proxy, { enableReadyCheck: false });
    await client.connect();
    const samples: number[] = [];
    for (let i = 0; i < 10; i++) samples.push((await timed(() => client.ping())).ms);
    const sorted = [...samples].sort((a, b) => a - b);
    t.comment(`redis PING RTT at ${DELAY_MS} ms one way: min ${sorted[0]!.toFixed(1)}, median ${sorted[5]!.toFixed(1)}, max ${sorted[9]!.toFixed(1)} ms`);
    t.ok(sorted[0]! >= 2 * DELAY_MS, `min ${sorted[0]!.toFixed(1)} ms >= ${2 * DELAY_MS}`);
  });

  await t.test('2000 pipelined commands answer in order, delayed like one command', async (t) => {
    const client = redisThrough(t, proxy);
    await client.connect();
    await client.del('order');
    const pipeline = client.pipeline();
    for (let i = 0; i < 1000; i++) {
      pipeline.incr('order');
      pipeline.echo(`e${i}`);
    }
    const { value: results, ms } = await timed(() => pipeline.exec());
    t.equal(results?.length, 2000, 'every command answered');
    const errors = (results ?? []).filter(([error]) => error !== null);
    t.same(errors, [], 'no command failed');
    const incrs = (results ?? []).filter((_, i) => i % 2 === 0).map(([, value]) => value);
    const echoes = (results ?? []).filter((_, i) => i % 2 === 1).map(([, value]) => value);
    t.same(incrs, Array.from({ length: 1000 }, (_, i) => i + 1), 'INCR answers 1..1000 in order');
    t.same(echoes, Array.from({ length: 1000 }, (_, i) => `e${i}`), 'ECHO answers in order');
    t.ok(ms >= 2 * DELAY_MS, `the delay applies (${ms.toFixed(1)} ms; about one round trip on an idle machine, not asserted)`);
  });

  await t.test('cut: commands hang, the connection stays open; heal resets it and a new one answers', async (t) => {
    const client = redisThrough(t, proxy);
    await client.connect();
    await client.ping();
    const raw = await rawClient(t, proxy);
    t.equal(await roundTripText(raw, 'PING\r\n'), '+PONG\r\n', 'raw client answers before the cut');
    const accepted = async (): Promise<number> => Number((await redis.cli('INFO', 'stats')).match(/total_connections_received:(\d+)/)![1]);
    const acceptedBefore = await accepted();
    proxy.cut();
    t.ok(proxy.isCut, 'isCut');
    const hung = client.ping();
    hung.catch(() => undefined);
    t.equal(await within(hung, 4 * DELAY_MS + 300), 'pending', 'PING gets no answer while cut');
    raw.socket.write('PING\r\n');
    // A connection opened during the cut is accepted but the target never hears of it.
    const late = await rawClient(t, proxy);
    late.socket.write('PING\r\n');
    await sleep(4 * DELAY_MS + 200);
    t.same(raw.events, [], 'no reset, no FIN on the old connection: a hang');
    t.same(late.events, [], 'the new connection hangs too');
    t.equal(late.received().length, 0, 'and reads nothing');
    t.equal(await accepted(), acceptedBefore + 1, 'redis accepted no connection during the cut but redis-cli\'s own');

    const healedAt = performance.now();
    proxy.heal();
    t.notOk(proxy.isCut, 'not isCut after heal');
    await waitFor('both raw connections reset', () => raw.events.includes('close') && late.events.includes('close'), 2_000, 10);
    t.ok(raw.events.some((e) => e.startsWith('error:ECONNRESET')), `the old connection was reset: ${raw.events.join(',')}`);
    t.ok(proxy.stats().resets >= 3, `${proxy.stats().resets} connections reset at heal`);
    await t.rejects(hung, 'the hung command fails when its connection is reset');
    await waitFor('ioredis reconnected', () => client.status === 'ready', 5_000, 10);
    const { value: pong, ms } = await timed(() => client.ping());
    t.equal(pong, 'PONG', `answers again on a new connection, ${(performance.now() - healedAt).toFixed(0)} ms after heal`);
    t.ok(ms >= 2 * DELAY_MS, `and the delay still applies (${ms.toFixed(1)} ms)`);
  });

  await t.test('heal({ resume: true }) delivers what the cut held, no earlier than heal + delay each way', async (t) => {
    const raw = await rawClient(t, proxy);
    t.equal(await roundTripText(raw, 'PING\r\n'), '+PONG\r\n', 'answers before the cut');
    proxy.cut();
    raw.socket.write('INCR resumed\r\n');
    const late = await rawClient(t, proxy);
    late.socket.write('ECHO late\r\n');
    await sleep(3 * DELAY_MS);
    t.equal(await redis.cli('GET', 'resumed'), '', 'the held command did not run during the cut');
    const healedAt = performance.now();
    proxy.heal({ resume: true });
    await waitFor('held commands answered', () => raw.received().length > 7 && late.received().length > 0, 3_000, 5);
    const elapsed = performance.now() - healedAt;
    t.ok(elapsed >= 2 * DELAY_MS, `answered ${elapsed.toFixed(1)} ms after heal (>= ${2 * DELAY_MS})`);
    t.equal(raw.received().toString(), '+PONG\r\n:1\r\n', 'the old connection resumed: the held INCR ran once');
    t.equal(late.received().toString(), '$4\r\nlate\r\n', 'the connection opened during the cut reached redis at heal');
    t.same(raw.events, [], 'no reset');
  });

  await t.test('setDelay changes the round trip of commands sent after it', async (t) => {
    const client = redisThrough(t, proxy);
    await client.connect();
    proxy.setDelay(10);
    const fast = (await timed(() => client.ping())).ms;
    proxy.setDelay(150);
    const slow = (await timed(() => client.ping())).ms;
    proxy.setDelay(DELAY_MS);
    // Lower bounds only: how much longer a round trip takes depends on how busy the machine is.
    t.ok(fast >= 20, `10 ms one way: ${fast.toFixed(1)} ms`);
    t.ok(slow >= 300, `150 ms one way: ${slow.toFixed(1)} ms, so the raised delay applies`);
    t.throws(() => proxy.setDelay(-1), /delay must be/);
  });
});

tap.test('an unreachable target: the client is reset after one delay, not at once', async (t) => {
  const echo = await startEcho(t);
  const port = echo.port;
  await new Promise<void>((resolve) => echo.server.close(() => resolve()));
  const proxy = await startDelayProxy({ t, target: { port }, delayMs: DELAY_MS });
  const started = performance.now();
  const raw = await rawClient(t, proxy);
  await waitFor('reset', () => raw.events.includes('close'), 3_000, 5);
  const ms = performance.now() - started;
  t.ok(ms >= DELAY_MS, `reset after ${ms.toFixed(1)} ms`);
  t.ok(raw.events.some((e) => e.startsWith('error:ECONNRESET')), raw.events.join(','));
  await waitFor('the proxy forgot the connection', () => proxy.stats().open === 0, 2_000, 10);
});

tap.test('a client that resets during a cut: its reset reaches the target at a resumed heal', async (t) => {
  const echo = await startEcho(t);
  const proxy = await startDelayProxy({ t, target: { port: echo.port }, delayMs: DELAY_MS });
  const raw = await rawClient(t, proxy);
  await roundTrip(raw.socket, Buffer.from('x'));
  await waitFor('echo server has the connection', () => echo.sockets.size === 1, 2_000, 10);
  proxy.cut();
  raw.socket.resetAndDestroy();
  await sleep(3 * DELAY_MS);
  t.equal(echo.sockets.size, 1, 'while cut, the target does not hear of it');
  proxy.heal({ resume: true });
  await waitFor('the target side closed', () => echo.sockets.size === 0, 2_000, 10);
  await waitFor('the proxy forgot the connection', () => proxy.stats().open === 0, 2_000, 10);
  t.equal(proxy.stats().resets, 0, 'resumed, not reset by the heal');
});

tap.test('close destroys every connection, frees the port, and is idempotent', async (t) => {
  const echo = await startEcho(t);
  const proxy = await startDelayProxy({ t, target: { port: echo.port }, delayMs: DELAY_MS });
  const raw = await rawClient(t, proxy);
  await roundTrip(raw.socket, Buffer.from('x'));
  await waitFor('echo server has the connection', () => echo.sockets.size === 1, 2_000, 10);
  await Promise.all([proxy.close(), proxy.close()]);
  await proxy.close();
  await waitFor('client closed', () => raw.events.includes('close'), 2_000, 10);
  await waitFor('target side closed', () => echo.sockets.size === 0, 2_000, 10);
  t.equal(proxy.stats().open, 0, 'no connection left');
  const again = createServer();
  await new Promise<void>((resolve, reject) => {
    again.once('error', reject);
    again.listen(proxy.port, '127.0.0.1', resolve);
  });
  t.pass(`port ${proxy.port} is free again`);
  await new Promise<void>((resolve) => again.close(() => resolve()));
});

/** Writes `text` and resolves with the text of the next chunk(s) read, bounded. */
async function roundTripText(raw: { socket: Socket; received: () => Buffer }, text: string): Promise<string> {
  const before = raw.received().length;
  raw.socket.write(text);
  await waitFor(`an answer to ${JSON.stringify(text)}`, () => raw.received().length > before, 5_000, 5);
  await sleep(5);
  return raw.received().subarray(before).toString();
}

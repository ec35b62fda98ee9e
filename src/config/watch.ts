// Owns the config in force and replaces it on SIGHUP or when the files change.
// A reload compiles everything first and swaps one reference, so a request
// sees either the old config or the new one; a broken edit keeps the old one.
// Start-up compiles on the spot (nothing is served yet); a reload compiles off
// the event loop (compile-off-thread.ts), so decisions go on meanwhile.
import { watch, statSync, type FSWatcher } from 'node:fs';
import { dirname } from 'node:path';
import type { CompiledConfig } from '../core/config-model.js';
import { OffThreadCompiler } from './compile-off-thread.js';
import { compileSources, listConfigFiles, readConfigSources, sourcesSignature, type LoadOptions } from './load.js';
import { errorMessage } from '../errors.js';

export type ReloadReason = 'signal' | 'file';

/** The caller logs and counts; callbacks must not throw (they may run from a timer). */
export interface ConfigWatcherCallbacks {
  onReload(config: CompiledConfig, reason: ReloadReason): void;
  /** Usually a ConfigError; the previous config stays in force. */
  onReloadError(error: unknown, reason: ReloadReason): void;
}

export interface ConfigWatcherOptions {
  /** Quiet time after a file event before reloading (editors and ConfigMap swaps write in steps). */
  debounceMs?: number;
  /** A steady stream of events still reloads after this long. */
  maxDebounceMs?: number;
  /** Backstop for missed fs.watch events: how often file stats are compared. 0 disables. */
  pollIntervalMs?: number;
  /** false: rely on the poll alone (file systems where fs.watch is unreliable, e.g. some network mounts). */
  fsWatch?: boolean;
  /** How files are compiled (--merge-domains, the store's abilities), at start and on every reload. */
  load?: LoadOptions;
}

const DEFAULT_DEBOUNCE_MS = 150;
const DEFAULT_MAX_DEBOUNCE_MS = 2_000;
const DEFAULT_POLL_INTERVAL_MS = 3_000;

/** Cheap change detector: names, inodes, sizes and mtimes of the config files. */
function statSignature(path: string): string {
  try {
    return listConfigFiles(path).map((file) => {
      const stat = statSync(file);
      return `${file}:${stat.ino}:${stat.size}:${stat.mtimeMs}`;
    }).join('|');
  } catch (error: unknown) {
    return `unreadable:${errorMessage(error)}`;
  }
}

export class ConfigWatcher {
  readonly path: string;
  private config: CompiledConfig;
  /** What the last reload attempt read, good or bad: a file event with the same content is no change. */
  private lastAttempt: string;
  private readonly callbacks: ConfigWatcherCallbacks;
  private readonly debounceMs: number;
  private readonly maxDebounceMs: number;
  private readonly pollIntervalMs: number;
  private readonly useFsWatch: boolean;
  private readonly load: LoadOptions;
  private fsWatcher: FSWatcher | undefined;
  private debounceTimer: NodeJS.Timeout | undefined;
  private firstPendingEventMs = 0;
  private pollTimer: NodeJS.Timeout | undefined;
  private lastStats = '';
  private started = false;
  private closed = false;
  private readonly compiler = new OffThreadCompiler();
  /** Stops the reload under way (close()). */
  private readonly closing = new AbortController();
  /** The reload under way, if any. */
  private running: Promise<boolean> | undefined;
  /** A reload asked for while one runs: it starts when that one ends, for everyone who asked meanwhile. */
  private queued: { reason: ReloadReason; result: Promise<boolean> } | undefined;

  /** Loads `path` now; throws ConfigError when it is invalid (fatal at start-up). */
  constructor(path: string, callbacks: ConfigWatcherCallbacks, options: ConfigWatcherOptions = {}) {
    this.path = path;
    this.callbacks = callbacks;
    this.debounceMs = options.debounceMs ?? DEFAULT_DEBOUNCE_MS;
    this.maxDebounceMs = options.maxDebounceMs ?? DEFAULT_MAX_DEBOUNCE_MS;
    this.pollIntervalMs = options.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS;
    this.useFsWatch = options.fsWatch ?? true;
    this.load = options.load ?? {};
    const sources = readConfigSources(path);
    this.config = compileSources(path, sources, this.load);
    this.lastAttempt = sourcesSignature(sources);
  }

  /** The config in force. Read it once per request and use that one object throughout. */
  current(): CompiledConfig {
    return this.config;
  }

  /**
   * Loads everything, then swaps. Resolves true when a new config is in force
   * (after onReload), false when not (after onReloadError, or for nothing
   * new); never rejects. 'signal' (SIGHUP) always reloads; 'file' skips
   * content it has already tried. One reload runs at a time: asked again
   * meanwhile, it reloads once more when that one ends (the files may have
   * changed after they were read), as 'signal' if any of the asks was.
   */
  reload(reason: ReloadReason): Promise<boolean> {
    if (this.closed) return Promise.resolve(false);
    if (this.running === undefined) return this.begin(reason);
    if (this.queued === undefined) {
      const queued = { reason, result: Promise.resolve(false) };
      queued.result = this.running.then(() => {
        this.queued = undefined;
        return this.begin(queued.reason);
      });
      this.queued = queued;
    } else if (reason === 'signal') {
      this.queued.reason = 'signal';
    }
    return this.queued.result;
  }

  private begin(reason: ReloadReason): Promise<boolean> {
    const run = this.attempt(reason).finally(() => {
      if (this.running === run) this.running = undefined;
    });
    this.running = run;
    return run;
  }

  private async attempt(reason: ReloadReason): Promise<boolean> {
    if (this.closed) return false;
    const outcome = await this.compiler.compile(
      { path: this.path, options: this.load, skipIfSignature: reason === 'file' ? this.lastAttempt : undefined },
      this.closing.signal,
    );
    if (this.closed) return false;
    switch (outcome.kind) {
      case 'unchanged':
      case 'cancelled':
        return false;
      case 'failed':
        return this.failed(outcome.signature, outcome.error, reason);
      case 'compiled':
        this.lastAttempt = outcome.signature;
        this.config = outcome.config;
        this.callbacks.onReload(outcome.config, reason);
        return true;
    }
  }

  /** `signature` undefined: the compile itself failed, not the files; the next file event tries again. */
  private failed(signature: string | undefined, error: unknown, reason: ReloadReason): false {
    // The same broken state seen again by the poll is reported once, not every tick.
    if (reason === 'file' && signature === this.lastAttempt) return false;
    if (signature !== undefined) this.lastAttempt = signature;
    this.callbacks.onReloadError(error, reason);
    return false;
  }

  /** Starts watching the files. Idempotent. */
  start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    this.lastStats = statSignature(this.path);
    this.armFsWatch();
    if (this.pollIntervalMs > 0) {
      this.pollTimer = setInterval(() => this.poll(), this.pollIntervalMs);
      this.pollTimer.unref();
    }
  }

  /** Releases every watcher and timer; the process can exit afterwards. */
  close(): void {
    this.closed = true;
    this.closing.abort();
    this.compiler.close();
    this.fsWatcher?.close();
    this.fsWatcher = undefined;
    if (this.debounceTimer !== undefined) clearTimeout(this.debounceTimer);
    this.debounceTimer = undefined;
    if (this.pollTimer !== undefined) clearInterval(this.pollTimer);
    this.pollTimer = undefined;
  }

  /**
   * Watches the directory, not the file: editors replace files by rename and a
   * Kubernetes ConfigMap update swaps the `..data` symlink, both of which a
   * watch on the old file's inode would never see.
   */
  private armFsWatch(): void {
    if (!this.useFsWatch) return;
    let directory: string;
    try {
      directory = statSync(this.path).isDirectory() ? this.path : dirname(this.path);
      this.fsWatcher = watch(directory, { persistent: false }, () => this.fileEvent());
    } catch {
      this.fsWatcher = undefined; // the poll re-arms once the path is back
      return;
    }
    this.fsWatcher.on('error', () => {
      // e.g. the watched directory itself was deleted; the poll re-arms.
      this.fsWatcher?.close();
      this.fsWatcher = undefined;
      this.fileEvent();
    });
  }

  private poll(): void {
    if (this.closed) return;
    if (this.fsWatcher === undefined) this.armFsWatch(); // lost to an error earlier
    const stats = statSignature(this.path);
    if (stats !== this.lastStats) {
      this.lastStats = stats;
      this.fileEvent();
    }
  }

  private fileEvent(): void {
    if (this.closed) return;
    const now = Date.now();
    if (this.debounceTimer === undefined) this.firstPendingEventMs = now;
    else clearTimeout(this.debounceTimer);
    const delay = Math.max(0, Math.min(this.debounceMs, this.firstPendingEventMs + this.maxDebounceMs - now));
    this.debounceTimer = setTimeout(() => {
      this.debounceTimer = undefined;
      if (this.closed) return;
      this.lastStats = statSignature(this.path);
      void this.reload('file');
    }, delay);
    this.debounceTimer.unref();
  }
}

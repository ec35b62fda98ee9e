// The listeners' TLS files (--tls-cert, --tls-key, --tls-client-ca), read at
// start and re-read when they change, so certificates rotate without a
// restart. Both listeners take what this reads; a new set is used only once
// it makes a valid context together (a rotation writes the files one by one).
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import { TlsConfigError, errorMessage } from '../errors.js';

export interface TlsFiles {
  cert: string;
  key: string;
  /** mTLS: clients must present a certificate signed by this CA. */
  clientCa: string | undefined;
}

/** PEM contents of one consistent set of files. */
export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
  clientCa: Buffer | undefined;
}

/** How often the files are compared with what is in use. */
const TLS_RELOAD_INTERVAL_MS = 1_000;

function fingerprint(material: TlsMaterial): string {
  const hash = createHash('sha256').update(material.cert).update('\0').update(material.key);
  if (material.clientCa !== undefined) hash.update('\0').update(material.clientCa);
  return hash.digest('hex');
}

function sameMaterial(a: TlsMaterial, b: TlsMaterial): boolean {
  const sameCa = a.clientCa === undefined ? b.clientCa === undefined : b.clientCa !== undefined && a.clientCa.equals(b.clientCa);
  return sameCa && a.cert.equals(b.cert) && a.key.equals(b.key);
}

/** Throws TlsConfigError naming the file(s) when the set does not make a TLS context (bad PEM, key not matching the cert). */
function checkTlsMaterial(files: TlsFiles, material: TlsMaterial): void {
  try {
    createSecureContext({ cert: material.cert, key: material.key, ca: material.clientCa });
  } catch (error: unknown) {
    const names = [files.cert, files.key, ...(files.clientCa === undefined ? [] : [files.clientCa])].join(', ');
    throw new TlsConfigError(names, `not a usable certificate, key${files.clientCa === undefined ? '' : ' and CA'}: ${errorMessage(error)}`);
  }
}

/** Reads and checks the files at start. Throws TlsConfigError naming the file. */
export function loadTlsMaterial(files: TlsFiles): TlsMaterial {
  const read = (file: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (error: unknown) {
      throw new TlsConfigError(file, `cannot read: ${errorMessage(error)}`);
    }
  };
  const material = { cert: read(files.cert), key: read(files.key), clientCa: files.clientCa === undefined ? undefined : read(files.clientCa) };
  checkTlsMaterial(files, material);
  return material;
}

export interface TlsWatcherCallbacks {
  /** A new, checked set is in use. Must not throw. */
  onChange(material: TlsMaterial): void;
  /** The files changed but do not make a usable set (yet): the previous one stays in use. Must not throw. */
  onError(error: unknown): void;
}

/**
 * Compares the files' contents with the set in use every `intervalMs` (a
 * content compare sees in-place writes, renames and Kubernetes Secret
 * symlink swaps alike), and hands over a new set once it checks out. A set
 * that fails is reported once, then retried quietly until the files change
 * again.
 */
export class TlsFilesWatcher {
  private material: TlsMaterial;
  /** What was last reported as unusable (read error or contents): reported once, not every poll. */
  private lastProblem: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private polling = false;

  constructor(
    private readonly files: TlsFiles,
    initial: TlsMaterial,
    private readonly callbacks: TlsWatcherCallbacks,
    private readonly intervalMs = TLS_RELOAD_INTERVAL_MS,
  ) {
    this.material = initial;
  }

  current(): TlsMaterial {
    return this.material;
  }

  start(): void {
    if (this.timer !== undefined) return;
    this.timer = setInterval(() => void this.poll(), this.intervalMs);
    this.timer.unref();
  }

  close(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One comparison (also what the timer runs). */
  async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      let next: TlsMaterial;
      try {
        const [cert, key, clientCa] = await Promise.all([
          readFile(this.files.cert), readFile(this.files.key),
          this.files.clientCa === undefined ? undefined : readFile(this.files.clientCa),
        ]);
        next = { cert, key, clientCa };
      } catch (error: unknown) {
        // Mid-swap a file can be briefly missing: the set in use stays.
        this.report(`read:${errorMessage(error)}`, new TlsConfigError(this.files.cert, `cannot re-read the TLS files: ${errorMessage(error)}`));
        return;
      }
      if (sameMaterial(next, this.material)) {
        this.lastProblem = undefined;
        return;
      }
      try {
        checkTlsMaterial(this.files, next);
      } catch (error: unknown) {
        this.report(`contents:${fingerprint(next)}`, error);
        return;
      }
      this.material = next;
      this.lastProblem = undefined;
      this.callbacks.onChange(next);
    } finally {
      this.polling = false;
    }
  }

  private report(problem: string, error: unknown): void {
    if (problem === this.lastProblem) return;
    this.lastProblem = problem;
    this.callbacks.onError(error);
  }
}

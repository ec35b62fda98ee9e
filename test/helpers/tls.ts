// A throw-away PKI for TLS tests, made by the real openssl in a temp dir:
// a CA, server certificates for 127.0.0.1/localhost, client certificates.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';

const OPENSSL = process.env['OPENSSL'] ?? 'openssl';

export interface Issued {
  cert: string;
  key: string;
  /** Serial number as openssl and node:tls print it (upper-case hex). */
  serial: string;
}

export interface Pki {
  dir: string;
  /** The CA certificate file. */
  ca: string;
  /** Issues a certificate signed by this CA: `server` (SAN 127.0.0.1, localhost) or `client`. Files under `name`. */
  issue(name: string, kind: 'server' | 'client'): Issued;
  remove(): void;
}

function openssl(args: string[], cwd: string): void {
  execFileSync(OPENSSL, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'], timeout: 20_000 });
}

/** Makes a CA named `name` in a new temp dir (EC P-256 keys: quick to make). */
export function makePki(name = 'test-ca'): Pki {
  const dir = mkdtempSync(join(tmpdir(), 'rl-tls-'));
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', `/CN=${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  return {
    dir,
    ca: join(dir, 'ca.pem'),
    issue(certName, kind) {
      const ext = join(dir, `${certName}.ext`);
      const extension = kind === 'server'
        ? 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n'
        : 'extendedKeyUsage=clientAuth\n';
      execFileSync('sh', ['-c', `printf '%s' "$1" > "$2"`, 'sh', extension, ext]);
      openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
        '-keyout', `${certName}.key`, '-out', `${certName}.csr`, '-subj', `/CN=${certName}`], dir);
      openssl(['x509', '-req', '-in', `${certName}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
        '-out', `${certName}.pem`, '-days', '2', '-extfile', ext], dir);
      const cert = join(dir, `${certName}.pem`);
      return { cert, key: join(dir, `${certName}.key`), serial: new X509Certificate(readFileSync(cert)).serialNumber };
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

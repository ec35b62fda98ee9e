// gRPC server credentials for --tls-cert/--tls-key/--tls-client-ca whose
// certificate can be replaced while serving (rotation without restart).
import { ServerCredentials } from '@grpc/grpc-js';
import type { SecureContextOptions } from 'node:tls';
import type { TlsMaterial } from '../tls-files.js';

function contextOptions(material: TlsMaterial): SecureContextOptions {
  return { cert: material.cert, key: material.key, ...(material.clientCa === undefined ? {} : { ca: material.clientCa }) };
}

/**
 * grpc-js watches server credentials: each update() reaches its listening
 * sockets as setSecureContext, so new handshakes present the new
 * certificate while open connections carry on. With a client CA, clients
 * must present a certificate it signed (mTLS).
 */
export class RotatingServerCredentials extends ServerCredentials {
  constructor(material: TlsMaterial) {
    const mtls = material.clientCa !== undefined;
    super({ requestCert: mtls, rejectUnauthorized: mtls }, contextOptions(material));
  }

  /** The material must already be checked (see checkTlsMaterial): a set grpc-js cannot use stops new connections. */
  update(material: TlsMaterial): void {
    this.updateSecureContextOptions(contextOptions(material));
  }

  override _equals(other: ServerCredentials): boolean {
    return other === this;
  }
}

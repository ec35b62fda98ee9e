import { BlockList, isIP } from 'node:net';

export const DEFAULT_TRUSTED_PROXIES = ['127.0.0.0/8', '::1/128'];

function normalize(address: string): string {
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

/**
 * Resolves the client address of a forward-auth request. Headers are believed
 * only when the peer is a trusted proxy: then X-Real-IP, else the right-most
 * X-Forwarded-For hop that is not itself a trusted proxy.
 */
export class ClientAddressResolver {
  private readonly trusted = new BlockList();

  /** Throws Error naming the bad CIDR. */
  constructor(cidrs: readonly string[]) {
    for (const cidr of cidrs) {
      const [address = '', prefixText] = cidr.trim().split('/');
      const family = isIP(address);
      if (family === 0) throw new Error(`--trusted-proxies: "${cidr}" is not an IP address or CIDR`);
      const maxPrefix = family === 4 ? 32 : 128;
      const prefix = prefixText === undefined ? maxPrefix : Number(prefixText);
      if (!Number.isInteger(prefix) || prefix < 0 || prefix > maxPrefix) {
        throw new Error(`--trusted-proxies: "${cidr}" has a bad prefix length`);
      }
      this.trusted.addSubnet(address, prefix, family === 4 ? 'ipv4' : 'ipv6');
    }
  }

  isTrusted(address: string): boolean {
    const family = isIP(address);
    return family !== 0 && this.trusted.check(address, family === 4 ? 'ipv4' : 'ipv6');
  }

  resolve(peer: string | undefined, realIp: string | undefined, forwardedFor: string | undefined): string {
    const socketAddress = normalize(peer ?? '');
    if (!this.isTrusted(socketAddress)) return socketAddress;
    if (realIp !== undefined && isIP(realIp.trim()) !== 0) return normalize(realIp.trim());
    if (forwardedFor !== undefined) {
      const hops = forwardedFor.split(',').map((hop) => normalize(hop.trim())).filter((hop) => isIP(hop) !== 0);
      for (let i = hops.length - 1; i >= 0; i--) {
        if (!this.isTrusted(hops[i]!)) return hops[i]!;
      }
      if (hops.length > 0) return hops[0]!;
    }
    return socketAddress;
  }
}

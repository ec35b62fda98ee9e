import { AddressRanges, parseAddress, plainAddress } from '../../core/ip-address.js';

/**
 * Resolves the client address of a forward-auth request. Headers are believed
 * only when the peer is a trusted proxy: then X-Real-IP, else the right-most
 * X-Forwarded-For hop that is not itself a trusted proxy.
 */
export class ClientAddressResolver {
  private readonly trusted: AddressRanges;

  /** Throws Error naming the bad CIDR (settings validate the list first). */
  constructor(cidrs: readonly string[]) {
    this.trusted = new AddressRanges(cidrs);
  }

  isTrusted(address: string): boolean {
    return this.trusted.contains(address);
  }

  resolve(peer: string | undefined, realIp: string | undefined, forwardedFor: string | undefined): string {
    const socketAddress = plainAddress(peer ?? '') ?? '';
    if (!this.isTrusted(socketAddress)) return socketAddress;
    const real = realIp?.trim();
    if (real !== undefined && this.isAddress(real)) return plainAddress(real)!;
    if (forwardedFor !== undefined) {
      const hops = forwardedFor.split(',').map((hop) => hop.trim()).filter((hop) => this.isAddress(hop)).map((hop) => plainAddress(hop)!);
      for (let i = hops.length - 1; i >= 0; i--) {
        if (!this.isTrusted(hops[i]!)) return hops[i]!;
      }
      if (hops.length > 0) return hops[0]!;
    }
    return socketAddress;
  }

  private isAddress(text: string): boolean {
    return parseAddress(text) !== undefined;
  }
}

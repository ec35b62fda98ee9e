// IP addresses, in one place: the client address of forward auth, trusted
// proxies, and masked_remote_address. ipaddr.js parses (a small, well-kept
// library: express's proxy-addr uses it); no node:*, so the core stays pure.
import ipaddr from 'ipaddr.js';
import { SettingsError } from '../errors.js';

export const DEFAULT_TRUSTED_PROXIES: readonly string[] = ['127.0.0.0/8', '::1'];

type Address = ipaddr.IPv4 | ipaddr.IPv6;

/**
 * An IP address, or undefined. IPv4 only as four decimal octets (no `0x7f.1`
 * shorthands a proxy would never send); IPv6 with or without brackets and a
 * `%zone`; an IPv4-mapped IPv6 address (`::ffff:1.2.3.4`) is its IPv4 address.
 */
export function parseAddress(text: string): Address | undefined {
  if (text === '') return undefined;
  if (ipaddr.IPv4.isValidFourPartDecimal(text)) return ipaddr.IPv4.parse(text);
  let v6 = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text;
  const zone = v6.indexOf('%');
  if (zone >= 0) v6 = v6.slice(0, zone);
  if (!v6.includes(':') || !ipaddr.IPv6.isValid(v6)) return undefined;
  const address = ipaddr.IPv6.parse(v6);
  return address.isIPv4MappedAddress() ? address.toIPv4Address() : address;
}

/** The client address as a bucket sees it: IPv4-mapped IPv6 as plain IPv4, anything else as given; '' → undefined. */
export function plainAddress(text: string): string | undefined {
  if (text === '') return undefined;
  if (text.length > 7 && text.slice(0, 7).toLowerCase() === '::ffff:') {
    const mapped = parseAddress(text);
    if (mapped !== undefined && mapped.kind() === 'ipv4') return mapped.toString();
  }
  return text;
}

/** `192.168.1.0/24`, `2001:db8::/32` (RFC 5952 text); undefined when `text` is not an IP address. */
export function maskedAddress(text: string, v4PrefixLen: number, v6PrefixLen: number): string | undefined {
  const address = parseAddress(text);
  if (address === undefined) return undefined;
  if (address.kind() === 'ipv4') {
    return `${ipaddr.IPv4.networkAddressFromCIDR(`${address.toString()}/${v4PrefixLen}`).toString()}/${v4PrefixLen}`;
  }
  return `${ipaddr.IPv6.networkAddressFromCIDR(`${address.toString()}/${v6PrefixLen}`).toString()}/${v6PrefixLen}`;
}

/** A set of CIDRs (`10.0.0.0/8`, `::1`); a bare address is a /32 or /128. */
export class AddressRanges {
  private readonly ranges: [Address, number][];

  /** Throws SettingsError naming the first bad entry. */
  constructor(cidrs: readonly string[]) {
    this.ranges = cidrs.map((cidr) => {
      const [text = '', prefixText] = cidr.trim().split('/');
      const address = parseAddress(text);
      if (address === undefined) throw new SettingsError(`"${cidr}" is not an IP address or CIDR`);
      const max = address.kind() === 'ipv4' ? 32 : 128;
      const prefix = prefixText === undefined ? max : Number(prefixText);
      if (!/^\d+$/.test(prefixText ?? '0') || !Number.isInteger(prefix) || prefix < 0 || prefix > max) {
        throw new SettingsError(`"${cidr}" has a bad prefix length`);
      }
      return [address, prefix];
    });
  }

  /** Whether `text` is an IP address inside one of the ranges. */
  contains(text: string): boolean {
    const address = parseAddress(text);
    if (address === undefined) return false;
    for (const [range, prefix] of this.ranges) {
      if (range.kind() === address.kind() && address.match(range, prefix)) return true;
    }
    return false;
  }
}

/** Validates a --trusted-proxies list; throws SettingsError with what is wrong. */
export function parseTrustedProxies(cidrs: readonly string[]): AddressRanges {
  return new AddressRanges(cidrs);
}

// Which resolved addresses a link preview may connect to: public unicast only, unless configured.
import net from 'node:net';

// Not routable on the public internet, or reaching the host itself or its neighbours.
const V4_BLOCKED: Array<[string, number]> = [
  ['0.0.0.0', 8], // "this network", unspecified
  ['10.0.0.0', 8], // private
  ['100.64.0.0', 10], // carrier-grade NAT
  ['127.0.0.0', 8], // loopback
  ['169.254.0.0', 16], // link-local, cloud metadata
  ['172.16.0.0', 12], // private
  ['192.0.0.0', 24], // IETF protocol assignments
  ['192.0.2.0', 24], // documentation
  ['192.88.99.0', 24], // 6to4 relay anycast
  ['192.168.0.0', 16], // private
  ['198.18.0.0', 15], // benchmarking
  ['198.51.100.0', 24], // documentation
  ['203.0.113.0', 24], // documentation
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, broadcast
];

const V6_BLOCKED: Array<[string, number]> = [
  ['::', 128], // unspecified
  ['::1', 128], // loopback
  ['::', 96], // IPv4-compatible (deprecated), would reach IPv4 space
  ['::ffff:0:0', 96], // IPv4-mapped: whatever it maps to, never needed for a public page
  ['64:ff9b::', 96], // NAT64, embeds an IPv4 address
  ['64:ff9b:1::', 48], // local-use NAT64
  ['100::', 64], // discard-only
  ['2001:db8::', 32], // documentation
  ['2002::', 16], // 6to4, embeds an IPv4 address
  ['fc00::', 7], // unique local
  ['fe80::', 10], // link-local
  ['fec0::', 10], // site-local (deprecated)
  ['ff00::', 8], // multicast
];

// Two lists: one BlockList also matches an IPv4 address against IPv6 rules (as ::ffff:a.b.c.d).
const blockedV4 = new net.BlockList();
for (const [prefix, bits] of V4_BLOCKED) blockedV4.addSubnet(prefix, bits, 'ipv4');
const blockedV6 = new net.BlockList();
for (const [prefix, bits] of V6_BLOCKED) blockedV6.addSubnet(prefix, bits, 'ipv6');

export interface AddressPolicy {
  /** Allow every address (development and tests against a local server). */
  allowPrivate: boolean;
  /** Exact addresses allowed even though private, e.g. an intranet wiki. */
  allowAddresses?: readonly string[];
}

/** Whether a literal IP address may be connected to; anything that is not an IP is refused. */
export function isAddressAllowed(address: string, policy: AddressPolicy): boolean {
  const family = net.isIP(address);
  if (family === 0) return false;
  if (policy.allowPrivate) return true;
  if (policy.allowAddresses?.includes(address)) return true;
  return family === 4 ? !blockedV4.check(address, 'ipv4') : !blockedV6.check(address, 'ipv6');
}

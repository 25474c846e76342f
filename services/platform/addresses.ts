import { isIPv4, isIPv6 } from 'node:net';

/**
 * The blocks a client address counts in, for the limits on sign-in flows and connections: an
 * IPv4 address is one host and its own site; an IPv6 address counts in its /64 (what one host or
 * home is handed: a holder of one picks any of 2^64 addresses) and its /48 (what one site is
 * handed). An address that is neither (a test's fake) is its own.
 */
export function addressBlocks(ip: string): { host: string; site: string } {
  const bare = ip.split('%')[0]!; // a zone id names an interface, not a host
  if (isIPv4(bare)) return { host: bare, site: bare };
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(bare);
  if (mapped && isIPv4(mapped[1]!)) return { host: mapped[1]!, site: mapped[1]! };
  if (!isIPv6(bare)) return { host: ip, site: ip };
  const groups = ipv6Groups(bare);
  const hex = (n: number) =>
    groups
      .slice(0, n)
      .map((g) => g.toString(16))
      .join(':');
  return { host: `${hex(4)}::/64`, site: `${hex(3)}::/48` };
}

/** The eight 16-bit groups of a valid IPv6 address (an embedded IPv4 tail as two). */
function ipv6Groups(ip: string): number[] {
  const parse = (part: string): number[] =>
    part === ''
      ? []
      : part.split(':').flatMap((g) => {
          if (g.includes('.')) {
            const [a, b, c, d] = g.split('.').map(Number) as [number, number, number, number];
            return [(a << 8) | b, (c << 8) | d];
          }
          return [parseInt(g, 16)];
        });
  const [head, tail] = ip.includes('::') ? (ip.split('::') as [string, string]) : [ip, undefined];
  const h = parse(head);
  if (tail === undefined) return h;
  const t = parse(tail);
  return [...h, ...Array<number>(8 - h.length - t.length).fill(0), ...t];
}

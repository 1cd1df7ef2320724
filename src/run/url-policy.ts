/**
 * The one URL policy for every input the app fetches (experiments, recipes, stage sources and the
 * files an experiment refers to); containers/common/starfish_io.py holds the same rules in Python.
 *
 * - https:// only (`http://` can be altered on the way; other schemes are not inputs); `file://`
 *   and paths only where the caller says files are allowed (the local backend).
 * - The URL is parsed once, by WHATWG URL, which turns every IPv4 spelling (2130706433,
 *   0177.0.0.1, 0x7f.1, 127.1, %31%32%37.0.0.1, full-width digits) into its dotted form, so the
 *   address checked is the address meant. No user name or password in the URL.
 * - Every address the name resolves to must be a public internet address: loopback, link-local
 *   (instance and container metadata), private, shared (CGNAT), unspecified, multicast,
 *   broadcast, reserved, documentation and benchmarking ranges, IPv6 unique local, link-local
 *   and site-local, and IPv4-mapped / NAT64 / compatible / 6to4 / Teredo forms are refused.
 * - The connection is pinned to the address that was checked (`pinnedLookup`): the name is
 *   resolved once, so a second DNS answer cannot send the request elsewhere (DNS rebinding);
 *   TLS still verifies the certificate against the host name.
 * - An optional host allowlist narrows this further; it never admits an internal address.
 */
import dns from 'node:dns';
import { isIPv4, isIPv6, type LookupFunction } from 'node:net';
import { fileURLToPath } from 'node:url';
import { ok, refuse, type Result } from '../result.js';

export interface UrlPolicy {
  /**
   * Hosts https inputs may come from: exact names (`data.lab.org`) or `*.lab.org` for any name
   * under lab.org. Absent or empty: any host whose addresses are public.
   */
  allowedHosts?: readonly string[];
  /**
   * Addresses accepted although they are not public. Only for tests that serve on loopback;
   * never set from configuration.
   */
  testOnlyAddresses?: readonly string[];
}

/** The resolver at the edge: every address of a name (dns.lookup with all: true). */
export type Resolve = (hostname: string) => Promise<Array<{ address: string; family: number }>>;

const systemResolve: Resolve = (hostname) => dns.promises.lookup(hostname, { all: true, verbatim: true });

/** An https URL whose host was checked, and the one address the connection must use. */
export interface CheckedTarget {
  url: URL;
  /** The host name without brackets or a trailing dot: SNI, the Host header, the certificate check. */
  host: string;
  address: string;
  family: 4 | 6;
}

export type Fetchable = { kind: 'https'; url: URL } | { kind: 'file'; path: string };

const EXAMPLE_PATH = '/iss/experiment.json';
const PUBLIC_ONLY = 'Inputs are read only from servers on the public internet';

// ───── address ranges ─────

const LOOPBACK = 'a loopback address (this machine itself)';
const LINK_LOCAL = 'a link-local address (where cloud instance and container metadata are served)';
const PRIVATE = 'a private network address (RFC 1918)';
const DOCUMENTATION = 'a documentation address (reserved for examples, never a real server)';

interface Block {
  base: bigint;
  bits: number;
  what: string;
}

const V4_BLOCKS: Block[] = [
  ['0.0.0.0/8', 'an unspecified address (0.0.0.0/8, "this host")'],
  ['10.0.0.0/8', PRIVATE],
  ['100.64.0.0/10', 'a shared address (carrier-grade NAT, 100.64.0.0/10), not on the public internet'],
  ['127.0.0.0/8', LOOPBACK],
  ['169.254.0.0/16', LINK_LOCAL],
  ['172.16.0.0/12', PRIVATE],
  ['192.0.0.0/24', 'an IETF protocol address (192.0.0.0/24), not on the public internet'],
  ['192.0.2.0/24', DOCUMENTATION],
  ['192.88.99.0/24', 'a reserved address (the retired 6to4 relays, 192.88.99.0/24)'],
  ['192.168.0.0/16', PRIVATE],
  ['198.18.0.0/15', 'a benchmarking address (198.18.0.0/15), not on the public internet'],
  ['198.51.100.0/24', DOCUMENTATION],
  ['203.0.113.0/24', DOCUMENTATION],
  ['224.0.0.0/4', 'a multicast address'],
  ['255.255.255.255/32', 'the broadcast address'],
  ['240.0.0.0/4', 'a reserved address (240.0.0.0/4)'],
].map(([cidr, what]) => block(cidr!, what!, 4));

const V6_BLOCKS: Block[] = [
  ['::/128', 'the unspecified IPv6 address'],
  ['::1/128', 'the IPv6 loopback address (this machine itself)'],
  ['64:ff9b:1::/48', 'a local-use NAT64 address (64:ff9b:1::/48), not on the public internet'],
  ['::/96', 'an IPv4-compatible IPv6 address (a retired form)'],
  ['fc00::/7', 'an IPv6 unique local address (fc00::/7, a private network)'],
  ['fe80::/10', 'an IPv6 link-local address (fe80::/10; cloud metadata is served there too)'],
  ['fec0::/10', 'an IPv6 site-local address (fec0::/10, a retired private range)'],
  ['ff00::/8', 'an IPv6 multicast address'],
  ['2001::/32', 'a Teredo tunnel address (2001::/32)'],
  ['2001:db8::/32', DOCUMENTATION],
  ['2001::/23', 'an IETF protocol IPv6 address (2001::/23), not on the public internet'],
  ['2002::/16', 'a 6to4 tunnel address (2002::/16)'],
  ['3fff::/20', DOCUMENTATION],
].map(([cidr, what]) => block(cidr!, what!, 6));

/** IPv6 forms that carry an IPv4 address in their last 32 bits, judged by that address. */
const V6_EMBEDDING: Block[] = [
  ['::ffff:0:0/96', 'IPv4-mapped'],
  ['64:ff9b::/96', 'NAT64'],
].map(([cidr, what]) => block(cidr!, what!, 6));

const GLOBAL_UNICAST = block('2000::/3', '', 6);

function block(cidr: string, what: string, family: 4 | 6): Block {
  const [base, bits] = cidr.split('/');
  return { base: family === 4 ? ipv4Value(base!) : ipv6Value(base!), bits: Number(bits), what };
}

function ipv4Value(address: string): bigint {
  return address.split('.').reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n);
}

/** 128-bit value of a valid IPv6 address (net.isIPv6), with a dotted IPv4 tail if it has one. */
function ipv6Value(address: string): bigint {
  let text = address;
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    const v4 = ipv4Value(dotted[1]!);
    text = `${text.slice(0, dotted.index)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const front = head ? head.split(':') : [];
  const back = tail ? tail.split(':') : [];
  const groups = tail === undefined ? front : [...front, ...Array<string>(8 - front.length - back.length).fill('0'), ...back];
  return groups.reduce((acc, group) => (acc << 16n) | BigInt(parseInt(group, 16)), 0n);
}

function inBlock(value: bigint, b: Block, width: number): boolean {
  const shift = BigInt(width - b.bits);
  return value >> shift === b.base >> shift;
}

function ipv4FromValue(value: bigint): string {
  return [24n, 16n, 8n, 0n].map((s) => String((value >> s) & 0xffn)).join('.');
}

function v4Refusal(value: bigint): string | undefined {
  return V4_BLOCKS.find((b) => inBlock(value, b, 32))?.what;
}

function v6Refusal(value: bigint): string | undefined {
  const embedding = V6_EMBEDDING.find((b) => inBlock(value, b, 128));
  if (embedding) {
    const v4 = value & 0xffffffffn;
    const what = v4Refusal(v4);
    return what && `the ${embedding.what} IPv6 form of ${ipv4FromValue(v4)}, ${what}`;
  }
  const blocked = V6_BLOCKS.find((b) => inBlock(value, b, 128));
  if (blocked) return blocked.what;
  if (!inBlock(value, GLOBAL_UNICAST, 128)) return 'a reserved IPv6 address (outside the global unicast range 2000::/3)';
  return undefined;
}

/**
 * Why `address` may not be fetched from (what range it is in), or undefined for a public
 * internet address. Anything that is not a plain IPv4 or IPv6 address is refused.
 */
function addressRefusal(address: string): string | undefined {
  if (isIPv4(address)) return v4Refusal(ipv4Value(address));
  if (address.includes('%')) return 'a scoped IPv6 address (a zone index names a local network interface)';
  if (isIPv6(address)) return v6Refusal(ipv6Value(address));
  return 'not an IP address';
}

function sameAddress(a: string, b: string): boolean {
  if (isIPv4(a) && isIPv4(b)) return ipv4Value(a) === ipv4Value(b);
  if (isIPv6(a) && isIPv6(b)) return ipv6Value(a) === ipv6Value(b);
  return false;
}

function refusalFor(address: string, policy: UrlPolicy): string | undefined {
  if (policy.testOnlyAddresses?.some((allowed) => sameAddress(allowed, address))) return undefined;
  return addressRefusal(address);
}

// ───── URLs ─────

function exampleUrl(policy: UrlPolicy): string {
  const host = policy.allowedHosts?.[0]?.replace(/^\*\./, 'data.');
  return `https://${host ?? 'example.org'}${EXAMPLE_PATH}`;
}

function hostAllowed(host: string, allowed: readonly string[]): boolean {
  return allowed.some((entry) => {
    const e = entry.trim().toLowerCase().replace(/\.$/, '');
    return e.startsWith('*.') ? host.endsWith(e.slice(1)) : host === e;
  });
}

function bare(hostname: string): string {
  return hostname.replace(/^\[(.*)\]$/, '$1').replace(/\.$/, '');
}

/**
 * The checks that need no network, for an https:// URL: it parses, carries no credentials, its
 * host is on the allowlist (when there is one), and a literal address is a public one. Names
 * are resolved and checked by `resolveHttps`.
 */
export function checkHttpsUrl(url: string, policy: UrlPolicy = {}): Result<URL> {
  const example = exampleUrl(policy);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return refuse(`${url} is not a valid URL. Example: ${example}`);
  }
  if (parsed.protocol !== 'https:') return refuse(`${url} is refused: inputs are read over https:// only. Example: ${example}`);
  if (!url.startsWith('https://')) return refuse(`${url} is refused: write the URL as https://<host>/<path>, in lower case with two slashes, e.g. ${example}`);
  if (parsed.username || parsed.password) return refuse(`${url} is refused: it carries a user name or password, which inputs may not. Give a URL without credentials, e.g. ${example}`);
  const host = bare(parsed.hostname);
  const allowed = policy.allowedHosts ?? [];
  if (allowed.length > 0 && !hostAllowed(host, allowed)) {
    return refuse(`${url} is refused: this deployment reads https inputs only from ${allowed.join(', ')}. Example: ${example}`);
  }
  if (isIPv4(host) || isIPv6(host)) {
    const what = refusalFor(host, policy);
    if (what) return refuse(`${url} is refused: ${host} is ${what}. ${PUBLIC_ONLY}, e.g. ${example}`);
  }
  return ok(parsed);
}

const SCHEME = /^([a-z][a-z0-9+.-]+):/i;

/**
 * What a location other than s3:// is to a reader: a checked https URL, or (only when `files`,
 * the local backend) a file. http:// and every other scheme are refused.
 */
export function checkFetchable(location: string, policy: UrlPolicy & { files: boolean }): Result<Fetchable> {
  const scheme = SCHEME.exec(location)?.[1]?.toLowerCase();
  if (scheme === 'https') {
    const checked = checkHttpsUrl(location, policy);
    return checked.ok ? ok({ kind: 'https', url: checked.value }) : checked;
  }
  const example = exampleUrl(policy);
  if (scheme === 'http') return refuse(`${location} is refused: http:// is not read, because anyone on the way can change what it returns. Use https://, e.g. ${example}`);
  if (scheme === 'file' && policy.files) return fileUrlPath(location);
  if (scheme === 'file') return refuse(`${location} is refused: a file:// URL names a file on one machine, which this deployment cannot read. Use an s3:// or https:// URL, e.g. ${example}`);
  if (scheme) return refuse(`${location} is refused: ${scheme}: URLs are not inputs. Use an https:// URL, e.g. ${example}`);
  if (!policy.files) return refuse(`${location} is a file path, which this deployment cannot read. Use an s3:// or https:// URL, e.g. ${example}`);
  return ok({ kind: 'file', path: location });
}

function fileUrlPath(location: string): Result<Fetchable> {
  try {
    return ok({ kind: 'file', path: fileURLToPath(location) });
  } catch {
    return refuse(`${location} is not a file:// URL of this machine. Example: file:///data/iss/experiment.json, or the plain path /data/iss/experiment.json`);
  }
}

/**
 * `checkHttpsUrl`, then the host resolved once (every address it has must be public) and the
 * first address chosen: the connection goes there and nowhere else (`pinnedLookup`).
 */
export async function resolveHttps(url: string, policy: UrlPolicy = {}, resolve: Resolve = systemResolve): Promise<Result<CheckedTarget>> {
  const checked = checkHttpsUrl(url, policy);
  if (!checked.ok) return checked;
  const host = bare(checked.value.hostname);
  if (isIPv4(host) || isIPv6(host)) return ok({ url: checked.value, host, address: host, family: isIPv4(host) ? 4 : 6 });
  let answers: Array<{ address: string; family: number }>;
  try {
    answers = await resolve(host);
  } catch (error) {
    return refuse(`${url} could not be read: the name ${host} was not found (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}). Check the URL, e.g. ${exampleUrl(policy)}`);
  }
  if (answers.length === 0) return refuse(`${url} could not be read: the name ${host} has no address. Check the URL, e.g. ${exampleUrl(policy)}`);
  for (const { address } of answers) {
    const what = refusalFor(address, policy);
    if (what) return refuse(`${url} is refused: ${host} resolves to ${address}, which is ${what}. ${PUBLIC_ONLY}, e.g. ${exampleUrl(policy)}`);
  }
  const first = answers[0]!;
  return ok({ url: checked.value, host, address: first.address, family: isIPv4(first.address) ? 4 : 6 });
}

/**
 * A `lookup` for net/tls/https that answers the checked address for the checked host and fails
 * for any other name: whatever DNS says now, the socket connects where the check was made.
 */
export function pinnedLookup(target: Pick<CheckedTarget, 'host' | 'address' | 'family'>): LookupFunction {
  return (hostname, options, callback) => {
    if (hostname !== target.host) {
      callback(Object.assign(new Error(`${hostname} was not checked by the URL policy (only ${target.host} was)`), { code: 'ENOTFOUND' }), '', 0);
      return;
    }
    if (options.all) callback(null, [{ address: target.address, family: target.family }]);
    else callback(null, target.address, target.family);
  };
}

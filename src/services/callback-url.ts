// Where taskrelay may POST a user's results. Checked when a run or schedule is created and again
// before every delivery attempt, with the same rules. Hostnames are not resolved (Workers cannot),
// so the rules apply to the URL as written; Cloudflare's fetch does not reach private networks.

export interface CallbackUrlPolicy {
  /** Local development only: allows http and loopback/private hosts (the local stack's receivers). */
  allowHttpCallbacks: boolean;
}

/** Returns why the URL is refused, or null when it may be used. */
export function callbackUrlProblem(raw: string, policy: CallbackUrlPolicy): string | null {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return "is not a valid absolute URL";
  }
  if (url.username || url.password) return "must not carry credentials";
  if (url.protocol !== "https:" && !(policy.allowHttpCallbacks && url.protocol === "http:")) {
    return policy.allowHttpCallbacks ? "must use https or http" : "must use https";
  }
  if (policy.allowHttpCallbacks) return null;

  const host = url.hostname.toLowerCase();
  if (host === "localhost" || host.endsWith(".localhost")) return "must not point at localhost";
  const ipv4 = parseIPv4(host);
  if (ipv4 !== null) return blockedIPv4(ipv4) ? `must not point at a ${blockedIPv4(ipv4)} address` : null;
  if (host.startsWith("[")) {
    const reason = blockedIPv6(host.slice(1, -1));
    return reason ? `must not point at a ${reason} address` : null;
  }
  return null;
}

/** The URL parser already normalised 0x7f.1 and 2130706433 to dotted quads. */
function parseIPv4(host: string): number | null {
  const parts = host.split(".");
  if (parts.length !== 4 || !parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255)) return null;
  return parts.reduce((acc, p) => acc * 256 + Number(p), 0);
}

const IPV4_BLOCKS: Array<[string, number, string]> = [
  ["0.0.0.0", 8, "reserved"],
  ["10.0.0.0", 8, "private"],
  ["100.64.0.0", 10, "carrier-grade NAT"],
  ["127.0.0.0", 8, "loopback"],
  ["169.254.0.0", 16, "link-local or cloud metadata"],
  ["172.16.0.0", 12, "private"],
  ["192.0.0.0", 24, "reserved"],
  ["192.168.0.0", 16, "private"],
  ["198.18.0.0", 15, "benchmarking"],
  ["224.0.0.0", 4, "multicast"],
  ["240.0.0.0", 4, "reserved"],
];

function blockedIPv4(address: number): string | null {
  for (const [base, bits, reason] of IPV4_BLOCKS) {
    const start = parseIPv4(base) ?? 0;
    const size = 2 ** (32 - bits);
    if (address >= start && address < start + size) return reason;
  }
  return null;
}

function blockedIPv6(text: string): string | null {
  const words = expandIPv6(text);
  if (!words) return "malformed IPv6";
  const [w0 = 0, , , , , w5 = 0, w6 = 0, w7 = 0] = words;
  const allZeroUntil = (n: number) => words.slice(0, n).every((w) => w === 0);
  if (allZeroUntil(7) && (w7 === 0 || w7 === 1)) return w7 === 1 ? "loopback" : "unspecified";
  // IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible addresses carry an IPv4 address: judge that.
  if (allZeroUntil(5) && (w5 === 0xffff || w5 === 0)) return blockedIPv4(w6 * 65536 + w7);
  if ((w0 & 0xfe00) === 0xfc00) return "unique-local (private)";
  if ((w0 & 0xffc0) === 0xfe80) return "link-local";
  if ((w0 & 0xff00) === 0xff00) return "multicast";
  return null;
}

function expandIPv6(text: string): number[] | null {
  let source = text;
  // A trailing dotted quad becomes two 16-bit words.
  const dotted = source.match(/(\d+\.\d+\.\d+\.\d+)$/);
  if (dotted?.[1]) {
    const v4 = parseIPv4(dotted[1]);
    if (v4 === null) return null;
    source = `${source.slice(0, -dotted[1].length)}${(v4 >>> 16).toString(16)}:${(v4 & 0xffff).toString(16)}`;
  }
  const halves = source.split("::");
  if (halves.length > 2) return null;
  const head = halves[0] ? halves[0].split(":") : [];
  const tail = halves.length === 2 && halves[1] ? halves[1].split(":") : [];
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return null;
  const words = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill("0"), ...tail].map((w) =>
    /^[0-9a-f]{1,4}$/i.test(w) ? Number.parseInt(w, 16) : Number.NaN,
  );
  return words.some(Number.isNaN) ? null : words;
}

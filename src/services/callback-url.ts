// Where taskrelay may POST a user's results. Checked when a run or schedule is created and again
// before every delivery attempt, with the same rules. Hostnames are not resolved (Workers cannot),
// so the rules apply to the URL as written; Cloudflare's fetch does not reach private networks.
//
// ALLOW_HTTP_CALLBACKS (the local stack) opens exactly two doors: `http`, and hosts on the developer's
// own machine or network (localhost, loopback, private ranges), where its local receivers listen.
// Link-local and cloud metadata addresses stay shut even then: a relay run on a cloud VM must not
// be talked into POSTing to its instance metadata service. An IPv4 address written inside an IPv6
// one (mapped, translated, compatible, NAT64, 6to4) is judged as the IPv4 address it carries, and
// never gets the local exception: a receiver on this machine is written 127.0.0.1, not ::ffff:0:7f00:1.

export interface CallbackUrlPolicy {
  /** Local development only: allows http and loopback/private hosts (the local stack's receivers). */
  allowHttpCallbacks: boolean;
}

/** Why an address is refused, and whether the local flag lifts the refusal. */
interface Block {
  reason: string;
  /** Allowed with ALLOW_HTTP_CALLBACKS: an address of the developer's own machine or network. */
  local: boolean;
}

/** Host names of cloud metadata services (they resolve to link-local addresses on cloud VMs). */
const METADATA_HOSTS = new Set(["metadata.google.internal", "metadata.goog", "metadata", "instance-data"]);

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
  const block = hostBlock(url.hostname.toLowerCase());
  if (!block || (block.local && policy.allowHttpCallbacks)) return null;
  const local = policy.allowHttpCallbacks ? ", even with ALLOW_HTTP_CALLBACKS" : "";
  return `must not point at ${block.reason}${local}`;
}

function hostBlock(host: string): Block | null {
  // The URL parser keeps a name's trailing dots ("localhost." is the same host as "localhost").
  const name = host.replace(/\.+$/, "");
  if (name === "localhost" || name.endsWith(".localhost")) {
    return name === host
      ? { reason: "localhost", local: true }
      : {
          reason: `localhost written with a trailing dot (${host}); write localhost or 127.0.0.1`,
          local: false,
        };
  }
  if (METADATA_HOSTS.has(name)) return { reason: "a cloud metadata service", local: false };
  // The URL parser already normalised 0x7f.1, 2130706433 and "127.0.0.1." to dotted quads.
  const ipv4 = parseIPv4(host);
  if (ipv4 !== null) return ipv4Block(ipv4);
  if (host.startsWith("[")) return ipv6Block(host.slice(1, -1));
  return null;
}

function parseIPv4(host: string): number | null {
  const parts = host.split(".");
  if (parts.length !== 4 || !parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255)) return null;
  return parts.reduce((acc, p) => acc * 256 + Number(p), 0);
}

const IPV4_BLOCKS: Array<[base: string, bits: number, reason: string, local: boolean]> = [
  ["0.0.0.0", 8, "reserved", false],
  ["10.0.0.0", 8, "private", true],
  ["100.64.0.0", 10, "carrier-grade NAT", false],
  ["127.0.0.0", 8, "loopback", true],
  ["169.254.0.0", 16, "link-local or cloud metadata", false],
  ["172.16.0.0", 12, "private", true],
  ["192.0.0.0", 24, "reserved", false],
  ["192.168.0.0", 16, "private", true],
  ["198.18.0.0", 15, "benchmarking", false],
  ["224.0.0.0", 4, "multicast", false],
  ["240.0.0.0", 4, "reserved", false],
];

function ipv4Block(address: number): Block | null {
  for (const [base, bits, reason, local] of IPV4_BLOCKS) {
    const start = parseIPv4(base) ?? 0;
    if (address >= start && address < start + 2 ** (32 - bits))
      return { reason: `a ${reason} address`, local };
  }
  return null;
}

function dottedQuad(address: number): string {
  return [24, 16, 8, 0].map((shift) => (address >>> shift) & 255).join(".");
}

function ipv6Block(text: string): Block | null {
  const words = expandIPv6(text);
  if (!words) return { reason: "a malformed IPv6 address", local: false };
  const [w0 = 0, w1 = 0, w2 = 0, , w4 = 0, w5 = 0, w6 = 0, w7 = 0] = words;
  const zeroUntil = (n: number) => words.slice(0, n).every((w) => w === 0);
  if (zeroUntil(7) && w7 === 1) return { reason: "a loopback address", local: true };
  if (zeroUntil(7) && w7 === 0) return { reason: "an unspecified address", local: false };

  // IPv4 addresses carried inside IPv6 ones: judged as that IPv4 address, never as local.
  const low32 = w6 * 65536 + w7;
  if (zeroUntil(5) && w5 === 0xffff) return embedded("an IPv4-mapped", low32);
  if (zeroUntil(4) && w4 === 0xffff && w5 === 0) return embedded("an IPv4-translated", low32);
  if (zeroUntil(6)) return embedded("an IPv4-compatible", low32);
  if (w0 === 0x64 && w1 === 0xff9b && words.slice(2, 6).every((w) => w === 0))
    return embedded("a NAT64", low32);
  if (w0 === 0x64 && w1 === 0xff9b && w2 === 1) return { reason: "a local-use NAT64 address", local: false };
  if (w0 === 0x2002) return embedded("a 6to4", w1 * 65536 + w2);

  // AWS's instance metadata service over IPv6, inside the unique-local range.
  if (words.join(":") === [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254].join(":"))
    return { reason: "a cloud metadata address", local: false };
  if ((w0 & 0xfe00) === 0xfc00) return { reason: "a unique-local (private) address", local: true };
  if ((w0 & 0xffc0) === 0xfe80) return { reason: "a link-local address", local: false };
  if ((w0 & 0xffc0) === 0xfec0) return { reason: "a site-local address", local: false };
  if ((w0 & 0xff00) === 0xff00) return { reason: "a multicast address", local: false };
  return null;
}

/** An IPv4 address inside an IPv6 one: refused when the IPv4 address would be, in any mode. */
function embedded(form: string, ipv4: number): Block | null {
  const inner = ipv4Block(ipv4);
  return inner
    ? { reason: `${inner.reason} (${dottedQuad(ipv4)} inside ${form} IPv6 address)`, local: false }
    : null;
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

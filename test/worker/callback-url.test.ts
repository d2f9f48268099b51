import { describe, expect, it } from "vitest";
import { callbackUrlProblem } from "../../src/services/callback-url";

const strict = { allowHttpCallbacks: false };
const local = { allowHttpCallbacks: true };

describe("callback URL policy", () => {
  it.each([
    "https://example.com/hooks",
    "https://hooks.example.co.uk:8443/taskrelay?x=1",
    "https://93.184.216.34/hook",
    "https://[2606:2800:220:1:248:1893:25c8:1946]/hook",
  ])("accepts %s", (url) => {
    expect(callbackUrlProblem(url, strict)).toBeNull();
  });

  it.each([
    ["http://example.com/hook", "https"],
    ["ftp://example.com/hook", "https"],
    ["not a url", "valid absolute URL"],
    ["https://user:pass@example.com/", "credentials"],
    ["https://localhost/hook", "localhost"],
    ["https://api.localhost/hook", "localhost"],
    ["https://127.0.0.1/hook", "loopback"],
    ["https://0x7f.1/hook", "loopback"],
    ["https://2130706433/hook", "loopback"],
    ["https://10.1.2.3/hook", "private"],
    ["https://172.16.0.1/hook", "private"],
    ["https://172.31.255.255/hook", "private"],
    ["https://192.168.1.1/hook", "private"],
    ["https://169.254.169.254/latest/meta-data", "metadata"],
    ["https://100.64.0.1/hook", "carrier-grade NAT"],
    ["https://100.127.255.255/hook", "carrier-grade NAT"],
    ["https://0.0.0.0/hook", "reserved"],
    ["https://[::1]/hook", "loopback"],
    ["https://[::]/hook", "unspecified"],
    ["https://[fe80::1]/hook", "link-local"],
    ["https://[fd00:ec2::254]/hook", "cloud metadata"],
    ["https://[fd12:3456::1]/hook", "unique-local"],
    ["https://127.0.0.1./hook", "loopback"],
    ["https://[::ffff:127.0.0.1]/hook", "loopback"],
    ["https://[::ffff:10.0.0.1]/hook", "private"],
  ])("refuses %s (%s)", (url, reason) => {
    expect(callbackUrlProblem(url, strict)).toContain(reason);
  });

  it("keeps neighbours of blocked ranges allowed", () => {
    expect(callbackUrlProblem("https://172.32.0.1/", strict)).toBeNull();
    expect(callbackUrlProblem("https://100.128.0.1/", strict)).toBeNull();
    expect(callbackUrlProblem("https://11.0.0.1/", strict)).toBeNull();
  });

  it.each([
    ["https://localhost./hook", "trailing dot"],
    ["https://api.localhost./hook", "trailing dot"],
    ["https://LOCALHOST../hook", "trailing dot"],
    ["https://[::ffff:0:7f00:1]/hook", "loopback address (127.0.0.1 inside an IPv4-translated IPv6 address)"],
    ["https://[::ffff:7f00:1]/hook", "loopback address (127.0.0.1 inside an IPv4-mapped IPv6 address)"],
    ["https://[::127.0.0.1]/hook", "loopback address (127.0.0.1 inside an IPv4-compatible IPv6 address)"],
    ["https://[64:ff9b::127.0.0.1]/hook", "loopback address (127.0.0.1 inside a NAT64 IPv6 address)"],
    ["https://[64:ff9b::a9fe:a9fe]/hook", "metadata address (169.254.169.254 inside a NAT64"],
    ["https://[64:ff9b:1::a00:1]/hook", "local-use NAT64"],
    ["https://[2002:7f00:1::]/hook", "loopback address (127.0.0.1 inside a 6to4 IPv6 address)"],
    ["https://[2002:a9fe:a9fe::1]/hook", "metadata address (169.254.169.254 inside a 6to4"],
    ["https://[2002:c0a8:101::]/hook", "private address (192.168.1.1 inside a 6to4"],
    ["https://[fec0::1]/hook", "site-local"],
    ["https://[ff02::1]/hook", "multicast"],
    ["https://metadata.google.internal/computeMetadata/v1/", "cloud metadata service"],
    ["https://metadata.google.internal./computeMetadata/v1/", "cloud metadata service"],
  ])("refuses %s in every mode (%s)", (url, reason) => {
    expect(callbackUrlProblem(url, strict)).toContain(reason);
    expect(callbackUrlProblem(url.replace("https:", "http:"), local)).toContain(reason);
  });

  it("judges an IPv4 address inside an IPv6 one as that address: a public one passes", () => {
    expect(callbackUrlProblem("https://[::ffff:93.184.216.34]/hook", strict)).toBeNull();
    expect(callbackUrlProblem("https://[64:ff9b::93.184.216.34]/hook", strict)).toBeNull();
    expect(callbackUrlProblem("https://[2002:5db8:d822::1]/hook", strict)).toBeNull();
  });

  it.each([
    "http://127.0.0.1:9000/hook",
    "http://localhost:8789/callback",
    "http://receiver.localhost:8789/callback",
    "http://[::1]:8789/callback",
    "http://10.1.2.3/hook",
    "http://172.16.0.1/hook",
    "http://192.168.1.20:3000/hook",
    "http://[fd12:3456::1]/hook",
    "http://host.docker.internal:8789/callback",
    "http://example.com/hook",
    "https://127.0.0.1:8443/hook",
  ])("allows %s only with ALLOW_HTTP_CALLBACKS, for local receivers", (url) => {
    expect(callbackUrlProblem(url, local)).toBeNull();
    expect(callbackUrlProblem(url, strict)).not.toBeNull();
  });

  it.each([
    [
      "http://169.254.169.254/latest/meta-data",
      "link-local or cloud metadata address, even with ALLOW_HTTP_CALLBACKS",
    ],
    ["http://169.254.10.1:8789/hook", "link-local"],
    ["http://[fe80::1]/hook", "link-local"],
    ["http://[febf::1]/hook", "link-local"],
    ["http://[fd00:ec2::254]/latest/meta-data", "cloud metadata"],
    ["http://100.100.100.200/latest/meta-data", "carrier-grade NAT"],
    ["http://0.0.0.0:8789/hook", "reserved"],
    ["http://[::]:8789/hook", "unspecified"],
    ["http://224.0.0.1/hook", "multicast"],
    ["http://255.255.255.255/hook", "reserved"],
    ["http://[::ffff:127.0.0.1]:8789/hook", "IPv4-mapped"],
    ["http://[::ffff:192.168.1.1]/hook", "IPv4-mapped"],
    ["http://[64:ff9b::10.0.0.1]/hook", "NAT64"],
    ["ftp://127.0.0.1/hook", "https or http"],
    ["http://user:pw@127.0.0.1/hook", "credentials"],
  ])("refuses %s even with ALLOW_HTTP_CALLBACKS (%s)", (url, reason) => {
    expect(callbackUrlProblem(url, local)).toContain(reason);
  });
});

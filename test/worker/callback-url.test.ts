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
    ["https://[fd00:ec2::254]/hook", "unique-local"],
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

  it("allows http and local hosts only with ALLOW_HTTP_CALLBACKS, for local use", () => {
    expect(callbackUrlProblem("http://127.0.0.1:9000/hook", local)).toBeNull();
    expect(callbackUrlProblem("ftp://127.0.0.1/hook", local)).toContain("https or http");
  });
});

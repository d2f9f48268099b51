// The browser the browser tests drive: CHROMIUM_PATH or the system's Chromium when there is one;
// otherwise the Chromium inside the @sparticuz/chromium npm package (Linux x86-64), so
// `npm install && npm test` needs nothing but Node and npm. The package's browser is brotli-packed; it is unpacked once per machine into
// node_modules/.cache (os.tmpdir() is where the package unpacks, so it is pointed there for the call).
// The unpacking goes to a directory of its own and is renamed into place when complete: the package
// trusts any file that exists, and two test runs at once must not start a half-written binary.
import { existsSync } from "node:fs";
import { mkdir, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import sparticuz from "@sparticuz/chromium";
import { type Browser, chromium } from "playwright-core";
import { ROOT } from "../../../scripts/local-stack.ts";

const SYSTEM_CHROMIUM = "/usr/bin/chromium";
const CACHE = join(ROOT, "node_modules", ".cache");
const UNPACKED = join(CACHE, "sparticuz-chromium-153");
const FONTS_CONF = "taskrelay-fonts.conf";

/** Flags that keep the browser on this machine: no update checks, sync, or other background traffic. */
const QUIET_FLAGS = [
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic",
];

/**
 * The package's flags are for serverless hosts; two of them switch off web security, which the
 * dashboard's tests rely on (same-origin forms, SameSite cookies, the CSP), so they are left out.
 */
const WEAKENING_FLAGS = new Set(["--disable-web-security", "--allow-running-insecure-content"]);

async function unpackedChromium(): Promise<string> {
  if (!existsSync(join(UNPACKED, "chromium"))) {
    const staging = `${UNPACKED}.${process.pid}`;
    await rm(staging, { recursive: true, force: true });
    await mkdir(staging, { recursive: true });
    const tmpdir = process.env.TMPDIR;
    process.env.TMPDIR = staging;
    try {
      await sparticuz.executablePath();
    } finally {
      if (tmpdir === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = tmpdir;
    }
    // The package's fonts.conf names Lambda's paths (/tmp/fonts); this one names where they are here.
    await writeFile(
      join(staging, FONTS_CONF),
      `<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "fonts.dtd">\n<fontconfig><dir>${UNPACKED}/fonts</dir><dir>/usr/share/fonts</dir><cachedir>${UNPACKED}/fonts-cache</cachedir></fontconfig>\n`,
    );
    // Another run may have won the race: then its copy is used and this one is dropped.
    await rename(staging, UNPACKED).catch(() => rm(staging, { recursive: true, force: true }));
  }
  return join(UNPACKED, "chromium");
}

export async function launchChromium(): Promise<Browser> {
  const system = process.env.CHROMIUM_PATH ?? (existsSync(SYSTEM_CHROMIUM) ? SYSTEM_CHROMIUM : undefined);
  if (system) {
    return chromium.launch({
      executablePath: system,
      headless: true,
      args: ["--no-sandbox", "--disable-gpu", ...QUIET_FLAGS],
    });
  }
  if (process.platform !== "linux" || process.arch !== "x64") {
    throw new Error(
      `The browser tests need Chromium. The one inside @sparticuz/chromium is for Linux x86-64, and this is ${process.platform} ${process.arch}: set CHROMIUM_PATH to a Chromium or Chrome executable.`,
    );
  }
  return chromium.launch({
    executablePath: await unpackedChromium(),
    headless: true,
    args: [...sparticuz.args.filter((flag) => !WEAKENING_FLAGS.has(flag)), ...QUIET_FLAGS],
    // The package's own fonts, for a machine that has none.
    env: { ...process.env, FONTCONFIG_FILE: join(UNPACKED, FONTS_CONF) },
  });
}

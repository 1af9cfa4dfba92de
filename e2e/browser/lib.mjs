// lib.mjs is what the browser scripts share: e2e/browser/play.mjs and
// bench/latency/measure.mjs. Each serves its page (and mpegts.js from
// node_modules of e2e/browser) from a static HTTP server on 127.0.0.1:0,
// opens it in the system Chromium (/usr/bin/chromium, or $CHROMIUM) through
// playwright-core with a fresh profile directory, and prints its result as
// one JSON line on stdout when it exits: normally, on an overall timeout or
// on SIGINT, SIGTERM or SIGHUP. The browser, its profile directory and the
// server are always cleaned up.

import { createServer } from 'node:http';
import { readFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const mpegtsPath = join(here, 'node_modules', 'mpegts.js', 'dist', 'mpegts.js');

export const chromiumArgs = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--disable-background-networking',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
  '--autoplay-policy=no-user-gesture-required',
];

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// errorLine is the first line of an error's message.
export const errorLine = (e) => (e && e.message ? e.message.split('\n')[0] : e);

// startStatic serves page at / and mpegts.js at /mpegts.js on 127.0.0.1:0.
export function startStatic(page) {
  const srv = createServer(async (req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    try {
      if (path === '/') {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
        res.end(page);
      } else if (path === '/mpegts.js') {
        const js = await readFile(mpegtsPath);
        res.writeHead(200, { 'content-type': 'text/javascript', 'cache-control': 'no-store' });
        res.end(js);
      } else if (path === '/favicon.ico') {
        res.writeHead(204).end();
      } else {
        res.writeHead(404).end();
      }
    } catch (e) {
      res.writeHead(500).end(String(e));
    }
  });
  return new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => resolve(srv));
  });
}

// session starts a script's run. res is its result, with an errors array;
// it is printed as one JSON line by finish, which also cleans up and exits.
// After timeoutMs (or on SIGINT, SIGTERM, SIGHUP) timeoutError (or
// "killed by SIG...") is added to res.errors and the script finishes with
// status 2.
export function session(res, { timeoutMs, timeoutError }) {
  let srv, ctx, profile, cleaned;
  let finishing = false;
  const cleanup = () => {
    cleaned ??= (async () => {
      if (ctx) await ctx.close().catch(() => {});
      if (srv) {
        srv.closeAllConnections?.();
        await new Promise((r) => srv.close(() => r()));
      }
      if (profile) await rm(profile, { recursive: true, force: true }).catch(() => {});
    })();
    return cleaned;
  };
  const finish = async (code) => {
    clearTimeout(timer);
    if (finishing) return;
    finishing = true;
    // Cleanup must not hang the exit: give it 5 s at most.
    await Promise.race([cleanup(), sleep(5000)]);
    process.stdout.write(JSON.stringify(res) + '\n');
    process.exit(code);
  };
  const timer = setTimeout(() => {
    res.errors.push(timeoutError);
    finish(2);
  }, timeoutMs);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => {
      res.errors.push(`killed by ${sig}`);
      finish(2);
    });
  }

  return {
    finish,

    // serve starts the static server for page and returns its base URL.
    async serve(page) {
      srv = await startStatic(page);
      return `http://127.0.0.1:${srv.address().port}/`;
    },

    // launch starts Chromium with a fresh profile directory named
    // profilePrefix + a random suffix, with options added to the launch
    // options, and returns its page; page errors go to res.errors.
    async launch(profilePrefix, options = {}) {
      profile = await mkdtemp(join(tmpdir(), profilePrefix));
      ctx = await chromium.launchPersistentContext(profile, {
        executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
        headless: true,
        args: chromiumArgs,
        ...options,
        handleSIGINT: false,
        handleSIGTERM: false,
        handleSIGHUP: false,
        timeout: 15000,
      });
      const pg = ctx.pages()[0] ?? (await ctx.newPage());
      pg.on('pageerror', (e) => res.errors.push(`pageerror: ${e.message}`));
      return pg;
    },
  };
}

// fatal is the handler for an error that escapes main: it prints base with
// the error in errors as the JSON line and exits with status 2.
export function fatal(base) {
  return (e) => {
    process.stdout.write(JSON.stringify({ ...base, errors: [`fatal: ${e && e.message ? e.message : e}`] }) + '\n');
    process.exit(2);
  };
}

// parseSampleArgs reads the arguments of a player script: a URL, then
// --sample SECONDS (how long to watch once playing) and --timeout SECONDS
// (the whole run), with defaults; usage names the script's URL argument.
export function parseSampleArgs(argv, script, defaults, usage = 'URL') {
  const o = { url: '', ...defaults };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--sample') o.sample = Number(argv[++i]);
    else if (a === '--timeout') o.timeout = Number(argv[++i]);
    else if (!a.startsWith('--') && !o.url) o.url = a;
    else throw new Error(`unknown argument ${a}`);
  }
  if (!o.url) throw new Error(`usage: node ${script} ${usage} [--sample SECONDS] [--timeout SECONDS]`);
  if (!(o.sample > 0) || !(o.timeout > o.sample)) throw new Error('need 0 < --sample < --timeout');
  return o;
}

// broadcast.mjs drives the broadcast page (web/templates/broadcast.html,
// web/static/golive.js) in headless Chromium with fake media devices: it
// creates a stream through the page (the server's real API), goes live
// from the fake camera and microphone over WHIP, keeps publishing until
// the test has read the stream, then stops, and finally tries a wrong key.
//
//	node broadcast.mjs BASE_URL --stop-file FILE [--size 320x240] [--hold SECONDS] [--timeout SECONDS]
//
// Events on stdout, one JSON line each, for the test to act on:
//
//	{"event":"live","path":"live/<id>","location":"/live/<id>/whip/<session>"}
//	{"event":"stopped"}
//
// After "live" the page stays live until FILE exists (or --hold seconds,
// default 60, passed); meanwhile it records the page's figures. Then it
// clicks Stop, goes live again with a wrong key to see the server's
// refusal shown on the page, and then with the right key:
//
//	{"event":"live2","path":"live/<id>"}
//
// after which the test kicks the session on the server; the page must say
// so within 30 s (kicked, with afterMs). The result is the last line:
//
//	{"ok":true,"created":{..},"live":{..},"busy":{..},"stopped":{..},"refused":{..},"kicked":{..},"errors":[..],"console":[..]}
//
// Exit status 0 when every step ran, 1 when a step failed, 2 on a setup
// failure or timeout (lib.mjs).

import { session, errorLine, fatal, sleep, chromiumArgs } from './lib.mjs';
import { existsSync } from 'node:fs';

function parseArgs(argv) {
  const o = { base: '', stopFile: '', size: '320x240', hold: 60, timeout: 120 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--stop-file') o.stopFile = argv[++i];
    else if (a === '--size') o.size = argv[++i];
    else if (a === '--hold') o.hold = Number(argv[++i]);
    else if (a === '--timeout') o.timeout = Number(argv[++i]);
    else if (!a.startsWith('--') && !o.base) o.base = a.replace(/\/+$/, '');
    else throw new Error(`unknown argument ${a}`);
  }
  if (!o.base || !o.stopFile) throw new Error('usage: node broadcast.mjs BASE_URL --stop-file FILE [--size WxH] [--hold SECONDS] [--timeout SECONDS]');
  return o;
}

async function waitFor(fn, ms, every = 100) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v || Date.now() >= end) return v;
    await sleep(every);
  }
}

// pageState is what the go-live part of a broadcast page shows.
const pageState = (pg) =>
  pg.evaluate(() => {
    const s = window.streamhubLive || {};
    const el = (id) => document.getElementById(id);
    const pv = el('preview');
    return {
      phase: s.phase,
      location: s.location,
      figures: { ...(s.figures || {}) },
      events: (s.events || []).slice(),
      status: el('live-status').textContent,
      error: el('live-error').hidden ? '' : el('live-error').textContent,
      bitrateText: el('live-bitrate').textContent,
      viewersText: el('live-viewers').textContent,
      chatStatus: el('chat-status').textContent,
      chatLines: [...el('chat-log').children].map((li) => li.textContent),
      previewLive: !!(pv.srcObject && pv.srcObject.getTracks().some((t) => t.readyState === 'live')),
      previewTracks: pv.srcObject ? pv.srcObject.getTracks().map((t) => t.kind + ' ' + t.label) : [],
      previewWidth: pv.videoWidth,
      path: el('live-path').value,
      keySet: el('live-key').value !== '',
      liveDisabled: el('live-button').disabled,
      stopDisabled: el('stop-button').disabled,
    };
  });

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const base = opts.base;
  const res = { ok: false, base, created: {}, live: {}, busy: {}, stopped: {}, refused: {}, kicked: null, errors: [], console: [] };
  const run = session(res, { timeoutMs: opts.timeout * 1000, timeoutError: `timeout: no result within ${opts.timeout}s` });
  const step = (name, ok, what) => {
    if (!ok) throw new Error(`step ${name}: ${what}`);
  };
  try {
    const pg = await run.launch('streamhub-e2e-broadcast-', {
      args: [...chromiumArgs, '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream'],
    });
    const watchConsole = (p, name) =>
      p.on('console', (m) => {
        if (m.type() === 'error' || m.type() === 'warning') res.console.push(`${name} ${m.type()}: ${m.text()}`.slice(0, 300));
      });
    watchConsole(pg, 'A');

    // 1. Create a stream on the page: its path and key fill the go-live form.
    await pg.goto(base + '/broadcast', { timeout: 10000 });
    await pg.fill('#name', 'browser show');
    await pg.click('#create-button');
    await waitFor(() => pg.evaluate(() => !document.getElementById('result').hidden || !document.getElementById('error').hidden), 10000);
    res.created = await pageState(pg);
    res.created.obsKey = await pg.inputValue('#obs-key');
    step('create', res.created.path.startsWith('live/') && res.created.keySet, 'the created stream did not fill the path and key: ' + JSON.stringify(res.created));

    // 2. Go live from the fake camera and microphone.
    await pg.selectOption('#size', opts.size);
    const t0 = Date.now();
    await pg.click('#live-button');
    const live = await waitFor(async () => {
      const s = await pageState(pg);
      return s.phase === 'live' || s.error ? s : null;
    }, 20000);
    res.live.afterMs = Date.now() - t0;
    step('live', live && live.phase === 'live', 'not live within 20 s: ' + JSON.stringify(live || (await pageState(pg))));
    process.stdout.write(JSON.stringify({ event: 'live', path: live.path, location: live.location }) + '\n');

    // 3. While the test reads the stream: the figures, the chat.
    res.live.first = await waitFor(async () => {
      const s = await pageState(pg);
      return s.figures.kbps > 0 && s.chatStatus.startsWith('connected') ? s : null;
    }, 15000, 250);
    if (res.live.first) {
      await pg.fill('#chat-name', 'streamer');
      await pg.fill('#chat-text', 'hello from the broadcast page');
      await pg.click('#chat-send');
    }
    // A second page, sharing a (fake) screen, cannot go live on the same
    // path meanwhile.
    const pgB = await pg.context().newPage();
    watchConsole(pgB, 'B');
    pgB.on('pageerror', (e) => res.errors.push(`pageerror B: ${e.message}`));
    await pgB.goto(base + '/broadcast', { timeout: 10000 });
    await pgB.selectOption('#source', 'screen');
    await pgB.selectOption('#size', opts.size);
    await pgB.fill('#live-path', live.path);
    await pgB.fill('#live-key', res.created.obsKey);
    await pgB.click('#live-button');
    res.busy = await waitFor(async () => {
      const s = await pageState(pgB);
      return s.error || s.phase === 'live' ? s : null;
    }, 15000);
    await pgB.close();

    let maxViewers = 0;
    let maxKbps = 0;
    const holdEnd = Date.now() + opts.hold * 1000;
    while (!existsSync(opts.stopFile) && Date.now() < holdEnd) {
      const s = await pageState(pg);
      maxViewers = Math.max(maxViewers, s.figures.viewers || 0);
      maxKbps = Math.max(maxKbps, s.figures.kbps || 0);
      await sleep(250);
    }
    res.live.last = await pageState(pg);
    res.live.maxViewers = maxViewers;
    res.live.maxKbps = maxKbps;

    // 4. Stop: the session is deleted, the capture ends.
    await pg.click('#stop-button');
    res.stopped = await waitFor(async () => {
      const s = await pageState(pg);
      return s.phase === 'stopped' ? s : null;
    }, 10000);
    step('stop', res.stopped, 'not stopped within 10 s');
    process.stdout.write(JSON.stringify({ event: 'stopped' }) + '\n');

    // 5. A wrong key: the server's refusal is shown.
    await pg.fill('#live-key', 'sk_wrong');
    await pg.click('#live-button');
    res.refused = await waitFor(async () => {
      const s = await pageState(pg);
      return s.error || s.phase === 'live' ? s : null;
    }, 20000);
    step('refused', res.refused, 'no answer to a wrong key within 20 s');

    // 6. Live again; the test kicks the session on the server: the page
    // must notice and say so.
    await pg.fill('#live-key', res.created.obsKey);
    await pg.click('#live-button');
    const again = await waitFor(async () => {
      const s = await pageState(pg);
      return s.phase === 'live' || s.error ? s : null;
    }, 20000);
    step('live again', again && again.phase === 'live', 'not live again within 20 s: ' + JSON.stringify(again));
    process.stdout.write(JSON.stringify({ event: 'live2', path: again.path }) + '\n');
    const t1 = Date.now();
    res.kicked = await waitFor(async () => {
      const s = await pageState(pg);
      return s.phase !== 'live' ? s : null;
    }, 30000, 250);
    if (res.kicked) res.kicked.afterMs = Date.now() - t1;

    res.ok = true;
    await run.finish(0);
  } catch (e) {
    res.errors.push(errorLine(e));
    await run.finish(res.errors.some((x) => String(x).startsWith('step ')) ? 1 : 2);
  }
}

main().catch(fatal({ ok: false }));

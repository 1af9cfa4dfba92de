// rewind.mjs drives the watch page's live rewind in headless Chromium: it
// opens /watch/PATH in HLS mode, waits until it plays, clicks "Rewind
// 2 min" (hls.js on the recording's rewind playlist, two minutes back
// from its newest media or its start when shorter), samples the playback
// there, then clicks "Back to live" and samples the live playback again.
//
//	node rewind.mjs BASE_URL [--path live/rec] [--timeout SECONDS]
//
// The result is the last line on stdout:
//
//	{"ok":true,"live":{..},"rewound":{..},"back":{..},"errors":[..],"console":[..]}
//
// Each sample has the frames shown and currentTime at its start and end,
// behind (seconds from the playhead to the end of what is seekable) and
// the page state (rewinding, the hls.js source URL). ok says every step
// ran; the test judges the figures.

import { session, errorLine, fatal, sleep } from './lib.mjs';

function parseArgs(argv) {
  const o = { base: '', path: 'live/rec', timeout: 90 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--path') o.path = argv[++i];
    else if (a === '--timeout') o.timeout = Number(argv[++i]);
    else if (!a.startsWith('--') && !o.base) o.base = a.replace(/\/+$/, '');
    else throw new Error(`unknown argument ${a}`);
  }
  if (!o.base) throw new Error('usage: node rewind.mjs BASE_URL [--path P] [--timeout SECONDS]');
  return o;
}

const snap = (pg) =>
  pg.evaluate(() => {
    const v = document.getElementById('video');
    const q = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : { totalVideoFrames: 0 };
    const s = v.seekable;
    const st = window.streamhub || {};
    return {
      frames: q.totalVideoFrames,
      ct: v.currentTime,
      paused: v.paused,
      behind: s.length ? s.end(s.length - 1) - v.currentTime : -1,
      rewinding: !!st.rewinding,
      src: st.hls && st.hls.url ? st.hls.url : '',
      status: document.getElementById('status').textContent,
    };
  });

async function waitFor(fn, ms) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v || Date.now() >= end) return v;
    await sleep(200);
  }
}

// sample waits until the video plays with cond true (up to ms), then
// samples it over 3 s.
async function sample(pg, ms, cond) {
  const first = await waitFor(async () => {
    const s = await snap(pg);
    return !s.paused && s.frames > 0 && cond(s) ? s : null;
  }, ms);
  if (!first) return { started: false, last: await snap(pg) };
  await sleep(3000);
  return { started: true, first, last: await snap(pg) };
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const res = { ok: false, live: {}, rewound: {}, back: {}, errors: [], console: [] };
  const run = session(res, { timeoutMs: opts.timeout * 1000, timeoutError: `timeout: no result within ${opts.timeout}s` });
  try {
    const pg = await run.launch('streamhub-e2e-rewind-');
    pg.on('console', (m) => {
      if (m.type() === 'error') res.console.push(`${m.type()}: ${m.text()}`.slice(0, 300));
    });
    await pg.goto(`${opts.base}/watch/${opts.path}?mode=hls`);
    res.live = await sample(pg, 30000, (s) => !s.rewinding);
    await pg.click('#rewind-back');
    res.rewound = await sample(pg, 30000, (s) => s.rewinding && s.src.includes('rewind.m3u8'));
    await pg.click('#rewind-live');
    res.back = await sample(pg, 30000, (s) => !s.rewinding && s.src.includes('index.m3u8'));
    res.events = await pg.evaluate(() => (window.streamhub || {}).events || []);
    res.ok = true;
  } catch (e) {
    res.errors.push(errorLine(e));
  }
  await run.finish(res.ok ? 0 : 1);
}

main().catch(fatal({ ok: false }));

// hls.mjs plays one HLS URL with hls.js (lowLatencyMode) in headless
// Chromium and reports whether video frames advanced and whether LL-HLS was
// engaged.
//
//	node hls.mjs URL [--play SECONDS] [--timeout SECONDS] [--switch SECONDS]
//
// With --switch, every SECONDS of playback it sets hls.currentLevel to the
// next level of the multivariant playlist (a bitrate ladder), and the
// result lists the levels, the LEVEL_SWITCHED events and, per sample, the
// level and the decoded picture height.
//
// It serves a tiny page from a static HTTP server on 127.0.0.1:0 (lib.mjs)
// and hls.js from node_modules/hls.js/dist/hls.min.js (answered from the
// file by Playwright's request routing: never a CDN), opens it in the system
// Chromium (/usr/bin/chromium, or $CHROMIUM) through playwright-core and
// waits until the video plays. It then prints one line
//
//	{"event":"playing","t":EPOCH_MS}
//
// (so that a test can act on the stream while it plays, e.g. republish),
// samples the number of frames presented (requestVideoFrameCallback) and
// video.currentTime every 250 ms for --play seconds (default 10) and prints
// the result as the last line:
//
//	{"ok":true,"samples":[{"t":..,"frames":..,"ct":..},..],
//	 "partTarget":0.2,"canBlockReload":true,"blockingRequests":..,
//	 "errors":[..],"warnings":[..],...}
//
// errors holds fatal hls.js errors and page errors; warnings the non-fatal
// hls.js errors (a stall while the publisher restarts is one). The exit
// status is 0 when frames advanced, 1 when they did not, 2 on a setup
// failure or when the overall --timeout (default 40 s) ran out. The browser,
// its profile directory and the server are always cleaned up (lib.mjs).

import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { session, errorLine, fatal, sleep } from './lib.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const hlsPath = join(here, 'node_modules', 'hls.js', 'dist', 'hls.min.js');

function parseArgs(argv) {
  const o = { url: '', play: 10, timeout: 40, switchEvery: 0 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--play') o.play = Number(argv[++i]);
    else if (a === '--timeout') o.timeout = Number(argv[++i]);
    else if (a === '--switch') o.switchEvery = Number(argv[++i]);
    else if (!a.startsWith('--') && !o.url) o.url = a;
    else throw new Error(`unknown argument ${a}`);
  }
  if (!o.url) throw new Error('usage: node hls.mjs URL [--play SECONDS] [--timeout SECONDS]');
  if (!(o.play > 0) || !(o.timeout > o.play)) throw new Error('need 0 < --play < --timeout');
  return o;
}

const page = `<!doctype html>
<html><head><meta charset="utf-8"><title>streamhub e2e hls.js</title></head>
<body>
<video id="v" muted autoplay playsinline width="320" height="240"></video>
<script src="/hls.js"></script>
<script>
window.__errors = [];
window.__warnings = [];
window.__frames = 0;
window.__stalls = 0;
window.__details = null;
window.__switched = [];
const url = new URLSearchParams(location.search).get('url');
const v = document.getElementById('v');
v.addEventListener('waiting', () => { window.__stalls++; });
const onFrame = () => { window.__frames++; v.requestVideoFrameCallback(onFrame); };
if (v.requestVideoFrameCallback) v.requestVideoFrameCallback(onFrame);
else window.__errors.push('no requestVideoFrameCallback');
if (!window.Hls || !Hls.isSupported()) {
  window.__errors.push('hls.js not supported in this browser (no MSE?)');
} else {
  const hls = new Hls({ lowLatencyMode: true, backBufferLength: 10 });
  hls.on(Hls.Events.ERROR, (_, d) => {
    let s = d.type + ' ' + d.details;
    if (d.response && d.response.code) s += ' HTTP ' + d.response.code;
    if (d.url) s += ' ' + d.url;
    if (d.error && d.error.message) s += ': ' + d.error.message;
    (d.fatal ? window.__errors : window.__warnings).push(s.slice(0, 300));
  });
  hls.on(Hls.Events.LEVEL_UPDATED, (_, d) => {
    const x = d.details;
    window.__details = {
      partTarget: x.partTarget, canBlockReload: x.canBlockReload, canSkipUntil: x.canSkipUntil,
      partHoldBack: x.partHoldBack, targetduration: x.targetduration, live: x.live,
      parts: x.partList ? x.partList.length : 0,
    };
  });
  hls.on(Hls.Events.LEVEL_SWITCHED, (_, d) => {
    const l = hls.levels[d.level];
    window.__switched.push({ level: d.level, height: l ? l.height : 0, t: Date.now() });
  });
  hls.on(Hls.Events.MANIFEST_PARSED, () => {
    const p = v.play();
    if (p && p.catch) p.catch((e) => window.__errors.push('play(): ' + e));
  });
  hls.loadSource(url);
  hls.attachMedia(v);
  window.__hls = hls;
}
</script>
</body></html>`;

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const res = {
    ok: false,
    url: opts.url,
    startupMs: 0,
    samples: [],
    stalls: 0,
    videoWidth: 0,
    videoHeight: 0,
    // LL-HLS as hls.js saw it: the media playlist's details and the
    // requests it made.
    partTarget: 0,
    canBlockReload: false,
    levelPartTargets: [],
    details: null,
    latency: 0,
    playlistRequests: 0,
    blockingRequests: 0,
    partRequests: 0,
    segmentRequests: 0,
    sampleRequests: [],
    levels: [],
    switched: [],
    errors: [],
    warnings: [],
    console: [],
  };
  const run = session(res, { timeoutMs: opts.timeout * 1000, timeoutError: `timeout: no result within ${opts.timeout}s` });

  try {
    const base = await run.serve(page);
    const pg = await run.launch('streamhub-e2e-hlsjs-');
    await pg.route(base + 'hls.js', (route) => route.fulfill({ path: hlsPath, contentType: 'text/javascript' }));
    pg.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') res.console.push(`${m.type()}: ${m.text()}`.slice(0, 300));
    });
    pg.on('request', (r) => {
      const u = r.url();
      if (u.startsWith(base)) return;
      if (u.includes('.m3u8')) {
        res.playlistRequests++;
        if (u.includes('_HLS_msn=')) {
          res.blockingRequests++;
          if (res.sampleRequests.length < 5) res.sampleRequests.push(u);
        }
      } else if (/part\d+\.\d+\.mp4/.test(u)) {
        res.partRequests++;
      } else if (/seg\d+\.mp4/.test(u)) {
        res.segmentRequests++;
      }
    });
    const t0 = Date.now();
    await pg.goto(base + '?url=' + encodeURIComponent(opts.url), { timeout: 10000 });

    const snap = () =>
      pg.evaluate(() => {
        const v = document.getElementById('v');
        const h = window.__hls;
        return {
          t: Date.now(),
          ct: v.currentTime,
          frames: window.__frames,
          paused: v.paused,
          w: v.videoWidth,
          h: v.videoHeight,
          stalls: window.__stalls,
          errors: window.__errors.slice(),
          warnings: window.__warnings.slice(),
          details: window.__details,
          levelPartTargets: h && h.levels ? h.levels.map((l) => (l.details ? l.details.partTarget : null)) : [],
          latency: h ? h.latency : 0,
          level: h ? h.currentLevel : -1,
          levels: h && h.levels ? h.levels.map((l) => ({ height: l.height, bitrate: l.bitrate, url: l.url[0] })) : [],
          switched: window.__switched.slice(),
        };
      });

    // Wait until playback runs: playing, with time and frames moving.
    let s;
    for (;;) {
      s = await snap();
      if (s.errors.length) break;
      if (!s.paused && s.ct > 0 && s.frames > 0) break;
      await sleep(100);
    }
    res.startupMs = Date.now() - t0;
    if (!s.errors.length) {
      process.stdout.write(JSON.stringify({ event: 'playing', t: Date.now() }) + '\n');
      const end = Date.now() + opts.play * 1000;
      let nextSwitch = opts.switchEvery > 0 ? Date.now() + opts.switchEvery * 1000 : Infinity;
      while (Date.now() < end) {
        if (Date.now() >= nextSwitch) {
          nextSwitch += opts.switchEvery * 1000;
          await pg.evaluate(() => {
            const h = window.__hls;
            const cur = h.currentLevel < 0 ? h.loadLevel : h.currentLevel;
            h.currentLevel = (cur + 1) % h.levels.length;
          });
        }
        s = await snap();
        res.samples.push({ t: s.t, frames: s.frames, ct: s.ct, level: s.level, h: s.h });
        if (s.errors.length) break;
        await sleep(250);
      }
    }
    res.stalls = s.stalls;
    res.videoWidth = s.w;
    res.videoHeight = s.h;
    res.details = s.details;
    res.partTarget = s.details ? s.details.partTarget : 0;
    res.canBlockReload = s.details ? s.details.canBlockReload : false;
    res.levelPartTargets = s.levelPartTargets;
    res.latency = s.latency;
    res.levels = s.levels;
    res.switched = s.switched;
    res.errors.unshift(...s.errors);
    res.warnings.push(...s.warnings);
    const first = res.samples[0];
    const last = res.samples[res.samples.length - 1];
    res.ok = !!first && last.frames > first.frames && last.ct > first.ct;
    await run.finish(res.ok ? 0 : 1);
  } catch (e) {
    res.errors.push(`setup: ${errorLine(e)}`);
    await run.finish(2);
  }
}

main().catch(fatal({ ok: false }));

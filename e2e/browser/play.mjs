// play.mjs plays one HTTP-FLV URL with mpegts.js in headless Chromium and
// reports whether video frames advanced.
//
//	node play.mjs URL [--sample SECONDS] [--timeout SECONDS]
//
// It serves a tiny page (and node_modules/mpegts.js/dist/mpegts.js) from a
// static HTTP server on 127.0.0.1:0, opens it in the system Chromium
// (/usr/bin/chromium, or $CHROMIUM) through playwright-core, waits until the
// video plays, samples video.currentTime and totalVideoFrames for --sample
// seconds (default 4) and prints one JSON line on stdout:
//
//	{"ok":true,"framesStart":..,"framesEnd":..,"currentTimeStart":..,
//	 "currentTimeEnd":..,"errors":[..],...}
//
// errors holds mpegts.js ERROR events and page errors. The exit status is 0
// when frames advanced and currentTime moved, 1 when they did not, 2 on a
// setup failure or when the overall --timeout (default 30 s) ran out. The
// browser, its profile directory and the server are always cleaned up (the
// parts shared with bench/latency/measure.mjs are in lib.mjs).

import { session, errorLine, fatal, sleep, parseSampleArgs } from './lib.mjs';

const page = `<!doctype html>
<html><head><meta charset="utf-8"><title>streamhub e2e</title></head>
<body>
<video id="v" muted autoplay playsinline width="320" height="240"></video>
<script src="/mpegts.js"></script>
<script>
window.__errors = [];
window.__stalls = 0;
const url = new URLSearchParams(location.search).get('url');
const v = document.getElementById('v');
v.addEventListener('waiting', () => { window.__stalls++; });
if (!window.mpegts || !mpegts.isSupported()) {
  window.__errors.push('mpegts.js not supported in this browser (no MSE?)');
} else {
  const p = mpegts.createPlayer({ type: 'flv', isLive: true, url }, {
    enableStashBuffer: false,
    liveBufferLatencyChasing: true,
  });
  p.on(mpegts.Events.ERROR, (type, detail, info) => {
    window.__errors.push('mpegts ' + type + ' ' + detail + ' ' + JSON.stringify(info));
  });
  p.attachMediaElement(v);
  p.load();
  const pr = p.play();
  if (pr && pr.catch) pr.catch((e) => window.__errors.push('play(): ' + e));
  window.__player = p;
}
</script>
</body></html>`;

async function main() {
  const opts = parseSampleArgs(process.argv.slice(2), 'play.mjs', { sample: 4, timeout: 30 });
  const res = {
    ok: false,
    url: opts.url,
    framesStart: 0,
    framesEnd: 0,
    currentTimeStart: 0,
    currentTimeEnd: 0,
    droppedFrames: 0,
    stalls: 0,
    startupMs: 0,
    videoWidth: 0,
    videoHeight: 0,
    errors: [],
    console: [],
  };
  const run = session(res, { timeoutMs: opts.timeout * 1000, timeoutError: `timeout: no result within ${opts.timeout}s` });

  try {
    const base = await run.serve(page);
    // wss:// and https:// URLs: the tests' servers have self-signed certificates.
    const tls = /^(wss|https):/.test(opts.url);
    const pg = await run.launch('streamhub-e2e-chromium-', tls ? { ignoreHTTPSErrors: true } : {});
    pg.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') res.console.push(`${m.type()}: ${m.text()}`.slice(0, 300));
    });
    const t0 = Date.now();
    await pg.goto(base + '?url=' + encodeURIComponent(opts.url), { timeout: 10000 });

    const snap = () =>
      pg.evaluate(() => {
        const v = document.getElementById('v');
        const q = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : { totalVideoFrames: 0, droppedVideoFrames: 0 };
        return {
          t: v.currentTime,
          frames: q.totalVideoFrames,
          dropped: q.droppedVideoFrames,
          paused: v.paused,
          w: v.videoWidth,
          h: v.videoHeight,
          errors: window.__errors.slice(),
          stalls: window.__stalls,
        };
      });

    // Wait until playback runs: playing, with time and frames moving.
    let s;
    for (;;) {
      s = await snap();
      if (s.errors.length) break;
      if (!s.paused && s.t > 0 && s.frames > 0) break;
      await sleep(100);
    }
    res.startupMs = Date.now() - t0;
    res.framesStart = s.frames;
    res.currentTimeStart = s.t;
    if (!s.errors.length) {
      await sleep(opts.sample * 1000);
      s = await snap();
    }
    res.framesEnd = s.frames;
    res.currentTimeEnd = s.t;
    res.droppedFrames = s.dropped;
    res.stalls = s.stalls;
    res.videoWidth = s.w;
    res.videoHeight = s.h;
    res.errors.unshift(...s.errors);
    res.ok = res.framesEnd > res.framesStart && res.currentTimeEnd > res.currentTimeStart;
    await run.finish(res.ok ? 0 : 1);
  } catch (e) {
    res.errors.push(`setup: ${errorLine(e)}`);
    await run.finish(2);
  }
}

main().catch(fatal({ ok: false }));

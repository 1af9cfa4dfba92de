// watchrtc.mjs opens streamhub's watch page (web/static/watch.js) in
// headless Chromium and reports how it plays: the mode it chose, frames
// presented, the WebRTC figures and the latency readout.
//
//	node watchrtc.mjs WATCH_URL [--sample SECONDS] [--timeout SECONDS]
//
// WATCH_URL is a watch page (http://HOST:PORT/watch/<path>[?mode=...]).
// The script waits up to 25 s for the video to play (frames presented and
// currentTime moving), samples it for --sample seconds (default 3) and
// prints one JSON line:
//
//	{"ok":true,"mode":"webrtc","first":{..},"last":{..},"fallback":"","events":[..],"errors":[..],"console":[..]}
//
// first and last are samples of the page: frames (requestVideoFrameCallback
// and getVideoPlaybackQuality), currentTime, size, the latency readout,
// the status and fallback lines, the WebRTC session's figures (frames
// decoded, audio samples received) and the query string. Exit status 0
// when the video played, 1 when not, 2 on setup failure or timeout.

import { session, errorLine, fatal, sleep, parseSampleArgs } from './lib.mjs';

const sample = (pg) =>
  pg.evaluate(async () => {
    const v = document.getElementById('video');
    const s = window.streamhub;
    const q = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : { totalVideoFrames: 0 };
    const rtc = s.rtc ? { ...s.rtc.stats, latency: s.rtc.latency, latencyFrom: s.rtc.latencyFrom, location: s.rtc.location, connection: s.rtc.pc.connectionState } : null;
    return {
      mode: s.mode,
      select: document.getElementById('mode').value,
      rvfc: window.__rvfc || 0,
      frames: q.totalVideoFrames,
      ct: v.currentTime,
      paused: v.paused,
      w: v.videoWidth,
      h: v.videoHeight,
      latency: document.getElementById('latency').textContent,
      status: document.getElementById('status').textContent,
      fallback: document.getElementById('fallback').hidden ? '' : document.getElementById('fallback').textContent,
      rtc,
      search: location.search,
    };
  });

async function main() {
  const opts = parseSampleArgs(process.argv.slice(2), 'watchrtc.mjs', { sample: 3, timeout: 60 }, 'WATCH_URL');
  const res = { ok: false, url: opts.url, mode: '', first: null, last: null, startupMs: 0, fallback: '', events: [], errors: [], console: [] };
  const run = session(res, { timeoutMs: opts.timeout * 1000, timeoutError: `timeout: no result within ${opts.timeout}s` });
  try {
    const pg = await run.launch('streamhub-e2e-watchrtc-');
    pg.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') res.console.push(`${m.type()}: ${m.text()}`.slice(0, 300));
    });
    // Count presented frames from the start (works for MediaStream and MSE).
    await pg.addInitScript(() => {
      window.__rvfc = 0;
      document.addEventListener('DOMContentLoaded', () => {
        const v = document.getElementById('video');
        if (!v || !v.requestVideoFrameCallback) return;
        const on = () => {
          window.__rvfc++;
          v.requestVideoFrameCallback(on);
        };
        v.requestVideoFrameCallback(on);
      });
    });
    const t0 = Date.now();
    await pg.goto(opts.url, { timeout: 10000 });
    let s;
    const end = Date.now() + 25000;
    for (;;) {
      s = await sample(pg);
      if (s.rvfc > 0 && s.ct > 0 && !s.paused) break;
      if (Date.now() > end) break;
      await sleep(100);
    }
    res.startupMs = Date.now() - t0;
    res.first = s;
    if (s.rvfc > 0) {
      await sleep(opts.sample * 1000);
      res.last = await sample(pg);
    }
    const fin = res.last || s;
    res.mode = fin.mode;
    res.fallback = fin.fallback;
    res.events = await pg.evaluate(() => window.streamhub.events.slice());
    res.ok = !!res.last && res.last.rvfc > res.first.rvfc && res.last.ct > res.first.ct;
    await run.finish(res.ok ? 0 : 1);
  } catch (e) {
    res.errors.push(`setup: ${errorLine(e)}`);
    await run.finish(2);
  }
}

main().catch(fatal({ ok: false }));

// measure.mjs: the browser half of bench/latency. It plays an HTTP-FLV URL
// with mpegts.js (or, with --hls, an HLS multivariant playlist with hls.js,
// lowLatencyMode on; or, with --whep, a WHEP endpoint in a bare
// RTCPeerConnection) in headless Chromium and, on every presented video
// frame, decodes the wall-clock milliseconds painted into the frame by
// bench/latency/main.go and records Date.now() minus them.
//
//	node measure.mjs --url URL --layout JSON [--hls | --whep] [--warmup S] [--duration S] [--player JSON]
//
// It prints one JSON line: samples, median_ms, p95_ms, min/max/mean, stalls
// (video "waiting" events in the window), errors, latencies_ms (every
// sample), the player and its version, ... It uses the npm packages of
// e2e/browser (playwright-core, mpegts.js, hls.js) and the system Chromium
// (/usr/bin/chromium or $CHROMIUM), and shares the static server, the
// Chromium launch and the cleanup with e2e/browser/play.mjs through
// e2e/browser/lib.mjs. lib.mjs serves only mpegts.js, so hls.js is injected
// with Playwright's addInitScript (no request interception, which would
// route every HLS request of the page through node).

import { readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { session, errorLine, fatal, sleep } from '../../e2e/browser/lib.mjs';

const nodeModules = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'e2e', 'browser', 'node_modules');
const hlsPath = join(nodeModules, 'hls.js', 'dist', 'hls.min.js');
const pkgVersion = (name) => {
  try {
    return JSON.parse(readFileSync(join(nodeModules, name, 'package.json'), 'utf8')).version;
  } catch {
    return '';
  }
};

function parseArgs(argv) {
  const o = { url: '', layout: null, warmup: 3, duration: 20, player: {}, hls: false, whep: false, whip: '', prewarm: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--url') o.url = next();
    else if (a === '--layout') o.layout = JSON.parse(next());
    else if (a === '--warmup') o.warmup = Number(next());
    else if (a === '--duration') o.duration = Number(next());
    else if (a === '--player') o.player = JSON.parse(next());
    else if (a === '--hls') o.hls = true;
    else if (a === '--whep') o.whep = true;
    else if (a === '--whip') o.whip = next();
    else if (a === '--prewarm') o.prewarm = true;
    else throw new Error(`unknown argument ${a}`);
  }
  if (!o.url || !o.layout) throw new Error('usage: node measure.mjs --url URL --layout JSON [--hls | --whep] [--warmup S] [--duration S] [--player JSON]');
  return o;
}

// The page. Everything it measures lives in window.S. With hls it plays
// with hls.js (window.Hls, injected before the page's scripts run), with
// whep over WHEP in an RTCPeerConnection, otherwise with mpegts.js from the
// static server.
const page = (hls, whep) => `<!doctype html>
<html><head><meta charset="utf-8"><title>streamhub latency</title></head>
<body>
<video id="v" muted autoplay playsinline></video>
${hls || whep ? '' : '<script src="/mpegts.js"></script>'}
<script>
const q = new URLSearchParams(location.search);
const L = JSON.parse(q.get('layout'));
const S = window.S = { errors: [], samples: [], fails: 0, presented: 0, stalls: 0, stallsAfterStart: 0, firstFrameAt: 0,
  warnings: [], rvfc: 'requestVideoFrameCallback' in HTMLVideoElement.prototype };
const v = document.getElementById('v');
v.addEventListener('waiting', () => { S.stalls++; if (S.firstFrameAt) S.stallsAfterStart++; });
const c = document.createElement('canvas');
c.width = L.width; c.height = L.height;
const g = c.getContext('2d', { willReadFrequently: true });

// Mean luma of rectangle r, leaving out mx/my pixels at each side.
function luma(d, r, mx, my) {
  let sum = 0, n = 0;
  for (let y = r.y + my; y < r.y + r.h - my; y++) {
    for (let x = r.x + mx; x < r.x + r.w - mx; x++) {
      const i = (y * L.width + x) * 4;
      sum += 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
      n++;
    }
  }
  return sum / n;
}

// decode returns the painted milliseconds, or -1 when the frame does not
// read cleanly (references too close, a block near the threshold, or a bad
// popcount check).
function decode() {
  g.drawImage(v, 0, 0, L.width, L.height);
  const d = g.getImageData(0, 0, L.width, L.height).data;
  const black = luma(d, L.black, 2, 2), white = luma(d, L.white, 2, 2);
  if (white - black < 80) return -1;
  const thr = (black + white) / 2, margin = (white - black) / 4;
  let ms = 0, pop = 0, check = 0;
  for (let i = 0; i < L.bits; i++) {
    const r = { x: L.x0 + (i % L.cols) * L.blockW, y: L.y0 + Math.floor(i / L.cols) * L.rowPitch, w: L.blockW, h: L.blockH };
    const l = luma(d, r, L.marginX, L.marginY);
    if (Math.abs(l - thr) < margin) return -1;
    if (l > thr) {
      if (i < L.msBits) { ms += 2 ** i; pop++; } else check += 2 ** (i - L.msBits);
    }
  }
  return check === pop ? ms : -1;
}

function onFrame(now, meta) {
  const t = Date.now();
  if (!S.firstFrameAt) {
    S.firstFrameAt = t;
    if (window.H) S.firstLatency = H.latency;
    // The sound joins once the picture shows (see the WHEP client below).
    if (window.pendingAudio) window.pendingMS.addTrack(window.pendingAudio);
  }
  S.presented++;
  const ms = decode();
  if (ms < 0) S.fails++;
  else S.samples.push([t, t - ms, meta ? performance.timeOrigin + meta.expectedDisplayTime - ms : t - ms]);
}

if (S.rvfc) {
  const cb = (now, meta) => { onFrame(now, meta); v.requestVideoFrameCallback(cb); };
  v.requestVideoFrameCallback(cb);
} else {
  let last = -1;
  const cb = () => {
    if (v.readyState >= 2 && v.currentTime !== last) { last = v.currentTime; onFrame(0, null); }
    requestAnimationFrame(cb);
  };
  requestAnimationFrame(cb);
}

// publish paints the clock into a canvas (the layout of main.go, in RGB)
// every 33 ms and sends it, H.264 first, with an Opus tone over WHIP.
async function publish(url) {
  const pc2 = document.createElement('canvas');
  pc2.width = L.width; pc2.height = L.height;
  const g2 = pc2.getContext('2d');
  const paint = () => {
    const ms = Date.now();
    g2.fillStyle = 'rgb(128,128,128)'; g2.fillRect(0, 0, L.width, L.height);
    // The 42 ms bits and their popcount, as main.go's encode.
    let pop = 0;
    const bits = [];
    for (let i = 0; i < L.msBits; i++) { const b = Math.floor(ms / 2 ** i) % 2; bits.push(b); pop += b; }
    for (let i = 0; i < L.bits - L.msBits; i++) bits.push(Math.floor(pop / 2 ** i) % 2);
    for (let i = 0; i < L.bits; i++) {
      g2.fillStyle = bits[i] ? '#fff' : '#000';
      g2.fillRect(L.x0 + (i % L.cols) * L.blockW, L.y0 + Math.floor(i / L.cols) * L.rowPitch, L.blockW, L.blockH);
    }
    g2.fillStyle = '#000'; g2.fillRect(L.black.x, L.black.y, L.black.w, L.black.h);
    g2.fillStyle = '#fff'; g2.fillRect(L.white.x, L.white.y, L.white.w, L.white.h);
    g2.fillRect((S.painted * 4) % (L.width - 16), 180, 16, 16);
    S.painted++;
  };
  S.painted = 0;
  paint();
  setInterval(paint, 33);
  const stream = pc2.captureStream(30);
  const pub = window.PUB = new RTCPeerConnection();
  const vt = pub.addTransceiver(stream.getVideoTracks()[0], { direction: 'sendonly', streams: [stream] });
  if (vt.setCodecPreferences && RTCRtpSender.getCapabilities) {
    const cs = RTCRtpSender.getCapabilities('video').codecs;
    const h264 = cs.filter((c) => c.mimeType.toLowerCase() === 'video/h264');
    if (h264.length) vt.setCodecPreferences([...h264, ...cs.filter((c) => c.mimeType.toLowerCase() !== 'video/h264')]);
  }
  try {
    const ac = new AudioContext();
    const osc = ac.createOscillator();
    const dst = ac.createMediaStreamDestination();
    osc.connect(dst); osc.start();
    pub.addTransceiver(dst.stream.getAudioTracks()[0], { direction: 'sendonly', streams: [stream] });
  } catch (e) { S.errors.push('audio: ' + e); }
  await pub.setLocalDescription(await pub.createOffer());
  await new Promise((r) => {
    if (pub.iceGatheringState === 'complete') return r();
    pub.onicegatheringstatechange = () => pub.iceGatheringState === 'complete' && r();
    setTimeout(r, 2000);
  });
  const res = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pub.localDescription.sdp });
  const body = await res.text();
  if (res.status !== 201) throw new Error('WHIP POST ' + res.status + ': ' + body);
  S.whipLocation = new URL(res.headers.get('Location'), url).href;
  await pub.setRemoteDescription({ type: 'answer', sdp: body });
  S.whipCodec = (body.match(/a=rtpmap:[0-9]+ (H264|VP8|VP9|AV1|H265)/) || [])[1] || '';
}

// prewarm connects two local RTCPeerConnections (a data channel) and
// closes them: what a fresh browser pays once for its first connection
// (certificate, network stack) is then out of the WHEP viewer's figures.
async function prewarm() {
  const t0 = Date.now();
  const a = new RTCPeerConnection(), b = new RTCPeerConnection();
  a.onicecandidate = (e) => e.candidate && b.addIceCandidate(e.candidate).catch(() => {});
  b.onicecandidate = (e) => e.candidate && a.addIceCandidate(e.candidate).catch(() => {});
  a.createDataChannel('warm');
  await a.setLocalDescription(await a.createOffer());
  await b.setRemoteDescription(a.localDescription);
  await b.setLocalDescription(await b.createAnswer());
  await a.setRemoteDescription(b.localDescription);
  await new Promise((r) => {
    const t = setTimeout(r, 3000);
    a.onconnectionstatechange = () => { if (a.connectionState === 'connected') { clearTimeout(t); r(); } };
  });
  S.prewarm = { ms: Date.now() - t0, state: a.connectionState };
  a.close(); b.close();
}

if (q.get('whep')) {
  // A bare WHEP client: recvonly video and audio, every candidate in the
  // offer (no trickle). The POST is retried while the stream is not there
  // (for a server started with the publisher), for up to 20 s.
  (async () => {
    if (q.get('whip')) await publish(q.get('whip'));
    if (q.get('prewarm')) await prewarm();
    const pc = window.PC = new RTCPeerConnection();
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    // The picture first, the sound once it shows, as streamhub's players
    // do: Chromium sets up audio output on the page's main thread, which
    // holds the first picture back (~250 ms headless, no sound device).
    const ms = window.pendingMS = new MediaStream();
    pc.ontrack = (e) => {
      if (e.track.kind === 'audio' && !S.firstFrameAt) window.pendingAudio = e.track;
      else ms.addTrack(e.track);
      v.srcObject = ms;
    };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'connected' && !S.connectedAt) S.connectedAt = Date.now();
    };
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((r) => {
      if (pc.iceGatheringState === 'complete') return r();
      pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && r();
      setTimeout(r, 2000);
    });
    const until = Date.now() + 20000;
    for (;;) {
      S.postedAt = Date.now();
      const res = await fetch(q.get('url'), { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
      const body = await res.text();
      if (res.status === 201) {
        S.location = new URL(res.headers.get('Location'), q.get('url')).href;
        await pc.setRemoteDescription({ type: 'answer', sdp: body });
        break;
      }
      if (Date.now() > until) { S.errors.push('WHEP POST ' + res.status + ': ' + body); return; }
      await new Promise((r) => setTimeout(r, 250));
    }
    const pr = v.play();
    if (pr && pr.catch) pr.catch(() => {}); // autoplay starts it once the track arrives
  })().catch((e) => S.errors.push('whep: ' + e));
  window.rtcStats = async () => {
    const out = { audioSamples: 0, nacks: 0, lost: 0, jitterBufferMs: 0 };
    if (!window.PC) return out;
    (await PC.getStats()).forEach((s) => {
      if (s.type !== 'inbound-rtp') return;
      out.lost += s.packetsLost || 0;
      if (s.kind === 'audio') out.audioSamples = s.totalSamplesReceived || 0;
      if (s.kind === 'video') {
        out.nacks = s.nackCount || 0;
        if (s.jitterBufferEmittedCount) out.jitterBufferMs = 1000 * s.jitterBufferDelay / s.jitterBufferEmittedCount;
      }
    });
    return out;
  };
  window.whepDelete = async () => {
    if (S.location) await fetch(S.location, { method: 'DELETE' }).catch(() => {});
    if (window.PC) PC.close();
    if (S.whipLocation) await fetch(S.whipLocation, { method: 'DELETE' }).catch(() => {});
    if (window.PUB) PUB.close();
  };
} else if (q.get('hls')) {
  if (!window.Hls || !Hls.isSupported()) {
    S.errors.push('hls.js not supported in this browser (no MSE?)');
  } else {
    const cfg = Object.assign({ lowLatencyMode: true }, JSON.parse(q.get('player') || '{}'));
    const h = window.H = new Hls(cfg);
    // Fatal errors end the measurement; the others (buffer stalls, part
    // retries) are counted by detail, with their time.
    h.on(Hls.Events.ERROR, (ev, d) => {
      if (d.fatal) S.errors.push('hls.js ' + d.type + ' ' + d.details + (d.response ? ' ' + JSON.stringify(d.response) : '') + (d.error ? ' ' + d.error : ''));
      else S.warnings.push([Date.now(), d.details]);
    });
    h.on(Hls.Events.MANIFEST_LOADING, () => { S.requestAt = S.requestAt || Date.now(); });
    // When hls.js has its first media playlist (where it picks its start
    // position, PART-HOLD-BACK behind the live edge, for good: its
    // default config never plays faster to catch up), and how far behind
    // that edge it thinks it is at the first picture.
    h.on(Hls.Events.LEVEL_LOADED, () => { S.levelAt = S.levelAt || Date.now(); });
    h.on(Hls.Events.MANIFEST_PARSED, () => {
      const pr = v.play();
      if (pr && pr.catch) pr.catch((e) => S.errors.push('play(): ' + e));
    });
    // The start's timeline on the page's console (LATENCY_CONSOLE=1 -v
    // shows it): ms since loadSource, hls.js's loads and appends, the
    // video element's seek and first frame (docs/benchmarks.md reads one).
    const t0 = Date.now();
    const tl = (...a) => console.log('timeline', Date.now() - t0, ...a);
    for (const ev of ['MEDIA_ATTACHED', 'LEVEL_LOADED', 'FRAG_LOADING', 'FRAG_LOADED', 'BUFFER_CREATED', 'FRAG_PARSED', 'BUFFER_APPENDED']) {
      h.on(Hls.Events[ev], (e, d) => {
        const f = d && d.frag;
        tl(ev, f ? 'sn=' + f.sn + ' part=' + (d.part ? d.part.index : '-') + ' start=' + (d.part ? d.part.start : f.start).toFixed(3) : '',
          d && d.details ? 'edge=' + d.details.edge.toFixed(3) : '');
      });
    }
    for (const ev of ['loadedmetadata', 'seeking', 'seeked', 'playing']) {
      v.addEventListener(ev, () => tl('video ' + ev, 'currentTime=' + v.currentTime.toFixed(3)));
    }
    if (S.rvfc) v.requestVideoFrameCallback((now, m) => tl('first frame', 'mediaTime=' + m.mediaTime.toFixed(3)));
    // -prewarm: the audio output started first (an AudioContext), so
    // that the browser's audio device start is not in the figures: with
    // an audio track the first seek waits for it.
    (async () => {
      if (q.get('prewarm')) {
        const t = Date.now();
        const ac = window.AC = new AudioContext();
        await ac.resume();
        S.prewarm = { ms: Date.now() - t, state: ac.state };
        tl('audio warm', JSON.stringify(S.prewarm));
      }
      h.loadSource(q.get('url'));
      h.attachMedia(v);
    })();
  }
} else if (!window.mpegts || !mpegts.isSupported()) {
  S.errors.push('mpegts.js not supported in this browser (no MSE?)');
} else {
  const cfg = Object.assign({ enableStashBuffer: false, liveBufferLatencyChasing: true }, JSON.parse(q.get('player') || '{}'));
  const p = mpegts.createPlayer({ type: 'flv', isLive: true, url: q.get('url') }, cfg);
  p.on(mpegts.Events.ERROR, (type, detail, info) => S.errors.push('mpegts ' + type + ' ' + detail + ' ' + JSON.stringify(info)));
  p.attachMediaElement(v);
  p.load();
  const pr = p.play();
  if (pr && pr.catch) pr.catch((e) => S.errors.push('play(): ' + e));
}
</script>
</body></html>`;

function quantile(sorted, q) {
  if (!sorted.length) return 0;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos), hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

function median(xs) {
  return quantile([...xs].sort((a, b) => a - b), 0.5);
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const res = {
    duration_s: 0, samples: 0, decode_failures: 0,
    median_ms: 0, p95_ms: 0, min_ms: 0, max_ms: 0, mean_ms: 0, display_median_ms: 0,
    first_second_median_ms: 0, last_second_median_ms: 0,
    stalls: 0, stalls_after_start: 0, startup_ms: 0, dropped_frames: 0, presented_frames: 0, rvfc: false, errors: [],
    player: o.whep ? 'RTCPeerConnection' : o.hls ? 'hls.js' : 'mpegts.js',
    player_version: o.whep ? '' : pkgVersion(o.hls ? 'hls.js' : 'mpegts.js'),
    first_frame_after_request_ms: 0, first_frame_after_level_ms: 0, player_first_latency_s: 0, first_frame_after_post_ms: 0, connected_after_post_ms: 0, audio_samples: 0, jitter_buffer_ms: 0, nack_count: 0, packets_lost: 0,
    player_warnings: {}, player_latency_s: 0, player_target_latency_s: 0, playback_rate: 0, forward_buffer_s: 0,
    playhead_rate: 0, buffer_end_rate: 0,
    latencies_ms: [],
  };
  const run = session(res, { timeoutMs: (o.warmup + o.duration + 40) * 1000, timeoutError: 'timeout' });

  try {
    const base = await run.serve(page(o.hls, o.whep));
    const pg = await run.launch('streamhub-latency-chromium-', { viewport: { width: 640, height: 480 } });
    if (process.env.LATENCY_CONSOLE) {
      const c0 = Date.now();
      pg.on('console', (m) => process.stderr.write(`[${Date.now() - c0}] ${m.text()}\n`));
    }
    const qs = new URLSearchParams({ url: o.url, layout: JSON.stringify(o.layout), player: JSON.stringify(o.player) });
    if (o.whep) qs.set('whep', '1');
    if (o.whip) qs.set('whip', o.whip);
    if (o.prewarm) qs.set('prewarm', '1');
    if (o.hls) {
      qs.set('hls', '1');
      await pg.addInitScript({ path: hlsPath });
    }
    const t0 = Date.now();
    await pg.goto(`${base}?${qs}`, { timeout: 10000 });

    // Wait for the first decoded frame.
    for (;;) {
      const s = await pg.evaluate(() => ({ n: S.samples.length, errors: S.errors.slice(), first: S.firstFrameAt }));
      if (s.errors.length) throw new Error(s.errors.join('; '));
      if (s.n > 0) {
        res.startup_ms = s.first - t0;
        break;
      }
      if (Date.now() - t0 > 20000) throw new Error('no decodable frame within 20 s');
      await sleep(100);
    }
    await sleep(o.warmup * 1000);
    const w0 = await pg.evaluate(() => {
      const v = document.getElementById('v');
      return { t: Date.now(), stalls: S.stalls, presented: S.presented, fails: S.fails, dropped: v.getVideoPlaybackQuality().droppedVideoFrames,
        ct: v.currentTime, end: v.buffered.length ? v.buffered.end(v.buffered.length - 1) : 0 };
    });
    await sleep(o.duration * 1000);
    const w1 = await pg.evaluate(async () => {
      const v = document.getElementById('v');
      return { t: Date.now(), stalls: S.stalls, presented: S.presented, fails: S.fails, dropped: v.getVideoPlaybackQuality().droppedVideoFrames,
        samples: S.samples, errors: S.errors, rvfc: S.rvfc, warnings: S.warnings, stallsAfterStart: S.stallsAfterStart,
        version: window.Hls ? Hls.version : '', rate: v.playbackRate,
        ct: v.currentTime, end: v.buffered.length ? v.buffered.end(v.buffered.length - 1) : 0,
        requestAt: S.requestAt || 0, levelAt: S.levelAt || 0, firstLatency: S.firstLatency || 0,
        latency: window.H ? H.latency : 0, target: window.H ? H.targetLatency : 0,
        whipCodec: S.whipCodec || '', prewarm: S.prewarm || null, posted: S.postedAt || 0, connected: S.connectedAt || 0, first: S.firstFrameAt,
        rtc: window.rtcStats ? await window.rtcStats() : null };
    });
    if (o.whep) {
      res.player_version = (await pg.evaluate(() => navigator.userAgent)).replace(/.*(Chrom[a-z]*\/[0-9.]+).*/, '$1');
      if (w1.posted) {
        res.first_frame_after_post_ms = w1.first - w1.posted;
        if (w1.connected) res.connected_after_post_ms = w1.connected - w1.posted;
      }
      res.publisher_codec = w1.whipCodec;
      if (w1.prewarm) res.prewarm = w1.prewarm;
      if (w1.rtc) {
        res.audio_samples = w1.rtc.audioSamples;
        res.jitter_buffer_ms = w1.rtc.jitterBufferMs;
        res.nack_count = w1.rtc.nacks;
        res.packets_lost = w1.rtc.lost;
      }
      await pg.evaluate(() => window.whepDelete());
    }
    const win = w1.samples.filter((s) => s[0] >= w0.t && s[0] <= w1.t);
    const lat = win.map((s) => s[1]).sort((a, b) => a - b);
    res.duration_s = (w1.t - w0.t) / 1000;
    res.samples = lat.length;
    res.latencies_ms = win.map((s) => s[1]);
    res.decode_failures = w1.fails - w0.fails;
    res.presented_frames = w1.presented - w0.presented;
    res.dropped_frames = w1.dropped - w0.dropped;
    res.stalls = w1.stalls - w0.stalls;
    res.rvfc = w1.rvfc;
    res.stalls_after_start = w1.stallsAfterStart;
    res.playback_rate = w1.rate;
    res.forward_buffer_s = w1.end - w1.ct;
    // Media seconds per wall second over the window: the playhead (below 1:
    // the player plays slower than real time) and the buffered end (above
    // 1: the media timeline runs faster than the source).
    res.playhead_rate = (w1.ct - w0.ct) / res.duration_s;
    res.buffer_end_rate = (w1.end - w0.end) / res.duration_s;
    if (o.hls) {
      res.player_version = w1.version || res.player_version;
      res.player_latency_s = w1.latency || 0;
      res.player_target_latency_s = w1.target || 0;
      if (w1.requestAt && w1.first) res.first_frame_after_request_ms = w1.first - w1.requestAt;
      if (w1.levelAt && w1.first) res.first_frame_after_level_ms = w1.first - w1.levelAt;
      res.player_first_latency_s = w1.firstLatency;
    }
    for (const [t, d] of w1.warnings) {
      if (t >= w0.t && t <= w1.t) res.player_warnings[d] = (res.player_warnings[d] || 0) + 1;
    }
    res.errors.push(...w1.errors);
    if (lat.length) {
      res.median_ms = quantile(lat, 0.5);
      res.p95_ms = quantile(lat, 0.95);
      res.min_ms = lat[0];
      res.max_ms = lat[lat.length - 1];
      res.mean_ms = lat.reduce((a, b) => a + b, 0) / lat.length;
      res.display_median_ms = median(win.map((s) => s[2]));
      res.first_second_median_ms = median(win.filter((s) => s[0] < w0.t + 1000).map((s) => s[1]));
      res.last_second_median_ms = median(win.filter((s) => s[0] > w1.t - 1000).map((s) => s[1]));
    }
    await run.finish(lat.length ? 0 : 1);
  } catch (e) {
    res.errors.push(`${errorLine(e)}`);
    await run.finish(2);
  }
}

main().catch(fatal({}));

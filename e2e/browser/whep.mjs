// whep.mjs plays one WHEP URL in headless Chromium (RTCPeerConnection, no
// library) and reports whether video frames advanced and audio arrived.
//
//	node whep.mjs URL [--sample SECONDS] [--timeout SECONDS]
//
// The page posts a recvonly offer (video and audio) to URL once its ICE
// gathering completed, applies the answer and plays the stream in a <video>.
// It prints one JSON line: frames presented at the start and end of the
// sample, audio samples received (getStats inbound-rtp), firstFrameMs (from
// the POST to the first presented frame), and errors. Exit status 0 when
// frames advanced, 1 when not, 2 on setup failure or timeout (see lib.mjs).

import { session, errorLine, fatal, sleep, parseSampleArgs } from './lib.mjs';

const page = `<!doctype html>
<html><head><meta charset="utf-8"><title>streamhub whep e2e</title></head>
<body>
<video id="v" muted autoplay playsinline width="320" height="240"></video>
<audio id="a" autoplay></audio>
<script>
window.__errors = [];
window.__frames = 0;
window.__firstFrameMs = 0;
window.__marks = {};
const mark = (k) => { if (window.__posted && !(k in window.__marks)) window.__marks[k] = Math.round(performance.now() - window.__posted); };
const url = new URLSearchParams(location.search).get('url');
const v = document.getElementById('v');
const onFrame = () => {
  window.__frames++;
  if (!window.__firstFrameMs) window.__firstFrameMs = performance.now() - window.__posted;
  mark('frame');
  startAudio();
  v.requestVideoFrameCallback(onFrame);
};
v.requestVideoFrameCallback(onFrame);
function startAudio() {
  const a = document.getElementById('a');
  if (window.__audioTrack && !a.srcObject) a.srcObject = new MediaStream([window.__audioTrack]);
}
(async () => {
  const pc = new RTCPeerConnection();
  window.__pc = pc;
  pc.addTransceiver('video', { direction: 'recvonly' });
  pc.addTransceiver('audio', { direction: 'recvonly' });
  // The picture first, the sound once it shows: Chromium's renderer sets
  // up audio output on its main thread, which holds everything else up
  // (about 250 ms headless, with no sound device).
  pc.ontrack = (e) => {
    if (e.track.kind === 'video') v.srcObject = new MediaStream([e.track]);
    else window.__audioTrack = e.track;
  };
  pc.oniceconnectionstatechange = () => mark('ice-' + pc.iceConnectionState);
  pc.onconnectionstatechange = () => mark(pc.connectionState);
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((r) => {
    if (pc.iceGatheringState === 'complete') return r();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && r();
    setTimeout(r, 2000);
  });
  window.__posted = performance.now();
  const res = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
  const body = await res.text();
  mark('answer');
  if (res.status !== 201) { window.__errors.push('POST ' + res.status + ': ' + body); return; }
  window.__location = res.headers.get('Location');
  await pc.setRemoteDescription({ type: 'answer', sdp: body });
})().catch((e) => window.__errors.push('whep: ' + e));
window.__stats = async () => {
  const out = { audioSamples: 0, audioPackets: 0, videoPackets: 0, nacks: 0, jitterBufferMs: 0 };
  if (!window.__pc) return out;
  (await window.__pc.getStats()).forEach((s) => {
    if (s.type !== 'inbound-rtp') return;
    if (s.kind === 'audio') { out.audioSamples = s.totalSamplesReceived || 0; out.audioPackets = s.packetsReceived || 0; }
    if (s.kind === 'video') {
      out.videoPackets = s.packetsReceived || 0;
      out.nacks = s.nackCount || 0;
      if (s.jitterBufferEmittedCount) out.jitterBufferMs = Math.round(1000 * s.jitterBufferDelay / s.jitterBufferEmittedCount);
    }
  });
  return out;
};
</script>
</body></html>`;

async function main() {
  const opts = parseSampleArgs(process.argv.slice(2), 'whep.mjs', { sample: 4, timeout: 30 });
  const res = {
    ok: false, url: opts.url, framesStart: 0, framesEnd: 0, audioSamplesStart: 0, audioSamplesEnd: 0,
    firstFrameMs: 0, videoWidth: 0, videoHeight: 0, jitterBufferMs: 0, errors: [], console: [],
  };
  const run = session(res, { timeoutMs: opts.timeout * 1000, timeoutError: `timeout: no result within ${opts.timeout}s` });
  try {
    const base = await run.serve(page);
    const pg = await run.launch('streamhub-e2e-whep-');
    pg.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') res.console.push(`${m.type()}: ${m.text()}`.slice(0, 300));
    });
    await pg.goto(base + '?url=' + encodeURIComponent(opts.url), { timeout: 10000 });
    const snap = () => pg.evaluate(async () => ({
      frames: window.__frames, first: window.__firstFrameMs, errors: window.__errors.slice(), marks: window.__marks,
      w: document.getElementById('v').videoWidth, h: document.getElementById('v').videoHeight, stats: await window.__stats(),
    }));
    let s;
    for (;;) {
      s = await snap();
      if (s.errors.length || s.frames > 0) break;
      await sleep(50);
    }
    res.framesStart = s.frames;
    res.audioSamplesStart = s.stats.audioSamples;
    if (!s.errors.length) {
      await sleep(opts.sample * 1000);
      s = await snap();
    }
    res.framesEnd = s.frames;
    res.audioSamplesEnd = s.stats.audioSamples;
    res.firstFrameMs = Math.round(s.first);
    res.videoWidth = s.w;
    res.videoHeight = s.h;
    res.jitterBufferMs = s.stats.jitterBufferMs;
    res.marks = s.marks; // ms after the POST: answer, ICE and DTLS states, first frame
    res.errors.unshift(...s.errors);
    res.ok = res.framesEnd > res.framesStart && !res.errors.length;
    await run.finish(res.ok ? 0 : 1);
  } catch (e) {
    res.errors.push(`setup: ${errorLine(e)}`);
    await run.finish(2);
  }
}

main().catch(fatal({ ok: false }));

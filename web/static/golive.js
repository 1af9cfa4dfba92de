// golive.js is the "Go live from this browser" part of the broadcast page:
// it captures the camera and microphone (getUserMedia) or a screen
// (getDisplayMedia, with the microphone when the screen has no sound),
// shows them, and publishes them over WHIP (RFC 9725) to this server:
//
//	POST /<path>/whip  (Authorization: Bearer <key>, an SDP offer)  → 201, Location, ETag, the answer
//	PATCH <Location>   candidates gathered after the POST (trickle-ice-sdpfrag)
//	DELETE <Location>  Stop, or the page going away
//
// The offer has send-only transceivers, H.264 first when the browser lets
// us order codecs (the server takes H.264, H.265 and AV1 video, Opus audio).
// While live the page shows the bitrate sent (getStats), the viewers (the
// streams API, or /streams.json) and the stream's chat (chat.js, told the
// room with a `streamhub:chat` event). Settings come from #broadcast-conf
// (web/pages.go broadcastConf); the stream just created on the page comes
// with the `streamhub:created` event (broadcast.js). What the server says
// is put on the page as text only. window.streamhubLive is the state, for
// the console and the tests.
(() => {
  'use strict';
  const conf = JSON.parse(document.getElementById('broadcast-conf').textContent);
  const form = document.getElementById('live-form');
  if (!conf.webrtc || !form) return;
  const preview = document.getElementById('preview');
  const sourceSel = document.getElementById('source');
  const sizeSel = document.getElementById('size');
  const previewBtn = document.getElementById('preview-button');
  const pathIn = document.getElementById('live-path');
  const keyIn = document.getElementById('live-key');
  const liveBtn = document.getElementById('live-button');
  const stopBtn = document.getElementById('stop-button');
  const statusEl = document.getElementById('live-status');
  const errorEl = document.getElementById('live-error');
  const bitrateEl = document.getElementById('live-bitrate');
  const sizeEl = document.getElementById('live-size');
  const viewersEl = document.getElementById('live-viewers');
  const watchEl = document.getElementById('live-watch');

  // state.phase: idle, preview, connecting, live, stopped.
  const state = {
    phase: 'idle', path: '', location: '', error: '', events: [],
    figures: { kbps: 0, bytesSent: 0, framesSent: 0, width: 0, height: 0, fps: 0, viewers: null, audio: false },
  };
  window.streamhubLive = state;
  let media = null; // the captured MediaStream
  let mediaKind = ''; // source and size it was captured with
  let created = null; // the stream created on this page: {id, path}
  let pc = null;
  let etag = '';
  let gen = 0; // counts the sessions: callbacks of an old one do nothing
  let connectedAt = 0; // performance.now() when this session's connection came up
  let timers = [];

  function note(text) {
    state.events.push(new Date().toISOString().slice(11, 23) + ' ' + text);
    if (state.events.length > 50) state.events.shift();
  }

  function setStatus(text) {
    statusEl.textContent = text;
  }

  function showError(text) {
    state.error = text;
    if (text) note('error: ' + text);
    errorEl.textContent = text;
    errorEl.hidden = !text;
  }

  function setPhase(phase) {
    state.phase = phase;
    const busy = phase === 'connecting' || phase === 'live';
    liveBtn.disabled = busy;
    previewBtn.disabled = busy;
    sourceSel.disabled = busy;
    sizeSel.disabled = busy;
    pathIn.readOnly = busy;
    keyIn.readOnly = busy;
    stopBtn.disabled = phase === 'idle' || phase === 'stopped';
  }

  // mediaError says in words why capturing failed.
  function mediaError(e) {
    switch (e && e.name) {
      case 'NotAllowedError':
        return 'the browser was not allowed to use the camera, microphone or screen (check the site permissions)';
      case 'NotFoundError':
        return 'no camera or microphone found';
      case 'NotReadableError':
        return 'the camera or microphone is in use by another program';
      case 'OverconstrainedError':
        return 'the camera cannot give that size: pick another';
      default:
        return (e && e.message) || String(e);
    }
  }

  function stopMedia() {
    if (media) for (const t of media.getTracks()) t.stop();
    media = null;
    mediaKind = '';
    preview.srcObject = null;
  }

  // capture returns the stream of the chosen source and size, captured
  // again only when they changed.
  async function capture() {
    const kind = sourceSel.value + ' ' + sizeSel.value;
    if (media && mediaKind === kind && media.getTracks().every((t) => t.readyState === 'live')) return media;
    stopMedia();
    const md = navigator.mediaDevices;
    if (!md || !md.getUserMedia) {
      throw new Error('this page cannot use a camera here: browsers allow it only over HTTPS or on localhost');
    }
    const [w, h] = sizeSel.value.split('x').map(Number);
    const video = { width: { ideal: w }, height: { ideal: h }, frameRate: { ideal: 30 } };
    let s;
    try {
      if (sourceSel.value === 'screen') {
        if (!md.getDisplayMedia) throw new Error('this browser cannot share a screen');
        s = await md.getDisplayMedia({ video, audio: true });
        if (s.getAudioTracks().length === 0) {
          try {
            const mic = await md.getUserMedia({ audio: true });
            for (const t of mic.getAudioTracks()) s.addTrack(t);
          } catch (e) {
            note('no microphone with the screen: ' + mediaError(e));
          }
        }
      } else {
        s = await md.getUserMedia({ video, audio: true });
      }
    } catch (e) {
      throw new Error('Could not capture: ' + mediaError(e));
    }
    media = s;
    mediaKind = kind;
    // The screen's "Stop sharing" ends the video track: so does the stream.
    for (const t of s.getVideoTracks()) {
      t.addEventListener('ended', () => {
        if (media === s) stop('the ' + (sourceSel.value === 'screen' ? 'screen sharing' : 'camera') + ' ended');
      });
    }
    preview.srcObject = s;
    preview.play().catch(() => {});
    return s;
  }

  // preferH264 puts H.264 first in the transceiver's codec list
  // (packetization-mode=1, constrained baseline first), where the browser
  // lets us order codecs; the rest follow.
  function preferH264(tr) {
    if (!tr.setCodecPreferences || !window.RTCRtpSender || !RTCRtpSender.getCapabilities) return;
    const caps = RTCRtpSender.getCapabilities('video');
    if (!caps || !caps.codecs) return;
    const isH264 = (c) => c.mimeType.toLowerCase() === 'video/h264';
    const score = (c) => {
      const f = c.sdpFmtpLine || '';
      return (f.includes('packetization-mode=1') ? 0 : 2) + (f.includes('profile-level-id=42e01f') ? 0 : 1);
    };
    const h264 = caps.codecs.filter(isH264).sort((a, b) => score(a) - score(b));
    if (h264.length === 0) return;
    try {
      tr.setCodecPreferences([...h264, ...caps.codecs.filter((c) => !isH264(c))]);
    } catch (e) {
      note('setCodecPreferences: ' + e.message);
    }
  }

  // gathered resolves when ICE gathering completed or after ms: what is
  // gathered later is sent with PATCH.
  function gathered(p, ms) {
    return new Promise((resolve) => {
      if (p.iceGatheringState === 'complete') return resolve();
      const t = setTimeout(resolve, ms);
      p.addEventListener('icegatheringstatechange', () => {
        if (p.iceGatheringState === 'complete') {
          clearTimeout(t);
          resolve();
        }
      });
    });
  }

  function authHeaders() {
    const key = keyIn.value.trim();
    return key ? { Authorization: 'Bearer ' + key } : {};
  }

  // fragment is a trickle-ice-sdpfrag (RFC 8840) with the candidates of
  // cands ([{mid, line}]), or end-of-candidates when cands is empty.
  function fragment(sdp, cands) {
    const ufrag = (sdp.match(/^a=ice-ufrag:(.*)$/m) || [])[1];
    const pwd = (sdp.match(/^a=ice-pwd:(.*)$/m) || [])[1];
    const lines = ['a=ice-ufrag:' + (ufrag || '').trim(), 'a=ice-pwd:' + (pwd || '').trim()];
    if (cands.length === 0) {
      lines.push('a=end-of-candidates');
    }
    const byMid = new Map();
    for (const c of cands) {
      if (!byMid.has(c.mid)) byMid.set(c.mid, []);
      byMid.get(c.mid).push(c.line);
    }
    for (const [mid, ls] of byMid) {
      lines.push('m=audio 9 UDP/TLS/RTP/SAVPF 0', 'a=mid:' + mid, ...ls.map((l) => 'a=' + l));
    }
    return lines.join('\r\n') + '\r\n';
  }

  async function patch(my, url, body) {
    try {
      const res = await fetch(url, {
        method: 'PATCH',
        headers: { 'Content-Type': 'application/trickle-ice-sdpfrag', 'If-Match': etag || '*', ...authHeaders() },
        body,
      });
      if (my === gen && !res.ok) note('PATCH ' + res.status + ': ' + (await res.text()).trim());
    } catch (e) {
      note('PATCH: ' + e.message);
    }
  }

  async function goLive() {
    showError('');
    const path = pathIn.value.trim().replace(/^\/+|\/+$/g, '');
    if (!path) {
      showError('Enter the stream path (create a stream above to get one).');
      pathIn.focus();
      return;
    }
    if (!window.RTCPeerConnection) {
      showError('This browser has no WebRTC (RTCPeerConnection): publish from OBS with the settings above.');
      return;
    }
    const my = ++gen;
    connectedAt = 0;
    state.path = path;
    setPhase('connecting');
    setStatus('starting the camera…');
    let stream;
    try {
      stream = await capture();
    } catch (e) {
      if (my !== gen) return;
      showError(e.message);
      setPhase(media ? 'preview' : 'idle');
      setStatus('');
      return;
    }
    if (my !== gen) return;
    state.figures.audio = stream.getAudioTracks().length > 0;
    setStatus('connecting to the server…');
    const p = new RTCPeerConnection({ iceServers: conf.iceServers || [], bundlePolicy: 'max-bundle' });
    pc = p;
    etag = '';
    // Candidates found after the offer was sent go by PATCH once the
    // session's URL is known.
    let sent = false;
    let sessionURL = '';
    const late = [];
    let ended = false;
    p.addEventListener('icecandidate', (ev) => {
      if (!sent) return; // in the offer
      if (!ev.candidate) ended = true;
      else if (ev.candidate.candidate) late.push({ mid: ev.candidate.sdpMid || '0', line: ev.candidate.candidate });
      if (sessionURL) flushLate();
    });
    const flushLate = () => {
      if (late.length) patch(my, sessionURL, fragment(p.localDescription.sdp, late.splice(0)));
      if (ended) {
        ended = false;
        patch(my, sessionURL, fragment(p.localDescription.sdp, []));
      }
    };
    p.addEventListener('connectionstatechange', () => {
      if (my !== gen) return;
      note('connection ' + p.connectionState);
      switch (p.connectionState) {
        case 'connected':
          if (!connectedAt) connectedAt = performance.now();
          setPhase('live');
          setStatus('live on ' + path);
          watchEl.href = '/watch/' + path;
          watchEl.textContent = 'watch page of ' + path;
          watchEl.hidden = false;
          // The chat room opens with the stream, which the server
          // registers once the first packets of every track arrived.
          setTimeout(() => {
            if (my === gen) document.dispatchEvent(new CustomEvent('streamhub:chat', { detail: '/chat/' + path }));
          }, 1000);
          break;
        case 'disconnected':
          setStatus('connection interrupted; waiting for it to come back…');
          break;
        case 'failed':
          stop('', 'The connection to the server failed (ICE or DTLS): the server may have ended the session, ' +
            'or its WebRTC port (webrtc.udpAddress / tcpAddress) is not reachable from here.');
          break;
        case 'closed': // by the server (the key was rotated, the stream deleted, the server stopped)
          stop('', 'The server ended the session.');
          break;
      }
    });
    try {
      for (const track of stream.getTracks()) {
        const tr = p.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
        if (track.kind === 'video') preferH264(tr);
      }
      await p.setLocalDescription(await p.createOffer());
      await gathered(p, 1500);
      if (my !== gen) return;
      const offer = p.localDescription.sdp;
      sent = true;
      const url = '/' + path + '/whip';
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'Content-Type': 'application/sdp', ...authHeaders() },
        body: offer,
      });
      const body = await res.text();
      if (my !== gen) {
        // Stopped meanwhile: end the session the server just made.
        const loc = res.headers.get('Location');
        if (res.status === 201 && loc) fetch(loc, { method: 'DELETE', headers: authHeaders() }).catch(() => {});
        return;
      }
      if (res.status !== 201) {
        throw new Error('The server refused to go live (HTTP ' + res.status + '): ' + (body.trim() || res.statusText || 'no reason given'));
      }
      sessionURL = new URL(res.headers.get('Location') || '', window.location.href).pathname;
      state.location = sessionURL;
      etag = res.headers.get('ETag') || '';
      await p.setRemoteDescription({ type: 'answer', sdp: body });
      flushLate();
      setStatus('connecting the media…');
    } catch (e) {
      if (my !== gen) return;
      stop('', e.message.startsWith('The server') ? e.message : 'Could not go live: ' + e.message, true);
      return;
    }
    startFigures(my, p);
  }

  // startFigures updates the bitrate (each second) and the viewers (every
  // 3 s) while the session is my.
  function startFigures(my, p) {
    let lastBytes = 0;
    let lastAt = 0;
    timers.push(setInterval(async () => {
      if (my !== gen) return;
      let bytes = 0;
      let frames = 0;
      let w = 0;
      let h = 0;
      let fps = 0;
      try {
        (await p.getStats()).forEach((r) => {
          if (r.type !== 'outbound-rtp') return;
          bytes += r.bytesSent || 0;
          if (r.kind === 'video') {
            frames += r.framesSent || 0;
            w = r.frameWidth || w;
            h = r.frameHeight || h;
            fps = r.framesPerSecond || fps;
          }
        });
      } catch (e) {
        return;
      }
      const now = performance.now();
      const f = state.figures;
      if (lastAt && bytes >= lastBytes) f.kbps = Math.round(((bytes - lastBytes) * 8) / (now - lastAt));
      lastBytes = bytes;
      lastAt = now;
      Object.assign(f, { bytesSent: bytes, framesSent: frames, width: w, height: h, fps });
      bitrateEl.textContent = 'sending ' + f.kbps + ' kb/s';
      sizeEl.textContent = w ? w + '×' + h + (fps ? ' · ' + Math.round(fps) + ' fps' : '') : '';
    }, 1000));
    // The server's view: a session it ended (kicked, key rotated, stream
    // deleted) may look connected here for up to 30 s, until ICE consent
    // fails; the stream no longer publishing there says it at once.
    let notLive = 0;
    const viewers = async () => {
      if (my !== gen) return;
      const v = await countViewers(state.path);
      if (my !== gen) return;
      state.figures.viewers = v.viewers;
      viewersEl.textContent = v.viewers === null ? 'viewers –' : v.viewers + (v.viewers === 1 ? ' viewer' : ' viewers');
      // The hub has the stream within 3 s of the connection (once every
      // track sent a packet): not publishing after that, twice, is an end.
      const settled = connectedAt > 0 && performance.now() - connectedAt > 4000;
      if (v.publishing !== false || !settled) {
        notLive = 0;
      } else if (++notLive >= 2) {
        stop('', 'The server ended the session: ' + state.path + ' is no longer live there (kicked, key rotated or stream deleted?).');
      }
    };
    timers.push(setInterval(viewers, 3000));
    viewers();
  }

  // countViewers asks the streams API for the stream created on this page
  // (its players by protocol, the ladder's and audio jobs left out), else
  // the public list of live streams. It returns {viewers, publishing}:
  // viewers null when neither knows the path, publishing true or false
  // when the server said so, else null.
  async function countViewers(path) {
    const out = { viewers: null, publishing: null };
    try {
      if (created && created.path === path && created.id) {
        const res = await fetch(conf.api + '/' + encodeURIComponent(created.id), { headers: { Accept: 'application/json' }, cache: 'no-store' });
        if (res.ok) {
          const s = await res.json();
          const f = s.figures;
          out.publishing = !!(s.live && f && f.publishing);
          out.viewers = 0;
          for (const [proto, k] of Object.entries((f && f.readersByProtocol) || {})) if (proto !== 'transcode') out.viewers += Number(k) || 0;
          return out;
        }
      }
      const res = await fetch('/streams.json', { cache: 'no-store' });
      if (!res.ok) return out;
      const { streams } = await res.json();
      const s = (streams || []).find((x) => x.path === path);
      if (s) {
        out.viewers = s.viewers;
        out.publishing = !!s.live;
      }
    } catch (e) {
      // the server restarts or the network is down: nothing known
    }
    return out;
  }

  // stop ends the session (DELETE), the connection and, unless keepMedia,
  // the capture. why goes to the status line, error to the error line.
  async function stop(why, error, keepMedia) {
    gen++;
    for (const t of timers) clearInterval(t);
    timers = [];
    const p = pc;
    const loc = state.location;
    pc = null;
    state.location = '';
    if (loc) {
      try {
        const res = await fetch(loc, { method: 'DELETE', headers: authHeaders() });
        note('DELETE ' + res.status);
      } catch (e) {
        note('DELETE: ' + e.message);
      }
    }
    if (p) p.close();
    if (!keepMedia) stopMedia();
    document.dispatchEvent(new CustomEvent('streamhub:chat', { detail: '' }));
    watchEl.hidden = true;
    bitrateEl.textContent = 'bitrate –';
    sizeEl.textContent = '';
    viewersEl.textContent = 'viewers –';
    Object.assign(state.figures, { kbps: 0, viewers: null });
    if (error) showError(error);
    setStatus(why || (error ? '' : 'stopped'));
    setPhase(media ? 'preview' : 'stopped');
  }

  document.addEventListener('streamhub:created', (ev) => {
    const s = ev.detail || {};
    if (typeof s.path !== 'string' || typeof s.key !== 'string') return;
    created = { id: String(s.id || ''), path: s.path };
    if (state.phase === 'connecting' || state.phase === 'live') return; // the next one uses it
    pathIn.value = s.path;
    keyIn.value = s.key;
  });

  previewBtn.addEventListener('click', async () => {
    showError('');
    try {
      await capture();
      setPhase('preview');
      setStatus('preview: not live yet');
    } catch (e) {
      showError(e.message);
    }
  });

  for (const sel of [sourceSel, sizeSel]) {
    sel.addEventListener('change', () => {
      if (state.phase === 'preview') previewBtn.click();
    });
  }

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    goLive();
  });

  stopBtn.addEventListener('click', () => stop());

  // Leaving the page ends the session at once rather than at the server's
  // timeout.
  window.addEventListener('pagehide', () => {
    if (state.location) fetch(state.location, { method: 'DELETE', headers: authHeaders(), keepalive: true }).catch(() => {});
  });

  setPhase('idle');
})();

// watch.js plays the stream of the watch page: WebRTC (WHEP, the browser's
// own RTCPeerConnection), LL-HLS with hls.js or HTTP-FLV with mpegts.js
// (the libraries come from this server, loaded when a mode needs them),
// with a rendition picker and a latency readout. The page's settings are
// JSON in #watch-conf (web/pages.go watchConf). Mode and rung are in the
// query string (?mode=flv&rung=240p), kept current so a link or a reload
// plays the same. WebRTC mode falls back to LL-HLS when the browser has no
// RTCPeerConnection, the WHEP POST is refused or the connection fails; why
// is shown in #fallback.
(() => {
  'use strict';
  const conf = JSON.parse(document.getElementById('watch-conf').textContent);
  const video = document.getElementById('video');
  const modeSel = document.getElementById('mode');
  const rendSel = document.getElementById('rendition');
  const latencyEl = document.getElementById('latency');
  const resolutionEl = document.getElementById('resolution');
  const statusEl = document.getElementById('status');
  const fallbackEl = document.getElementById('fallback');

  // state is also window.streamhub, for the console and the tests.
  // events keeps the player's last notable events (errors, level
  // switches), newest last.
  // rtc is the WebRTC session: {pc, location, latency, stats}.
  const state = { mode: conf.mode, rung: conf.rung, hls: null, flv: null, rtc: null, fallback: '', gen: 0, events: [] };
  function note(text) {
    state.events.push(new Date().toISOString().slice(11, 23) + ' ' + text);
    if (state.events.length > 50) state.events.shift();
  }
  window.streamhub = state;

  const scripts = {};
  function loadScript(url) {
    scripts[url] ??= new Promise((resolve, reject) => {
      const s = document.createElement('script');
      s.src = url;
      s.onload = resolve;
      s.onerror = () => reject(new Error('could not load ' + url));
      document.head.append(s);
    });
    return scripts[url];
  }

  function setStatus(text, error) {
    statusEl.textContent = text;
    statusEl.classList.toggle('error', !!error);
  }

  function option(value, label) {
    const o = document.createElement('option');
    o.value = value;
    o.textContent = label;
    return o;
  }

  function updateURL() {
    const q = new URLSearchParams(location.search);
    q.set('mode', state.mode);
    if (state.rung) q.set('rung', state.rung);
    else q.delete('rung');
    history.replaceState(null, '', location.pathname + '?' + q.toString());
  }

  function stop() {
    if (state.rtc) {
      const r = state.rtc;
      state.rtc = null;
      clearTimeout(r.timer);
      r.pc.close();
      // The server frees the session at once rather than at its timeout.
      if (r.location) fetch(r.location, { method: 'DELETE', keepalive: true }).catch(() => {});
      video.srcObject = null;
    }
    if (state.hls) {
      state.hls.destroy();
      state.hls = null;
    }
    if (state.flv) {
      const p = state.flv;
      state.flv = null;
      p.pause();
      p.unload();
      p.detachMediaElement();
      p.destroy();
    }
    video.removeAttribute('src');
    video.load();
  }

  // retry restarts the player after a fatal error, unless the user
  // switched meanwhile.
  function retry(gen, why) {
    setStatus(why + ' — retrying in 3 s', true);
    setTimeout(() => {
      if (gen === state.gen) start();
    }, 3000);
  }

  // fallback leaves WebRTC mode for LL-HLS and says why.
  function fallback(gen, why) {
    if (gen !== state.gen) return;
    note('WebRTC fallback: ' + why);
    state.fallback = why;
    fallbackEl.textContent = why + ' — playing LL-HLS instead.';
    fallbackEl.hidden = false;
    state.mode = 'hls';
    start();
  }

  async function start() {
    const gen = ++state.gen;
    stop();
    if (state.rewinding) {
      state.rewinding = false;
      liveBtn.hidden = true;
    }
    if (state.mode === 'webrtc' && !(conf.whep && window.RTCPeerConnection)) {
      state.mode = 'hls';
      fallbackEl.textContent = conf.whep ? 'This browser has no WebRTC (RTCPeerConnection): playing LL-HLS.' : 'This server has no WebRTC: playing LL-HLS.';
      fallbackEl.hidden = false;
    }
    updateURL();
    modeSel.value = state.mode;
    setStatus('loading…');
    if (state.mode === 'webrtc') {
      startWebRTC(gen);
      return;
    }
    const lib = conf.libs[state.mode];
    if (!lib) {
      setStatus(conf.missing, true);
      return;
    }
    try {
      await loadScript(lib);
    } catch (e) {
      setStatus(e.message, true);
      return;
    }
    if (gen !== state.gen) return;
    if (state.mode === 'flv') startFLV(gen);
    else startHLS(gen);
  }

  // levelName is the rung a level of the multivariant playlist plays
  // ("240p"), or "source".
  function levelName(level) {
    const prefix = new URL('/' + conf.path + '/', location.href).href;
    const url = (level.url && level.url[0]) || '';
    const rest = url.startsWith(prefix) ? url.slice(prefix.length).split('?')[0] : '';
    return rest.includes('/') ? rest.split('/')[0] : 'source';
  }

  function startHLS(gen) {
    rendSel.replaceChildren(option('-1', 'Auto'));
    if (!window.Hls || !Hls.isSupported()) {
      if (video.canPlayType('application/vnd.apple.mpegurl')) {
        video.src = conf.hls; // Safari plays LL-HLS itself
        video.play().catch(() => {});
        setStatus('');
      } else {
        setStatus('This browser cannot play HLS (no Media Source Extensions); try HTTP-FLV.', true);
      }
      return;
    }
    // hls.js keeps the latency its start left it at unless it may play a
    // little faster to catch up (only with more than 1 s buffered).
    const hls = new Hls({ lowLatencyMode: true, backBufferLength: 30, maxLiveSyncPlaybackRate: 1.5 });
    state.hls = hls;
    hls.on(Hls.Events.MANIFEST_PARSED, () => {
      const opts = [option('-1', 'Auto')];
      hls.levels.forEach((l, i) => {
        const kbps = Math.round((l.bitrate || 0) / 1000);
        const name = levelName(l);
        const label = name === 'source' && l.height ? 'source (' + l.height + 'p)' : name;
        opts.push(option(String(i), label + (kbps ? ' · ' + kbps + ' kb/s' : '')));
      });
      rendSel.replaceChildren(...opts);
      const want = state.rung ? hls.levels.findIndex((l) => levelName(l) === state.rung) : -1;
      if (want >= 0) hls.currentLevel = want;
      else if (state.rung) {
        state.rung = ''; // no such rung (any more): automatic
        updateURL();
      }
      rendSel.value = String(want);
      video.play().catch(() => {});
    });
    hls.on(Hls.Events.LEVEL_SWITCHED, (_, d) => {
      const l = hls.levels[d.level];
      note('level switched to ' + d.level + (hls.autoLevelEnabled ? ' (auto)' : ''));
      if (l) setStatus('playing ' + levelName(l) + (hls.autoLevelEnabled ? ' (auto)' : ''));
    });
    hls.on(Hls.Events.ERROR, (_, d) => {
      note('HLS ' + (d.fatal ? 'fatal ' : '') + d.type + ' ' + d.details + (d.response && d.response.code ? ' HTTP ' + d.response.code : '') + (d.url ? ' ' + d.url : ''));
      if (!d.fatal) return;
      if (d.type === Hls.ErrorTypes.MEDIA_ERROR) {
        hls.recoverMediaError();
        return;
      }
      retry(gen, 'HLS: ' + d.details);
    });
    hls.loadSource(conf.hls);
    hls.attachMedia(video);
  }

  // rungOptions fills the picker with the source and the ladder's rungs
  // (FLV and WebRTC mode, where a rung is its own URL).
  function rungOptions() {
    const opts = [option('', 'source')];
    const rungs = conf.rungs.slice();
    if (state.rung && !rungs.includes(state.rung)) rungs.push(state.rung); // picked in HLS mode
    for (const r of rungs) opts.push(option(r, r));
    rendSel.replaceChildren(...opts);
    rendSel.value = state.rung;
  }

  // gathered resolves when ICE gathering completed or after ms.
  function gathered(pc, ms) {
    return new Promise((resolve) => {
      if (pc.iceGatheringState === 'complete') return resolve();
      const t = setTimeout(resolve, ms);
      pc.addEventListener('icegatheringstatechange', () => {
        if (pc.iceGatheringState === 'complete') {
          clearTimeout(t);
          resolve();
        }
      });
    });
  }

  // startWebRTC plays over WHEP: a recvonly offer (video and audio) once
  // ICE gathering completed, the answer, and the tracks in the <video>.
  async function startWebRTC(gen) {
    rungOptions();
    const url = state.rung ? '/' + conf.path + '/' + state.rung + '/whep' + conf.keyQuery : conf.whep;
    const pc = new RTCPeerConnection({ iceServers: conf.iceServers || [] });
    const r = { pc, location: '', latency: NaN, stats: { framesDecoded: 0, audioSamples: 0 }, last: null, timer: 0 };
    state.rtc = r;
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    // The picture first, the sound once the first picture shows: Chromium
    // sets up audio output on the page's main thread, which would hold the
    // first picture back (about 250 ms where there is no sound device).
    const ms = new MediaStream();
    let audioTrack = null;
    let shown = !video.requestVideoFrameCallback;
    if (!shown) {
      video.requestVideoFrameCallback(() => {
        shown = true;
        if (audioTrack && state.rtc === r) ms.addTrack(audioTrack);
      });
    }
    pc.addEventListener('track', (ev) => {
      if (ev.track.kind === 'audio' && !shown) audioTrack = ev.track;
      else ms.addTrack(ev.track);
      if (video.srcObject !== ms) video.srcObject = ms;
      video.play().catch(() => {});
    });
    pc.addEventListener('connectionstatechange', () => {
      if (state.rtc !== r) return;
      note('WebRTC connection ' + pc.connectionState);
      if (pc.connectionState === 'connected') {
        clearTimeout(r.timer);
        setStatus('playing ' + (state.rung || 'source') + ' over WebRTC');
      } else if (pc.connectionState === 'failed') {
        fallback(gen, 'WebRTC: the connection to the server failed (its UDP/TCP port may be blocked from here)');
      }
    });
    let res;
    let body;
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc, 1000);
      if (state.rtc !== r) return;
      res = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
      body = await res.text();
    } catch (e) {
      fallback(gen, 'WebRTC: ' + e.message);
      return;
    }
    const loc = res.headers.get('Location');
    if (state.rtc !== r) {
      if (res.status === 201 && loc) fetch(loc, { method: 'DELETE', keepalive: true }).catch(() => {});
      return;
    }
    if (res.status !== 201) {
      fallback(gen, 'WebRTC refused by the server (HTTP ' + res.status + '): ' + (body.trim() || res.statusText));
      return;
    }
    r.location = new URL(loc || '', location.href).pathname;
    try {
      await pc.setRemoteDescription({ type: 'answer', sdp: body });
    } catch (e) {
      fallback(gen, 'WebRTC: the server\'s answer was not taken: ' + e.message);
      return;
    }
    setStatus('connecting over WebRTC…');
    r.timer = setTimeout(() => {
      if (state.rtc === r && pc.connectionState !== 'connected') fallback(gen, 'WebRTC: not connected within 10 s');
    }, 10000);
  }

  // ntpEpochMs is 1900-01-01 (the NTP epoch) in Unix milliseconds.
  const ntpEpochMs = -2208988800000;

  // rtcStats reads the WebRTC figures. The latency is how long ago the
  // server sent the picture now shown: the browser maps the RTP timestamps
  // to the server's clock with its sender reports and estimates when the
  // last frame played out in that clock (estimatedPlayoutTimestamp, NTP
  // milliseconds); this needs the two clocks to agree (NTP). Where that
  // figure is missing or the clocks plainly differ (a negative or very
  // large result), it is half the round trip plus the time from a frame's
  // first packet to its decoded picture over the last interval
  // (totalProcessingDelay, else the jitter buffer's delay).
  async function rtcStats(r) {
    const cur = { proc: 0, decoded: 0, jb: 0, emitted: 0 };
    let rtt = NaN;
    let playout = 0;
    const st = r.stats;
    (await r.pc.getStats()).forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') {
        cur.proc = s.totalProcessingDelay || 0;
        cur.decoded = s.framesDecoded || 0;
        cur.jb = s.jitterBufferDelay || 0;
        cur.emitted = s.jitterBufferEmittedCount || 0;
        playout = s.estimatedPlayoutTimestamp || 0;
        st.framesDecoded = cur.decoded;
      } else if (s.type === 'inbound-rtp' && s.kind === 'audio') {
        st.audioSamples = s.totalSamplesReceived || 0;
      } else if (s.type === 'candidate-pair' && s.nominated && s.currentRoundTripTime !== undefined) {
        rtt = s.currentRoundTripTime;
      }
    });
    const last = r.last || { proc: 0, decoded: 0, jb: 0, emitted: 0 };
    r.last = cur;
    const behind = playout > 0 ? (Date.now() - (playout + ntpEpochMs)) / 1000 : NaN;
    if (behind >= 0 && behind < 30) {
      r.latency = behind;
      r.latencyFrom = 'playout';
      return;
    }
    let delay = NaN;
    if (cur.proc > 0 && cur.decoded > last.decoded) delay = (cur.proc - last.proc) / (cur.decoded - last.decoded);
    else if (cur.emitted > last.emitted) delay = (cur.jb - last.jb) / (cur.emitted - last.emitted);
    if (Number.isFinite(delay)) {
      r.latency = delay + (Number.isFinite(rtt) ? rtt / 2 : 0);
      r.latencyFrom = 'network';
    }
  }

  function startFLV(gen) {
    rungOptions();
    if (!window.mpegts || !mpegts.isSupported()) {
      setStatus('This browser cannot play HTTP-FLV (no Media Source Extensions); try HLS.', true);
      return;
    }
    const path = state.rung ? '/' + conf.path + '/' + state.rung + '.flv' + conf.keyQuery : conf.flv;
    const p = mpegts.createPlayer(
      { type: 'flv', isLive: true, url: new URL(path, location.href).href },
      { enableStashBuffer: false, liveBufferLatencyChasing: true },
    );
    state.flv = p;
    p.on(mpegts.Events.ERROR, (type, detail) => {
      note('FLV ' + type + ' ' + detail);
      if (gen === state.gen) retry(gen, 'HTTP-FLV: ' + type + ' ' + detail);
    });
    p.attachMediaElement(video);
    p.load();
    const pr = p.play();
    if (pr && pr.catch) pr.catch(() => {});
    setStatus('playing ' + (state.rung || 'source'));
  }

  modeSel.addEventListener('change', () => {
    state.mode = ['webrtc', 'flv'].includes(modeSel.value) ? modeSel.value : 'hls';
    fallbackEl.hidden = true; // a new choice: the last fallback's reason is old
    start();
  });

  rendSel.addEventListener('change', () => {
    if (state.mode === 'flv' || state.mode === 'webrtc') {
      state.rung = rendSel.value;
      start();
      return;
    }
    const i = Number(rendSel.value);
    if (state.hls) {
      state.hls.currentLevel = i; // -1: automatic
      const l = state.hls.levels[i];
      state.rung = l && levelName(l) !== 'source' ? levelName(l) : '';
      updateURL();
    }
  });

  // The readout: how far behind live the picture is. HLS: hls.js's
  // estimate (from the playlist's program date times); FLV: what is
  // buffered ahead of the playhead; WebRTC: the jitter buffer's delay and
  // half the round trip (getStats, rtcStats).
  setInterval(() => {
    let latency = NaN;
    if (state.rtc) {
      const r = state.rtc;
      rtcStats(r).catch(() => {});
      latency = r.latency;
    } else if (state.hls && Number.isFinite(state.hls.latency)) {
      latency = state.hls.latency;
    } else if (state.flv && video.buffered.length > 0) {
      latency = video.buffered.end(video.buffered.length - 1) - video.currentTime;
    }
    if (!Number.isFinite(latency) || latency < 0) latencyEl.textContent = 'latency –';
    else if (state.rtc) latencyEl.textContent = 'latency ' + Math.round(latency * 1000) + ' ms'; // sub-second: ms
    else latencyEl.textContent = 'latency ' + latency.toFixed(2) + ' s';
    resolutionEl.textContent = video.videoWidth ? video.videoWidth + '×' + video.videoHeight : '';
  }, 500);

  // Rewind: the path's recording as HLS (an EVENT playlist into the
  // recorded files, /api/v1/recordings/rewind.m3u8) from rewindSeconds
  // back; the video's controls seek in it, "Rewind 2 min" jumps back,
  // "Back to live" plays the live mode again.
  const rewindEl = document.getElementById('rewind');
  const backBtn = document.getElementById('rewind-back');
  const liveBtn = document.getElementById('rewind-live');
  state.rewinding = false;

  function jumpBack(seconds) {
    const s = video.seekable;
    const lo = s.length ? s.start(0) : 0;
    video.currentTime = Math.max(lo, video.currentTime - seconds);
  }

  async function startRewind() {
    const gen = ++state.gen;
    stop();
    state.rewinding = true;
    liveBtn.hidden = false;
    setStatus('loading the recording…');
    try {
      await loadScript(conf.libs.hls);
    } catch (e) {
      setStatus(e.message, true);
      return;
    }
    if (gen !== state.gen) return;
    if (!window.Hls || !Hls.isSupported()) {
      setStatus('This browser cannot play the recording (no Media Source Extensions).', true);
      return;
    }
    const from = new Date(Date.now() - conf.rewindSeconds * 1000).toISOString();
    const hls = new Hls({ backBufferLength: 60 });
    state.hls = hls;
    hls.on(Hls.Events.ERROR, (_, d) => {
      note('rewind ' + (d.fatal ? 'fatal ' : '') + d.type + ' ' + d.details);
      if (d.fatal && d.type === Hls.ErrorTypes.MEDIA_ERROR) hls.recoverMediaError();
      else if (d.fatal) setStatus('rewind: ' + d.details, true);
    });
    video.addEventListener('canplay', () => {
      if (state.hls !== hls) return;
      jumpBack(120);
      video.play().catch(() => {});
      setStatus('rewound: seek with the controls, or go back to live');
    }, { once: true });
    hls.loadSource(conf.rewind + '&from=' + encodeURIComponent(from));
    hls.attachMedia(video);
  }

  backBtn.addEventListener('click', () => {
    if (state.rewinding && state.hls && video.seekable.length) jumpBack(120);
    else startRewind();
  });
  liveBtn.addEventListener('click', () => {
    state.rewinding = false;
    liveBtn.hidden = true;
    start();
  });
  if (conf.rewind) rewindEl.hidden = false;

  // The path's recordings: the newest spans, each a download link.
  async function listRecordings() {
    const box = document.getElementById('recordings');
    const ul = document.getElementById('recordings-list');
    try {
      const r = await fetch(conf.recordings);
      if (!r.ok) return;
      const j = await r.json();
      const items = j.spans.slice(-20).reverse().map((sp) => {
        const li = document.createElement('li');
        const a = document.createElement('a');
        a.href = sp.url;
        a.textContent = new Date(sp.start).toLocaleString() + ' · ' + Math.round(sp.duration) + ' s';
        li.append(a);
        return li;
      });
      ul.replaceChildren(...items);
      box.hidden = items.length === 0;
    } catch (e) {
      note('recordings: ' + e.message);
    }
  }
  if (conf.recordings) {
    listRecordings();
    setInterval(listRecordings, 30000);
  }

  start();
})();

// watch.js plays the stream of the watch page: LL-HLS with hls.js or
// HTTP-FLV with mpegts.js (the libraries come from this server, loaded when
// a mode needs them), with a rendition picker and a latency readout. The
// page's settings are JSON in #watch-conf (web/pages.go watchConf). Mode
// and rung are in the query string (?mode=flv&rung=240p), kept current so
// a link or a reload plays the same.
(() => {
  'use strict';
  const conf = JSON.parse(document.getElementById('watch-conf').textContent);
  const video = document.getElementById('video');
  const modeSel = document.getElementById('mode');
  const rendSel = document.getElementById('rendition');
  const latencyEl = document.getElementById('latency');
  const resolutionEl = document.getElementById('resolution');
  const statusEl = document.getElementById('status');

  // state is also window.streamhub, for the console and the tests.
  // events keeps the player's last notable events (errors, level
  // switches), newest last.
  const state = { mode: conf.mode, rung: conf.rung, hls: null, flv: null, gen: 0, events: [] };
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

  async function start() {
    const gen = ++state.gen;
    stop();
    updateURL();
    modeSel.value = state.mode;
    setStatus('loading…');
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
    const hls = new Hls({ lowLatencyMode: true, backBufferLength: 30 });
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

  function startFLV(gen) {
    const opts = [option('', 'source')];
    const rungs = conf.rungs.slice();
    if (state.rung && !rungs.includes(state.rung)) rungs.push(state.rung); // picked in HLS mode
    for (const r of rungs) opts.push(option(r, r));
    rendSel.replaceChildren(...opts);
    rendSel.value = state.rung;
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
    state.mode = modeSel.value === 'flv' ? 'flv' : 'hls';
    start();
  });

  rendSel.addEventListener('change', () => {
    if (state.mode === 'flv') {
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
  // buffered ahead of the playhead.
  setInterval(() => {
    let latency = NaN;
    if (state.hls && Number.isFinite(state.hls.latency)) {
      latency = state.hls.latency;
    } else if (state.flv && video.buffered.length > 0) {
      latency = video.buffered.end(video.buffered.length - 1) - video.currentTime;
    }
    latencyEl.textContent = Number.isFinite(latency) && latency >= 0 ? 'latency ' + latency.toFixed(2) + ' s' : 'latency –';
    resolutionEl.textContent = video.videoWidth ? video.videoWidth + '×' + video.videoHeight : '';
  }, 500);

  start();
})();

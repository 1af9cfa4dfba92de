// web.mjs drives streamhub's own web pages (web/) in headless Chromium:
// the home page, the watch page in HLS and in HTTP-FLV mode (its default
// mode, WebRTC, has its own test: watchrtc.mjs) with the
// rendition picker, the chat between two pages, and the broadcast page
// against a stream API faked by Playwright's request routing.
//
//	node web.mjs BASE_URL [--path live/test] [--rung 240p] [--timeout SECONDS]
//
// BASE_URL is the server's HTTP address (http://127.0.0.1:PORT). The
// script opens the home page first and prints
//
//	{"event":"home"}
//
// so that a test can start publishing only then (the list must pick the
// stream up by itself). It then waits up to 30 s for --path to be listed,
// plays it (frames counted with getVideoPlaybackQuality, video.currentTime)
// in HLS mode, picks the --rung level, plays ?mode=flv&rung=RUNG and
// switches to the source with the picker, has two pages chat (one message
// is `<script>window.__pwned=1</script>`), checks that the home page
// leaves the ladder rungs out, and fills the broadcast form three times
// (success, an API error, a javascript: watch link). The result is the
// last line on stdout:
//
//	{"ok":true,"home":{..},"hls":{..},"flv":{..},"chat":{..},"broadcast":{..},
//	 "errors":[..],"console":[..]}
//
// ok says that every step ran to its end; the test judges the figures.
// errors holds page errors and step failures; console the browser's
// console errors and warnings (a Content-Security-Policy violation is
// one). The exit status is 0 when ok, 1 when a step failed, 2 on a setup
// failure or when the overall --timeout (default 150 s) ran out. The
// browser and its profile directory are always cleaned up (lib.mjs).

import { session, errorLine, fatal, sleep } from './lib.mjs';

function parseArgs(argv) {
  const o = { base: '', path: 'live/test', rung: '240p', timeout: 150 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--path') o.path = argv[++i];
    else if (a === '--rung') o.rung = argv[++i];
    else if (a === '--timeout') o.timeout = Number(argv[++i]);
    else if (!a.startsWith('--') && !o.base) o.base = a.replace(/\/+$/, '');
    else throw new Error(`unknown argument ${a}`);
  }
  if (!o.base) throw new Error('usage: node web.mjs BASE_URL [--path P] [--rung R] [--timeout SECONDS]');
  return o;
}

// waitFor polls fn (in Node) until it returns a truthy value or ms passed;
// it returns the last value.
async function waitFor(fn, ms, every = 200) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v || Date.now() >= end) return v;
    await sleep(every);
  }
}

// videoState is what a watch page's <video> shows.
const videoState = (pg) =>
  pg.evaluate(() => {
    const v = document.getElementById('video');
    const q = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : { totalVideoFrames: 0 };
    return {
      frames: q.totalVideoFrames,
      ct: v.currentTime,
      paused: v.paused,
      w: v.videoWidth,
      h: v.videoHeight,
      latency: document.getElementById('latency').textContent,
      status: document.getElementById('status').textContent,
      search: location.search,
    };
  });

// playing waits until the video plays (up to ms), then samples it for
// sampleMs and returns the first and last samples.
async function playing(pg, ms, sampleMs) {
  const t0 = Date.now();
  const first = await waitFor(async () => {
    const s = await videoState(pg);
    return !s.paused && s.frames > 0 && s.ct > 0 ? s : null;
  }, ms);
  if (!first) return { started: false, startupMs: Date.now() - t0, first: await videoState(pg), last: null };
  const startupMs = Date.now() - t0;
  await sleep(sampleMs);
  return { started: true, startupMs, first, last: await videoState(pg) };
}

// waitHeight waits until the video shows pictures of height h, then
// checks that frames still advance over 2 s.
async function waitHeight(pg, h, ms) {
  const at = await waitFor(async () => {
    const s = await videoState(pg);
    return s.h === h ? s : null;
  }, ms);
  if (!at) return { reached: false, last: await videoState(pg) };
  await sleep(2000);
  return { reached: true, first: at, last: await videoState(pg) };
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const base = opts.base;
  const res = { ok: false, base, home: {}, hls: {}, flv: {}, chat: {}, broadcast: {}, homeAfter: {}, errors: [], console: [] };
  const run = session(res, { timeoutMs: opts.timeout * 1000, timeoutError: `timeout: no result within ${opts.timeout}s` });
  const watchPath = '/watch/' + opts.path;

  const watchConsole = (pg, name) => {
    pg.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') res.console.push(`${name} ${m.type()}: ${m.text()}`.slice(0, 300));
    });
  };

  try {
    const pg = await run.launch('streamhub-e2e-web-');
    watchConsole(pg, 'A');

    // 1. The home page lists the stream once it goes live, by itself.
    await pg.goto(base + '/', { timeout: 10000 });
    res.home.emptyShown = await pg.isVisible('#empty');
    process.stdout.write(JSON.stringify({ event: 'home', t: Date.now() }) + '\n');
    const t0 = Date.now();
    const item = `#streams li[data-path="${opts.path}"]`;
    res.home.listed = !!(await waitFor(() => pg.$(item), 30000, 250));
    res.home.listedAfterMs = Date.now() - t0;
    if (!res.home.listed) throw new Error(`step home: ${opts.path} not listed within 30 s`);
    res.home.href = await pg.getAttribute(item + ' a', 'href');
    res.home.text = await pg.textContent(item);
    res.home.emptyShownAfter = await pg.isVisible('#empty');

    // 2. The watch page opens in the mode the server picked (WebRTC for
    // an H.264 stream when the server has it); LL-HLS from the picker
    // plays; the picker switches to the rung.
    await pg.click(item + ' a');
    await pg.waitForURL('**' + watchPath + '**', { timeout: 10000 });
    res.hls.defaultMode = await pg.evaluate(() => JSON.parse(document.getElementById('watch-conf').textContent).mode);
    if (res.hls.defaultMode !== 'hls') await pg.selectOption('#mode', 'hls');
    res.hls.play = await playing(pg, 25000, 3000);
    if (!res.hls.play.started) throw new Error('step hls: the video did not play within 25 s');
    res.hls.hlsLatency = await pg.evaluate(() => (window.streamhub.hls ? window.streamhub.hls.latency : null));
    res.hls.options = await pg.$$eval('#rendition option', (os) => os.map((o) => ({ value: o.value, text: o.textContent })));
    const level = res.hls.options.find((o) => o.text.startsWith(opts.rung + ' '));
    if (level) {
      await pg.selectOption('#rendition', level.value);
      res.hls.switch = await waitHeight(pg, Number.parseInt(opts.rung, 10), 20000);
    }
    res.hls.events = await pg.evaluate(() => window.streamhub.events.slice());

    // 3. HTTP-FLV from the query string: the rung, then the source by the picker.
    await pg.goto(`${base}${watchPath}?mode=flv&rung=${encodeURIComponent(opts.rung)}`, { timeout: 10000 });
    res.flv.rung = await playing(pg, 25000, 3000);
    if (!res.flv.rung.started) throw new Error('step flv: the rung did not play within 25 s');
    res.flv.mode = await pg.inputValue('#mode');
    res.flv.options = await pg.$$eval('#rendition option', (os) => os.map((o) => o.value));
    await pg.selectOption('#rendition', '');
    const srcHeight = await waitFor(async () => {
      const s = await videoState(pg);
      return s.h > 0 && s.h !== res.flv.rung.last.h && s.frames > 0 ? s : null;
    }, 20000);
    if (srcHeight) {
      await sleep(2000);
      res.flv.source = { reached: true, first: srcHeight, last: await videoState(pg) };
    } else {
      res.flv.source = { reached: false, last: await videoState(pg) };
    }

    // 4. Two pages chat; a message with a script tag stays text.
    const pgB = await pg.context().newPage();
    watchConsole(pgB, 'B');
    pgB.on('pageerror', (e) => res.errors.push(`pageerror B: ${e.message}`));
    await pgB.goto(`${base}${watchPath}?mode=flv`, { timeout: 10000 });
    const connected = (p) => waitFor(() => p.evaluate(() => document.getElementById('chat-status').textContent.startsWith('connected')), 10000);
    res.chat.connected = [await connected(pg), await connected(pgB)];
    const sendAs = async (p, name, text) => {
      await p.fill('#chat-name', name);
      await p.fill('#chat-text', text);
      await p.click('#chat-send');
    };
    const logHas = (p, text) => waitFor(() => p.evaluate((t) => document.getElementById('chat-log').textContent.includes(t), text), 10000);
    await sendAs(pg, 'alice', 'hello from alice');
    res.chat.bGotA = await logHas(pgB, 'hello from alice');
    const evil = '<script>window.__pwned=1</script>';
    await sendAs(pgB, 'bob', evil);
    res.chat.aGotEvil = await logHas(pg, evil);
    for (const [name, p] of [['a', pg], ['b', pgB]]) {
      res.chat[name] = await p.evaluate(() => {
        const log = document.getElementById('chat-log');
        return {
          lines: [...log.children].map((li) => li.textContent),
          names: [...log.querySelectorAll('.name')].map((n) => n.textContent),
          scripts: log.querySelectorAll('script').length,
          pwned: typeof window.__pwned,
        };
      });
    }
    await pgB.close();

    // 5. The home page leaves the ladder rungs out.
    await pg.goto(base + '/', { timeout: 10000 });
    await sleep(3500); // one refresh from /streams.json
    res.homeAfter.paths = await pg.$$eval('#streams li', (ls) => ls.map((l) => l.dataset.path));
    res.homeAfter.text = await pg.textContent('#streams');

    // 6. The broadcast page against a faked API.
    const answers = [
      { status: 201, body: {
        id: 'pub123', name: 'my show', key: 'sk_secret', path: 'live/sk_secret',
        publish: { rtmpServer: 'rtmp://h/live', rtmpKey: 'sk_secret', rtmpURL: 'rtmp://h/live/sk_secret', srt: 'srt://h:8890?streamid=publish:live/sk_secret', rtsp: 'rtsp://h:8554/live/sk_secret' },
        play: { flv: 'http://h/live/pub123.flv', hls: 'http://h/live/pub123/index.m3u8', rtsp: '', rtmp: '', srt: '', watch: 'http://h:8080/watch/live/pub123' } } },
      { status: 401, body: { error: 'admin token required (api.adminToken)' } },
      { status: 201, body: { publish: { rtmpServer: '<b>x</b>' }, play: { watch: 'javascript:window.__pwned=2' } } },
    ];
    const requests = [];
    await pg.route(base + '/api/v1/streams', async (route) => {
      const r = route.request();
      requests.push({ method: r.method(), auth: (await r.allHeaders()).authorization || '', body: r.postData() });
      const a = answers[Math.min(requests.length - 1, answers.length - 1)];
      await route.fulfill({ status: a.status, contentType: 'application/json', body: JSON.stringify(a.body) });
    });
    await pg.goto(base + '/broadcast', { timeout: 10000 });
    // What the broadcast page shows after a submit.
    const readBroadcast = () =>
      pg.evaluate(() => ({
        resultShown: !document.getElementById('result').hidden,
        error: document.getElementById('error').hidden ? '' : document.getElementById('error').textContent,
        server: document.getElementById('obs-server').value,
        key: document.getElementById('obs-key').value,
        rtmpURL: document.getElementById('rtmp-url').value,
        srt: document.getElementById('srt-url').value,
        watchHref: document.getElementById('watch-link').getAttribute('href'),
        watchText: document.getElementById('watch-link').textContent,
        pwned: typeof window.__pwned,
      }));
    const submit = async (name, token) => {
      await pg.fill('#name', name);
      await pg.fill('#token', token);
      const n = requests.length;
      await pg.click('#create-button');
      await waitFor(() => requests.length > n, 5000, 50);
      await waitFor(() => pg.evaluate(() => !document.getElementById('result').hidden || !document.getElementById('error').hidden), 5000, 50);
      return readBroadcast();
    };
    res.broadcast.created = await submit('my show', 'admin-secret');
    res.broadcast.refused = await submit('my show', '');
    res.broadcast.badLink = await submit('x', '');
    if (res.broadcast.badLink.watchHref === null) {
      // Clicking a link without href does nothing; clicking it must not run script.
      await pg.click('#watch-link');
    }
    res.broadcast.pwnedAfterClick = await pg.evaluate(() => typeof window.__pwned);
    res.broadcast.requests = requests;

    // 7. The broadcast page against the server's real API (from this
    // machine, so no admin token): the test then publishes with the key.
    await pg.unroute(base + '/api/v1/streams');
    await pg.goto(base + '/broadcast', { timeout: 10000 });
    await pg.fill('#name', 'real show');
    await pg.fill('#token', '');
    await pg.click('#create-button');
    await waitFor(() => pg.evaluate(() => !document.getElementById('result').hidden || !document.getElementById('error').hidden), 5000, 50);
    res.broadcast.real = await readBroadcast();

    res.ok = true;
    await run.finish(0);
  } catch (e) {
    res.errors.push(errorLine(e));
    await run.finish(res.errors.some((x) => x.startsWith('step ')) ? 1 : 2);
  }
}

main().catch(fatal({ ok: false }));

// broadcast.js creates a stream through the API (POST /api/v1/streams,
// with the admin token as a Bearer token when one is given) and shows what
// OBS needs; the stream just created is also handed to golive.js (the
// `streamhub:created` event on document). Whatever the API returns is
// put on the page as text or as an http(s) link only.
(() => {
  'use strict';
  const form = document.getElementById('create');
  const api = form.dataset.api;
  const nameIn = document.getElementById('name');
  const tokenIn = document.getElementById('token');
  const button = document.getElementById('create-button');
  const errorEl = document.getElementById('error');
  const result = document.getElementById('result');

  function showError(text) {
    errorEl.textContent = text;
    errorEl.hidden = false;
  }

  // httpURL returns url resolved against the page when it is http(s), else ''.
  function httpURL(url) {
    try {
      const u = new URL(String(url), location.href);
      return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : '';
    } catch (e) {
      return '';
    }
  }

  function show(s) {
    const pub = s.publish || {};
    const play = s.play || {};
    document.getElementById('obs-server').value = pub.rtmpServer || '';
    document.getElementById('obs-key').value = pub.rtmpKey || '';
    document.getElementById('rtmp-url').value = pub.rtmpURL || '';
    document.getElementById('srt-url').value = pub.srt || '';
    const link = document.getElementById('watch-link');
    const watch = httpURL(play.watch || '');
    link.textContent = watch || '(none)';
    if (watch) link.href = watch;
    else link.removeAttribute('href');
    result.hidden = false;
    document.dispatchEvent(new CustomEvent('streamhub:created', { detail: s }));
  }

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    errorEl.hidden = true;
    result.hidden = true;
    const headers = { 'Content-Type': 'application/json', Accept: 'application/json' };
    const token = tokenIn.value.trim();
    if (token) headers.Authorization = 'Bearer ' + token;
    button.disabled = true;
    try {
      const res = await fetch(api, { method: 'POST', headers, body: JSON.stringify({ name: nameIn.value.trim() }) });
      let body = null;
      try {
        body = await res.json();
      } catch (e) {
        // not JSON: the status says what happened
      }
      if (!res.ok) {
        const why = body && typeof body.error === 'string' ? body.error : res.statusText || 'no reason given';
        showError('Could not create the stream (HTTP ' + res.status + '): ' + why);
        return;
      }
      show(body || {});
    } catch (e) {
      showError('Could not reach the server: ' + e.message);
    } finally {
      button.disabled = false;
    }
  });

  result.addEventListener('click', async (ev) => {
    const id = ev.target.dataset && ev.target.dataset.copy;
    if (!id) return;
    const input = document.getElementById(id);
    try {
      await navigator.clipboard.writeText(input.value);
      ev.target.textContent = 'Copied';
    } catch (e) {
      input.select(); // no clipboard access (plain http): select it for Ctrl+C
    }
  });
})();

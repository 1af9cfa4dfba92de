// home.js keeps the list of live streams current: it fetches
// /streams.json every few seconds and rebuilds the list. Stream paths
// only ever reach the page as text (textContent), never as HTML.
(() => {
  'use strict';
  const list = document.getElementById('streams');
  const empty = document.getElementById('empty');
  const every = 3000;

  function item(s) {
    const li = document.createElement('li');
    li.dataset.path = s.path;
    const a = document.createElement('a');
    a.href = s.watch;
    a.textContent = s.path;
    const meta = document.createElement('span');
    meta.className = 'meta';
    const parts = [];
    if (!s.live) parts.push('waiting for the publisher');
    if (s.width > 0 && s.height > 0) parts.push(s.width + '×' + s.height);
    parts.push(s.viewers + ' watching');
    meta.textContent = parts.join(' · ');
    li.append(a, ' ', meta);
    return li;
  }

  async function refresh() {
    try {
      const res = await fetch('/streams.json', { cache: 'no-store' });
      if (res.ok) {
        const { streams } = await res.json();
        list.replaceChildren(...streams.map(item));
        empty.hidden = streams.length > 0;
      }
    } catch (e) {
      // The server restarts or the network is down: keep the last list.
    }
    setTimeout(refresh, document.hidden ? every * 4 : every);
  }
  setTimeout(refresh, every);
})();

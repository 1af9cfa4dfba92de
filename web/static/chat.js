// chat.js is the chat of the watch page: one WebSocket to /chat/<path>
// (frames described in web/message.go), reconnecting with backoff. Names
// and messages are put on the page with textContent only: whatever people
// type is shown as text, never parsed as HTML.
(() => {
  'use strict';
  const conf = JSON.parse(document.getElementById('watch-conf').textContent);
  const log = document.getElementById('chat-log');
  const form = document.getElementById('chat-form');
  const nameIn = document.getElementById('chat-name');
  const textIn = document.getElementById('chat-text');
  const statusEl = document.getElementById('chat-status');
  const maxLines = 300;
  const nameKey = 'streamhub.chat.name';

  let ws = null;
  let sentName = ''; // the name sent on this connection
  let backoff = 1000;

  try {
    nameIn.value = localStorage.getItem(nameKey) || '';
  } catch (e) {
    // no storage (private mode): the name is asked every time
  }

  function clock(ms) {
    const d = new Date(ms);
    return String(d.getHours()).padStart(2, '0') + ':' + String(d.getMinutes()).padStart(2, '0');
  }

  // line appends one entry; kind is "msg", "error" or "system".
  function line(kind, text, name, time) {
    const li = document.createElement('li');
    li.className = kind;
    if (time) {
      const t = document.createElement('time');
      t.dateTime = new Date(time).toISOString();
      t.textContent = clock(time);
      li.append(t);
    }
    if (name) {
      const b = document.createElement('b');
      b.className = 'name';
      b.textContent = name;
      li.append(b);
    }
    const s = document.createElement('span');
    s.className = 'text';
    s.textContent = text;
    li.append(s);
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 20;
    log.append(li);
    while (log.children.length > maxLines) log.firstElementChild.remove();
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  function send(obj) {
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      line('error', 'not connected to the chat; trying again…');
      return false;
    }
    ws.send(JSON.stringify(obj));
    return true;
  }

  function sendName() {
    const name = nameIn.value.trim();
    if (name && name !== sentName && send({ type: 'name', name })) sentName = name;
  }

  function connect() {
    const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + conf.chat;
    ws = new WebSocket(url);
    sentName = '';
    ws.addEventListener('open', () => {
      backoff = 1000;
      statusEl.textContent = 'connected';
      sendName();
    });
    ws.addEventListener('message', (ev) => {
      let m;
      try {
        m = JSON.parse(ev.data);
      } catch (e) {
        return;
      }
      switch (m.type) {
        case 'history':
          log.replaceChildren();
          for (const h of m.messages || []) line('msg', h.text, h.name, h.time);
          break;
        case 'msg':
          line('msg', m.text, m.name, m.time);
          break;
        case 'name':
          statusEl.textContent = 'connected as ' + m.name;
          break;
        case 'error':
          line('error', m.error);
          break;
      }
    });
    ws.addEventListener('close', (ev) => {
      statusEl.textContent = 'disconnected' + (ev.reason ? ' (' + ev.reason + ')' : '') + '; reconnecting in ' + backoff / 1000 + ' s';
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 30000);
    });
  }

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const name = nameIn.value.trim();
    if (!name) {
      line('error', 'choose a name first');
      nameIn.focus();
      return;
    }
    try {
      localStorage.setItem(nameKey, name);
    } catch (e) {
      // no storage
    }
    sendName();
    const text = textIn.value;
    if (!text.trim()) return;
    if (send({ type: 'say', text })) textIn.value = '';
    textIn.focus();
  });
  nameIn.addEventListener('change', sendName);

  connect();
})();

// chat.js is the chat of the watch and broadcast pages: one WebSocket to
// /chat/<path> (frames described in web/message.go), reconnecting with
// backoff. The room is the "chat" URL of the page's JSON settings
// (#watch-conf or #broadcast-conf); when that is "", the chat waits for a
// `streamhub:chat` event on document whose detail is the room's URL path
// (the broadcast page sends it once it is live). Names and messages are
// put on the page with textContent only: whatever people type is shown as
// text, never parsed as HTML.
(() => {
  'use strict';
  const confEl = document.getElementById('watch-conf') || document.getElementById('broadcast-conf');
  const conf = JSON.parse(confEl.textContent);
  const log = document.getElementById('chat-log');
  const form = document.getElementById('chat-form');
  const nameIn = document.getElementById('chat-name');
  const textIn = document.getElementById('chat-text');
  const statusEl = document.getElementById('chat-status');
  const maxLines = 300;
  const nameKey = 'streamhub.chat.name';

  let ws = null;
  let room = conf.chat || ''; // the room's URL path, '' for none yet
  let gen = 0; // counts the rooms joined: a closed socket of an old one does not reconnect
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
    const my = gen;
    const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + room;
    ws = new WebSocket(url);
    sentName = '';
    ws.addEventListener('open', () => {
      if (my !== gen) return;
      backoff = 1000;
      statusEl.textContent = 'connected';
      sendName();
    });
    ws.addEventListener('message', (ev) => {
      if (my !== gen) return;
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
      if (my !== gen) return; // left for another room
      statusEl.textContent = 'disconnected' + (ev.reason ? ' (' + ev.reason + ')' : '') + '; reconnecting in ' + backoff / 1000 + ' s';
      setTimeout(() => {
        if (my === gen) connect();
      }, backoff);
      backoff = Math.min(backoff * 2, 30000);
    });
  }

  // join leaves the current room, if any, and enters path's ('' leaves).
  function join(path) {
    if (path === room && ws) return;
    gen++;
    if (ws) ws.close();
    ws = null;
    room = path;
    backoff = 1000;
    log.replaceChildren();
    statusEl.textContent = room ? '' : 'the chat opens when you are live';
    if (room) connect();
  }
  document.addEventListener('streamhub:chat', (ev) => join(typeof ev.detail === 'string' ? ev.detail : ''));

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

  if (room) connect();
  else statusEl.textContent = 'the chat opens when you are live';
})();

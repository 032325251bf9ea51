// The airlock web console: reviews and sessions over the REST API. Every value from the API is
// rendered with textContent (never as HTML); the token lives in sessionStorage only.
'use strict';

const KEY = 'airlock-token';
const $ = (sel) => document.querySelector(sel);

function token() {
  return sessionStorage.getItem(KEY);
}

function show(sel, on) {
  $(sel).hidden = !on;
}

function say(text) {
  $('#message').textContent = text;
  show('#message', Boolean(text));
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { authorization: `Bearer ${token()}`, ...(options.headers || {}) },
  });
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = null;
  }
  if (!response.ok) {
    const message = (body && body.message) || `${response.status} ${response.statusText}`;
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return body;
}

function time(us) {
  if (us === null || us === undefined) return '';
  return new Date(us / 1000).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

function cell(row, text) {
  const td = document.createElement('td');
  td.textContent = text === null || text === undefined ? '' : String(text);
  row.appendChild(td);
  return td;
}

async function vote(id, verb) {
  say('');
  try {
    await api(`/api/v1/reviews/${encodeURIComponent(id)}/${verb}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
  } catch (e) {
    say(`Could not ${verb} ${id}: ${e.message}`);
  }
  await loadReviews();
}

async function loadReviews() {
  const reviews = await api('/api/v1/reviews?state=pending');
  const body = $('#reviews-table tbody');
  body.replaceChildren();
  for (const r of reviews) {
    const row = document.createElement('tr');
    row.dataset.review = r.id;
    cell(row, r.id);
    cell(row, r.kind);
    cell(row, r.requester);
    cell(row, r.connection);
    cell(row, r.statement || r.reason || '').className = 'statement';
    cell(row, r.rule || '');
    cell(row, time(r.expires_us));
    const actions = cell(row, '');
    for (const verb of ['approve', 'deny']) {
      const b = document.createElement('button');
      b.type = 'button';
      b.textContent = verb === 'approve' ? 'Approve' : 'Deny';
      b.className = verb;
      b.addEventListener('click', () => vote(r.id, verb));
      actions.appendChild(b);
    }
    body.appendChild(row);
  }
  show('#reviews-table', reviews.length > 0);
  show('#reviews-empty', reviews.length === 0);
}

async function loadSessions() {
  const sessions = await api('/api/v1/sessions?limit=50');
  const body = $('#sessions-table tbody');
  body.replaceChildren();
  for (const s of sessions) {
    const row = document.createElement('tr');
    cell(row, s.id);
    cell(row, s.identity);
    cell(row, s.connection);
    cell(row, time(s.started_us));
    cell(row, time(s.ended_us));
    cell(row, s.statements);
    cell(row, s.denied);
    body.appendChild(row);
  }
  show('#sessions-table', sessions.length > 0);
  show('#sessions-empty', sessions.length === 0);
}

function loggedOut(message) {
  sessionStorage.removeItem(KEY);
  show('#who', false);
  show('#logout', false);
  show('#reviews', false);
  show('#sessions', false);
  show('#login', true);
  say(message || '');
}

async function start() {
  // The login redirect hands the token over in the fragment; keep it out of the history.
  if (location.hash.startsWith('#token=')) {
    sessionStorage.setItem(KEY, decodeURIComponent(location.hash.slice('#token='.length)));
    history.replaceState(null, '', location.pathname);
  }
  if (!token()) {
    loggedOut();
    return;
  }
  let me;
  try {
    me = await api('/api/v1/whoami');
  } catch (e) {
    loggedOut(e.status === 401 ? 'Your token is not valid (expired or revoked); log in again.' : e.message);
    return;
  }
  $('#who').textContent = `${me.name} (${(me.groups || []).join(', ') || 'no groups'})`;
  show('#who', true);
  show('#logout', true);
  show('#login', false);
  show('#reviews', true);
  show('#sessions', true);
  await Promise.all([
    loadReviews().catch((e) => say(`Reviews: ${e.message}`)),
    loadSessions().catch((e) => say(`Sessions: ${e.message}`)),
  ]);
}

$('#token-form').addEventListener('submit', (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY, $('#token-input').value.trim());
  $('#token-input').value = '';
  start();
});

$('#logout').addEventListener('click', async () => {
  if ((token() || '').startsWith('alk_at_')) {
    // Revokes the access token at the gateway; other token kinds are only forgotten here.
    await api('/api/v1/auth/logout', { method: 'POST' }).catch(() => {});
  }
  loggedOut('Logged out.');
});

start();

// The chat page: one conversation at a time, watched over graphql-ws; answers
// stream in as sanitized Markdown, agent runs as their reasoning, tool calls
// and approvals, and both survive reloads and dropped connections by
// resuming after the last cursor.
import { Api } from './api.js';
import { describe } from './errors.js';
import { renderMarkdown } from './markdown.js';
import { ANSWERING, appendText, applyEvent, carryAnswering, isAgentEvent, partsFromSteps, partsFromText } from './run.js';
import { renderRun } from './runview.js';
import { newId, store, validSessionId } from './store.js';

const $ = (id) => document.getElementById(id);
const ui = {
  app: $('app'), sidebar: $('sidebar'), scrim: $('scrim'), menu: $('menu'),
  sessions: $('sessions'), newChat: $('new-chat'), changeKey: $('change-key'),
  conn: $('conn'), model: $('model'), locale: $('locale'),
  auth: $('auth'), authPrompt: $('auth-prompt'), authError: $('auth-error'), apiKey: $('api-key'),
  messages: $('messages'), empty: $('empty'), notice: $('notice'),
  composer: $('composer'), input: $('input'), send: $('send'), stop: $('stop'),
};

const LOCALES = [
  ['en', 'English'], ['fr', 'Français'], ['de', 'Deutsch'], ['es', 'Español'],
  ['it', 'Italiano'], ['pt', 'Português'], ['ja', '日本語'],
];

const state = {
  sessionId: '',
  // {requestId, role, text, parts, status, model, usage, error, lastIndex, settled, askedAt, startAt, firstAt, endAt};
  // parts: an agent answer's reasoning, text, tool calls, steps and sources
  // in order (run.js), null for a plain answer;
  // settled: the server said the answer had ended before this page saw any
  // of its events, so its stored text is whole and replayed events add nothing.
  turns: [],
  cursor: null,
  dispose: null, // stops the current watch
  retry: 0,
  retryTimer: 0,
  socket: 'connecting', // connecting | connected | reconnecting | refused
  everConnected: false,
  authRefused: false,
  ready: false,
};

const api = new Api({
  credential: () => store.credential(),
  onSocket: (what) => {
    if (what === 'connecting') state.socket = state.everConnected ? 'reconnecting' : 'connecting';
    if (what === 'connected') {
      state.socket = 'connected';
      state.everConnected = true;
    }
    showConn();
  },
});

// ---- connection state ------------------------------------------------------

function streamingTurn() {
  return state.turns.find((t) => t.role === 'assistant' && t.status === 'IN_PROGRESS');
}

function waitsForApproval(t) {
  return !!(t && t.parts && t.parts.some((p) => p.kind === 'tool' && !p.result && p.approval && p.approval.pending));
}

function showConn() {
  let s = state.socket;
  if (state.authRefused) s = 'refused';
  else if (s === 'connected' && streamingTurn()) s = waitsForApproval(streamingTurn()) ? 'approval' : 'streaming';
  const label = {
    connecting: 'Connecting…', connected: 'Connected', streaming: 'Streaming…', approval: 'Waiting for approval',
    reconnecting: 'Reconnecting…', refused: 'API key refused',
  }[s];
  ui.conn.dataset.state = s;
  ui.conn.textContent = label;
  const busy = !!streamingTurn();
  ui.stop.hidden = !busy;
  ui.send.hidden = busy;
}

function notice(text) {
  ui.notice.textContent = text || '';
  ui.notice.hidden = !text;
}

// ---- authentication ----------------------------------------------------------

function showAuth(refused) {
  state.authRefused = refused;
  ui.auth.hidden = false;
  ui.changeKey.hidden = false;
  const credential = store.credential();
  const what = /^bearer\s+/i.test(credential || '') ? 'token' : 'key';
  ui.authError.textContent = refused && credential
    ? `The server refused this ${what}. Check it and try again.`
    : '';
  ui.apiKey.value = '';
  ui.apiKey.focus();
  showConn();
}

ui.auth.addEventListener('submit', (e) => {
  e.preventDefault();
  store.saveCredential(ui.apiKey.value.trim());
  state.authRefused = false;
  ui.auth.hidden = true;
  ui.authError.textContent = '';
  api.resetSocket();
  state.everConnected = false;
  state.socket = 'connecting';
  boot();
});

ui.changeKey.addEventListener('click', () => showAuth(false));

/** Handles an error from any call; returns true when it was about the key. */
function authFailed(err) {
  if (err && err.code === 'UNAUTHENTICATED') {
    stopWatch();
    showAuth(true);
    return true;
  }
  return false;
}

// ---- sessions sidebar --------------------------------------------------------

function rememberSession(title) {
  const list = store.sessions().filter((s) => s.id !== state.sessionId);
  const old = store.sessions().find((s) => s.id === state.sessionId);
  list.unshift({ id: state.sessionId, title: (old && old.title) || title.slice(0, 80), updated: Date.now() });
  store.saveSessions(list);
  renderSessions();
}

function renderSessions() {
  ui.sessions.replaceChildren(...store.sessions().map((s) => {
    const li = document.createElement('li');
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'session' + (s.id === state.sessionId ? ' current' : '');
    b.textContent = s.title || s.id;
    b.title = s.id;
    b.dataset.sessionId = s.id;
    b.addEventListener('click', () => {
      closeSidebar();
      if (s.id !== state.sessionId) openSession(s.id);
    });
    li.append(b);
    return li;
  }));
}

function openSidebar() { ui.app.classList.add('sidebar-open'); ui.scrim.hidden = false; }
function closeSidebar() { ui.app.classList.remove('sidebar-open'); ui.scrim.hidden = true; }
ui.menu.addEventListener('click', () => (ui.app.classList.contains('sidebar-open') ? closeSidebar() : openSidebar()));
ui.scrim.addEventListener('click', closeSidebar);
ui.newChat.addEventListener('click', () => { closeSidebar(); openSession(newId('c-')); ui.input.focus(); });

// ---- turns -------------------------------------------------------------------

function fromServer(t) {
  return {
    requestId: t.requestId, role: t.role === 'USER' ? 'user' : 'assistant', text: t.text,
    parts: t.role === 'USER' ? null : partsFromSteps(t.steps),
    status: t.status, model: t.model, usage: t.usage, lastIndex: -1, settled: t.status !== 'IN_PROGRESS',
  };
}

function findTurn(requestId, role) {
  return state.turns.find((t) => t.requestId === requestId && t.role === role);
}

/** Puts the server's view of the conversation under what was streamed here. */
function mergeConversation(serverTurns) {
  const key = (t) => t.role + ':' + t.requestId;
  const local = new Map(state.turns.map((t) => [key(t), t]));
  const out = [];
  for (const s of serverTurns.map(fromServer)) {
    const l = local.get(key(s));
    local.delete(key(s));
    if (!l) { out.push(s); continue; }
    if (l.role === 'assistant') {
      if (s.status !== 'IN_PROGRESS' && l.status === 'IN_PROGRESS') {
        // The stored run is whole; what streamed here may have missed its end.
        if (s.parts) carryAnswering(l.parts, s.parts);
        const parts = s.parts || (l.lastIndex < 0 ? null : l.parts);
        Object.assign(l, { text: s.text, parts, status: s.status, usage: s.usage || l.usage, model: s.model || l.model, settled: l.lastIndex < 0 });
      } else if (l.status === 'IN_PROGRESS' && l.lastIndex < 0 && s.text.length > l.text.length) {
        l.text = s.text;
        l.parts = s.parts;
      } else if (l.status === 'IN_PROGRESS' && l.lastIndex < 0 && s.parts && !l.parts) {
        l.parts = s.parts;
      }
    }
    out.push(l);
  }
  out.push(...local.values());
  state.turns = out;
  const question = out.find((t) => t.role === 'user');
  if (question && !store.sessions().some((x) => x.id === state.sessionId)) rememberSession(question.text);
  for (const t of state.turns) dirty.add(t);
  scheduleRender(true);
}

let refreshing = null;
function refreshConversation() {
  if (refreshing) return refreshing;
  const sid = state.sessionId;
  refreshing = api.conversation(sid).then((conv) => {
    if (sid === state.sessionId && conv) mergeConversation(conv.turns);
  }).catch((err) => {
    if (!authFailed(err)) notice(describe(err.code, err.message, err.retryAfter));
  }).finally(() => { refreshing = null; });
  return refreshing;
}

function saveResume() {
  const live = state.turns
    .filter((t) => t.role === 'assistant' && t.status === 'IN_PROGRESS' && t.lastIndex >= 0)
    .map((t) => ({ requestId: t.requestId, index: t.lastIndex, text: t.text, parts: t.parts || null }));
  store.saveResume(state.sessionId, { cursor: state.cursor, live });
}

function onEvent(ev) {
  state.retry = 0;
  if (ev.cursor) state.cursor = ev.cursor;
  if (ev.type === 'RESYNC') {
    notice(describe('RESYNC'));
    state.cursor = null;
    restartWatch(true);
    return;
  }
  if (!ev.requestId) {
    if (ev.type === 'MESSAGE') {
      state.turns.push({ requestId: newId('m-'), role: 'assistant', text: ev.message, status: 'COMPLETE', lastIndex: -1 });
      dirty.add(state.turns[state.turns.length - 1]);
      scheduleRender(true);
    }
    saveResume();
    return;
  }
  let t = findTurn(ev.requestId, 'assistant');
  if (!t) {
    // An answer asked elsewhere (another tab or device): fetch its question.
    t = { requestId: ev.requestId, role: 'assistant', text: '', status: 'IN_PROGRESS', lastIndex: -1 };
    state.turns.push(t);
    if (!findTurn(ev.requestId, 'user')) refreshConversation();
    scheduleRender(true);
  }
  if (t.settled) {
    // An answer loaded whole from the conversation, replayed to a new
    // subscription (the server's late-join window): showing it again would
    // stream it a second time. Only a RESTART reopens it.
    if (ev.type !== 'RESTART') {
      saveResume();
      return;
    }
    t.settled = false;
  }
  const index = typeof ev.index === 'number' ? ev.index : t.lastIndex + 1;
  if (ev.type !== 'RESTART' && index <= t.lastIndex) return; // seen already
  const now = performance.now();
  switch (ev.type) {
    case 'START':
      Object.assign(t, { text: '', parts: null, status: 'IN_PROGRESS', startAt: now, error: null });
      break;
    case 'DELTA':
      if (!t.firstAt) t.firstAt = now;
      if (t.status !== 'IN_PROGRESS') t.status = 'IN_PROGRESS';
      t.text += ev.message;
      if (t.parts) appendText(t.parts, ev.message);
      break;
    case 'END':
      Object.assign(t, { status: 'COMPLETE', endAt: now, usage: ev.usage, model: ev.model, stopReason: ev.stopReason });
      break;
    case 'ERROR':
      Object.assign(t, { status: 'ERROR', endAt: now, error: ev.error || { code: 'INTERNAL', message: '' } });
      break;
    case 'CANCELLED':
      Object.assign(t, { status: 'CANCELLED', endAt: now });
      break;
    case 'RESTART':
      Object.assign(t, { text: '', parts: null, firstAt: null, status: 'IN_PROGRESS' });
      break;
    default:
      if (isAgentEvent(ev.type)) {
        if (!t.parts) t.parts = partsFromText(t.text);
        if (ev.type === 'REASONING' && !t.firstAt) t.firstAt = now;
        if (t.status !== 'IN_PROGRESS') t.status = 'IN_PROGRESS';
        applyEvent(t.parts, ev);
      }
      break;
  }
  t.lastIndex = index;
  saveResume();
  dirty.add(t);
  scheduleRender(ev.type !== 'DELTA');
  showConn();
}

// ---- watching the session ------------------------------------------------------

function stopWatch() {
  clearTimeout(state.retryTimer);
  if (state.dispose) state.dispose();
  state.dispose = null;
}

function startWatch(after) {
  stopWatch();
  const sid = state.sessionId;
  state.dispose = api.watch(sid, after, (ev) => {
    if (sid === state.sessionId) onEvent(ev);
  }, (err) => {
    if (sid !== state.sessionId) return;
    state.dispose = null;
    onWatchEnd(err);
  });
  if (!after) {
    // Without a cursor the server replays the answer still in flight, or
    // the latest one if it ended less than its late-join window ago: one
    // that ended longer ago is read from the stored conversation.
    setTimeout(() => {
      if (sid === state.sessionId && state.turns.some((t) => t.role === 'assistant' && t.status === 'IN_PROGRESS' && t.lastIndex < 0)) {
        refreshConversation();
      }
    }, 1500);
  }
}

function restartWatch(reload) {
  stopWatch();
  const go = () => startWatch(state.cursor);
  if (reload) refreshConversation().then(go);
  else go();
}

function onWatchEnd(err) {
  if (authFailed(err)) return;
  if (err.code === 'INVALID_CURSOR') {
    notice(describe('INVALID_CURSOR'));
    state.cursor = null;
    restartWatch(true);
    return;
  }
  // A dropped connection shows as the state; anything the server said
  // (TOO_MANY_SUBSCRIPTIONS, SLOW_CONSUMER, …) as its sentence.
  if (err.code !== 'NETWORK') notice(describe(err.code, err.message, err.retryAfter));
  state.socket = 'reconnecting';
  showConn();
  const delay = Math.min(250 * 2 ** state.retry, 5000);
  state.retry++;
  state.retryTimer = setTimeout(() => {
    // A new subscription resumes after the newest cursor: nothing is lost,
    // and indexes already shown are skipped.
    api.resetSocket();
    startWatch(state.cursor);
  }, delay);
}

async function openSession(id) {
  stopWatch();
  notice('');
  state.sessionId = id;
  state.turns = [];
  state.cursor = null;
  for (const el of rendered.values()) el.remove();
  rendered.clear();
  if (location.hash.slice(1) !== id) history.replaceState(null, '', '#' + id);
  renderSessions();
  scheduleRender(true);
  const resume = store.resume(id) || {};
  state.cursor = resume.cursor || null;
  let conv;
  try {
    conv = await api.conversation(id);
  } catch (err) {
    if (!authFailed(err)) notice(describe(err.code, err.message, err.retryAfter));
    return;
  }
  if (id !== state.sessionId) return;
  state.turns = (conv ? conv.turns : []).map(fromServer);
  const firstQuestion = state.turns.find((t) => t.role === 'user');
  if (firstQuestion && !store.sessions().some((s) => s.id === id)) rememberSession(firstQuestion.text);
  // Answers still in flight: continue from what this page had when it was
  // left (same cursor), or replay them from their START.
  let fromStart = !state.cursor;
  for (const t of state.turns) {
    if (t.role !== 'assistant' || t.status !== 'IN_PROGRESS') continue;
    const live = (resume.live || []).find((l) => l.requestId === t.requestId);
    if (live) Object.assign(t, { text: live.text, parts: live.parts || null, lastIndex: live.index });
    else fromStart = true;
  }
  if (fromStart) state.cursor = null;
  for (const t of state.turns) dirty.add(t);
  scheduleRender(true);
  startWatch(state.cursor);
}

// ---- asking ----------------------------------------------------------------------

async function ask(text) {
  const message = text.trim();
  if (!message || streamingTurn()) return;
  notice('');
  const requestId = newId('r-');
  const user = { requestId, role: 'user', text: message, status: 'COMPLETE', lastIndex: -1 };
  const answer = { requestId, role: 'assistant', text: '', status: 'IN_PROGRESS', lastIndex: -1, askedAt: performance.now() };
  state.turns.push(user, answer);
  dirty.add(user).add(answer);
  rememberSession(message);
  scheduleRender(true);
  showConn();
  if (!state.dispose && !state.retryTimer) startWatch(state.cursor);
  try {
    await api.ask({ sessionId: state.sessionId, message, locale: ui.locale.value, model: ui.model.value || null, requestId });
  } catch (err) {
    if (answer.lastIndex < 0) {
      Object.assign(answer, { status: 'ERROR', error: { code: err.code, message: err.message, retryAfter: err.retryAfter } });
      dirty.add(answer);
      scheduleRender(true);
      showConn();
    }
    authFailed(err);
  }
}

ui.composer.addEventListener('submit', (e) => {
  e.preventDefault();
  if (streamingTurn()) return;
  const text = ui.input.value;
  if (!text.trim()) return;
  ui.input.value = '';
  autosize();
  ask(text);
});

ui.input.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    ui.composer.requestSubmit();
  }
});

function autosize() {
  ui.input.style.height = 'auto';
  ui.input.style.height = Math.min(ui.input.scrollHeight, 200) + 'px';
}
ui.input.addEventListener('input', autosize);

ui.stop.addEventListener('click', async () => {
  const t = streamingTurn();
  if (!t) return;
  ui.stop.disabled = true;
  try {
    const res = await api.cancel(state.sessionId, t.requestId);
    // Already ended: the stored conversation says how.
    if (res && !res.cancelled) refreshConversation();
  } catch (err) {
    if (!authFailed(err)) notice(describe(err.code, err.message, err.retryAfter));
  } finally {
    ui.stop.disabled = false;
  }
});

// ---- approvals ------------------------------------------------------------------------

const APPROVAL_FORBIDDEN = 'Only the owner of this conversation can answer its approvals; this key or token is not.';

/**
 * Answers a tool call's approval. The card shows the answer once the run
 * says so (APPROVAL), in this tab and every other one watching.
 */
async function answerApproval(t, part, approve, reason) {
  const answering = part[ANSWERING] || {};
  if (answering.sending || answering.sent) return;
  part[ANSWERING] = { sending: true, approve };
  dirty.add(t);
  scheduleRender(false);
  try {
    await api.answerApproval({ sessionId: state.sessionId, requestId: t.requestId, callId: part.id, approve, reason });
    part[ANSWERING] = { sent: true, approve };
  } catch (err) {
    const code = err.code || 'INTERNAL';
    // These say the question is closed: asking again cannot help.
    const final = code === 'ALREADY_ANSWERED' || code === 'APPROVAL_NOT_PENDING' || code === 'FORBIDDEN';
    const text = code === 'FORBIDDEN' ? APPROVAL_FORBIDDEN : describe(code, err.message, err.retryAfter);
    part[ANSWERING] = { error: `${text} (${code})`, final, approve };
    authFailed(err);
  }
  dirty.add(t);
  scheduleRender(false);
}

function regenerate(t) {
  const q = findTurn(t.requestId, 'user');
  if (q) ask(q.text);
}

// ---- rendering ----------------------------------------------------------------------

const rendered = new Map(); // turn → element
const dirty = new Set();
let frame = 0;
let reorder = false;

function scheduleRender(structure) {
  reorder = reorder || structure;
  if (!frame) frame = requestAnimationFrame(render);
}

function fmtMs(ms) {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

function metrics(t) {
  const parts = [];
  const from = t.askedAt ?? t.startAt;
  if (t.firstAt && from != null) parts.push(`TTFT ${fmtMs(t.firstAt - from)}`);
  if (t.usage && t.firstAt && t.endAt > t.firstAt) {
    parts.push(`${(t.usage.outputTokens / ((t.endAt - t.firstAt) / 1000)).toFixed(1)} tokens/s`);
  }
  if (t.usage) parts.push(`${t.usage.inputTokens} in · ${t.usage.outputTokens} out · ${t.usage.totalTokens} tokens`);
  if (t.model) parts.push(t.model);
  return parts.join(' · ');
}

function statusLine(t) {
  switch (t.status) {
    case 'ERROR': {
      const code = (t.error && t.error.code) || 'ERROR';
      return { text: t.error ? describe(code, t.error.message, t.error.retryAfter) : 'This answer failed.', code: t.error ? code : '' };
    }
    case 'CANCELLED': return { text: 'Stopped.', code: '' };
    case 'INCOMPLETE': return { text: describe('INCOMPLETE'), code: 'INCOMPLETE' };
    default: return null;
  }
}

function turnElement(t) {
  let el = rendered.get(t);
  if (el) return el;
  el = document.createElement('article');
  el.className = 'turn ' + t.role;
  el.dataset.requestId = t.requestId;
  const content = document.createElement('div');
  content.className = 'content' + (t.role === 'assistant' ? ' markdown' : '');
  el.append(content);
  if (t.role === 'assistant') {
    const status = document.createElement('p');
    status.className = 'turn-status';
    status.setAttribute('role', 'alert');
    const meta = document.createElement('div');
    meta.className = 'meta';
    const actions = document.createElement('div');
    actions.className = 'actions';
    const regen = document.createElement('button');
    regen.type = 'button';
    regen.className = 'regenerate';
    regen.textContent = 'Regenerate';
    regen.addEventListener('click', () => regenerate(t));
    const copy = document.createElement('button');
    copy.type = 'button';
    copy.className = 'copy';
    copy.textContent = 'Copy';
    copy.addEventListener('click', () => navigator.clipboard && navigator.clipboard.writeText(t.text));
    actions.append(regen, copy);
    el.append(status, meta, actions);
  }
  rendered.set(t, el);
  return el;
}

function renderTurn(t) {
  const el = turnElement(t);
  el.dataset.status = t.status || '';
  const content = el.querySelector('.content');
  if (t.role === 'user') {
    content.textContent = t.text;
    return;
  }
  el.classList.toggle('streaming', t.status === 'IN_PROGRESS');
  const agent = !!(t.parts && t.parts.length);
  el.classList.toggle('agent', agent);
  const waiting = t.status === 'IN_PROGRESS' && !t.text && !agent;
  if (agent) {
    // An agent answer keeps each part's element (an opened reasoning block,
    // a reason being typed); a plain one is redrawn from its text.
    if (!content.classList.contains('run')) {
      content.classList.add('run');
      content.replaceChildren();
    }
    renderRun(content, t.parts, { inProgress: t.status === 'IN_PROGRESS', onAnswer: (part, approve, reason) => answerApproval(t, part, approve, reason) });
  } else {
    content.classList.remove('run');
    if (waiting) content.innerHTML = '<span class="dots" aria-label="waiting for the first token"><i></i><i></i><i></i></span>';
    else content.innerHTML = renderMarkdown(t.text);
  }
  const s = statusLine(t);
  const status = el.querySelector('.turn-status');
  status.hidden = !s;
  status.replaceChildren();
  if (s) {
    status.append(s.text);
    if (s.code) {
      const code = document.createElement('code');
      code.textContent = s.code;
      status.append(' ', code);
    }
  }
  el.querySelector('.meta').textContent = metrics(t);
  const last = [...state.turns].reverse().find((x) => x.role === 'assistant');
  el.querySelector('.actions').hidden = t.status === 'IN_PROGRESS' || t !== last;
}

function render() {
  frame = 0;
  const nearBottom = ui.messages.scrollHeight - ui.messages.scrollTop - ui.messages.clientHeight < 80;
  if (reorder) {
    reorder = false;
    for (const [t, el] of rendered) {
      if (!state.turns.includes(t)) { el.remove(); rendered.delete(t); }
    }
    for (const t of state.turns) dirty.add(t);
    const els = state.turns.map(turnElement);
    ui.messages.replaceChildren(...(els.length ? els : [ui.empty]));
  }
  for (const t of dirty) if (state.turns.includes(t)) renderTurn(t);
  dirty.clear();
  if (nearBottom) ui.messages.scrollTop = ui.messages.scrollHeight;
}

// ---- pickers and start -------------------------------------------------------------

function setupLocale() {
  const saved = store.locale();
  const guess = (navigator.language || 'en').split('-')[0].toLowerCase();
  const pick = saved || (LOCALES.some(([tag]) => tag === guess) ? guess : 'en');
  for (const [tag, name] of LOCALES) ui.locale.append(new Option(`${name} (${tag})`, tag, false, tag === pick));
  ui.locale.addEventListener('change', () => store.saveLocale(ui.locale.value));
}

async function loadModels() {
  const models = await api.models();
  const saved = store.model();
  const pick = models.some((m) => m.name === saved) ? saved : (models.find((m) => m.default) || models[0] || {}).name;
  ui.model.replaceChildren(...models.map((m) => new Option(m.name + (m.default ? ' (default)' : ''), m.name, false, m.name === pick)));
}
ui.model.addEventListener('change', () => store.saveModel(ui.model.value));

async function boot() {
  try {
    await loadModels();
  } catch (err) {
    if (!authFailed(err)) {
      notice(describe(err.code, err.message, err.retryAfter));
      setTimeout(boot, 3000);
    }
    return;
  }
  notice('');
  state.ready = true;
  const fromHash = decodeURIComponent(location.hash.slice(1));
  const known = store.sessions();
  const id = validSessionId(fromHash) ? fromHash : (known[0] && known[0].id) || newId('c-');
  openSession(id);
}

window.addEventListener('hashchange', () => {
  const id = decodeURIComponent(location.hash.slice(1));
  if (state.ready && validSessionId(id) && id !== state.sessionId) openSession(id);
});

setupLocale();
renderSessions();
showConn();
boot();

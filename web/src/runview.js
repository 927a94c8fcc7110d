// Draws an agent answer's parts into its bubble and keeps each part's
// element across updates, so a reasoning block the user opened stays open
// and a reason being typed for a denial is not lost while the run streams.
// Everything a model or a tool wrote is set as text (textContent), except
// the answer's own text, which goes through the Markdown renderer and its
// sanitizer like any answer.
import { ANSWERING, toolState } from './run.js';
import { renderMarkdown } from './markdown.js';

const elements = new WeakMap(); // part → its element
const shown = new WeakMap(); // element → the source text it shows, to redraw only on change

/**
 * Renders parts into container (the bubble's content). opts: inProgress
 * (the answer still runs), and onAnswer(part, approve, reason), called when
 * Approve or Deny is pressed.
 */
export function renderRun(container, parts, opts) {
  const want = parts.map((p) => {
    let el = elements.get(p);
    if (!el) {
      el = create(p, opts);
      elements.set(p, el);
    }
    update(el, p, opts);
    return el;
  });
  want.forEach((el, i) => {
    if (container.children[i] !== el) container.insertBefore(el, container.children[i] || null);
  });
  while (container.children.length > want.length) container.lastElementChild.remove();
  const last = parts[parts.length - 1];
  if (last) elements.get(last).classList.toggle('live', !!opts.inProgress);
  for (const p of parts.slice(0, -1)) elements.get(p).classList.remove('live');
}

function make(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text != null) el.textContent = text;
  return el;
}

function create(p, opts) {
  switch (p.kind) {
    case 'reasoning': {
      // Folded by default: reasoning is there to look into, not to read.
      const el = make('details', 'part reasoning');
      el.append(make('summary', '', 'Reasoning'), make('div', 'reasoning-text'));
      return el;
    }
    case 'text':
      return make('div', 'part text');
    case 'step': {
      const el = make('div', 'part step');
      el.setAttribute('role', 'separator');
      el.append(make('span', 'step-label'));
      return el;
    }
    case 'sources': {
      const el = make('div', 'part sources');
      el.append(make('p', 'sources-label', 'Sources'), make('ol', 'sources-list'));
      return el;
    }
    case 'tool':
      return createTool(p, opts);
    default:
      return make('div', 'part');
  }
}

function update(el, p, opts) {
  switch (p.kind) {
    case 'reasoning':
      setText(el.querySelector('.reasoning-text'), p.text);
      break;
    case 'text':
      if (shown.get(el) !== p.text) {
        el.innerHTML = renderMarkdown(p.text);
        shown.set(el, p.text);
      }
      break;
    case 'step':
      setText(el.querySelector('.step-label'), `Step ${p.number + 1}`);
      el.setAttribute('aria-label', `Step ${p.number} ended; step ${p.number + 1} begins`);
      break;
    case 'sources':
      updateSources(el.querySelector('.sources-list'), p.items);
      break;
    case 'tool':
      updateTool(el, p, opts);
      break;
    default:
      break;
  }
}

function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

/** Shows JSON text indented (see pretty), parsing it only when it changed. */
function setPretty(el, text) {
  if (shown.get(el) === text) return;
  shown.set(el, text);
  el.textContent = pretty(text);
}

/** An http(s) URL as a link target, or '' for anything else (javascript:, data:, relative). */
export function safeHref(url) {
  try {
    const u = new URL(String(url || '').trim());
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : '';
  } catch {
    return '';
  }
}

function updateSources(list, items) {
  while (list.children.length < items.length) {
    const src = items[list.children.length];
    const li = make('li', 'source');
    const href = safeHref(src.url);
    const label = src.title || src.url || 'source';
    if (href) {
      const a = make('a', '', label);
      a.href = href;
      a.target = '_blank';
      a.rel = 'noopener noreferrer nofollow';
      li.append(a);
    } else {
      li.append(make('span', 'source-title', label));
    }
    if (src.text) li.append(make('span', 'source-text', src.text));
    list.append(li);
  }
}

const STATE_LABELS = {
  running: 'Running…',
  approval: 'Waiting for approval',
  finished: 'Finished',
  failed: 'Failed',
  denied: 'Denied',
  stopped: 'Stopped',
};

function createTool(p, opts) {
  const el = make('div', 'part tool');
  el.dataset.callId = p.id;
  const head = make('div', 'tool-head');
  head.append(make('span', 'tool-icon', '⚙'), make('span', 'tool-name'), make('span', 'tool-state'), make('span', 'tool-duration'));
  const input = make('div', 'tool-section tool-args');
  input.append(make('div', 'tool-label', 'Arguments'), make('pre', 'tool-input'));

  const approval = make('div', 'tool-approval');
  const why = make('p', 'approval-why');
  const actions = make('div', 'approval-actions');
  const approve = make('button', 'approve', 'Approve');
  approve.type = 'button';
  const reason = make('input', 'deny-reason');
  reason.type = 'text';
  reason.maxLength = 1000;
  reason.placeholder = 'Reason for denying (optional)';
  reason.setAttribute('aria-label', 'Reason for denying (optional)');
  const deny = make('button', 'deny', 'Deny');
  deny.type = 'button';
  approve.addEventListener('click', () => opts.onAnswer(p, true, ''));
  deny.addEventListener('click', () => opts.onAnswer(p, false, reason.value.trim()));
  reason.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') {
      e.preventDefault();
      deny.click();
    }
  });
  actions.append(approve, reason, deny);
  const answer = make('p', 'approval-answer');
  const error = make('p', 'approval-error');
  error.setAttribute('role', 'alert');
  approval.append(why, actions, answer, error);

  const output = make('div', 'tool-section tool-result');
  output.append(make('div', 'tool-label', 'Result'), make('pre', 'tool-output'), make('p', 'tool-note'));
  el.append(head, input, approval, output);
  return el;
}

/** JSON as indented text when it parses as an object or array; else the text as it came. */
function pretty(text) {
  if (text == null) return '';
  try {
    const v = JSON.parse(text);
    if (v && typeof v === 'object') return JSON.stringify(v, null, 2);
  } catch { /* not JSON: shown as it is */ }
  return String(text);
}

function fmtDuration(ms) {
  if (ms == null) return '';
  if (ms < 10) return `${ms.toFixed(1)} ms`;
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

function updateTool(el, p, opts) {
  const state = toolState(p, opts.inProgress);
  el.dataset.state = state;
  setText(el.querySelector('.tool-name'), p.name || 'tool');
  setText(el.querySelector('.tool-state'), STATE_LABELS[state]);
  setText(el.querySelector('.tool-duration'), p.result ? fmtDuration(p.result.durationMs) : '');
  // The arguments stream as JSON fragments; once complete they are indented.
  if (p.input != null) setPretty(el.querySelector('.tool-input'), p.input);
  else setText(el.querySelector('.tool-input'), p.args);

  const result = el.querySelector('.tool-result');
  result.hidden = !p.result;
  if (p.result) {
    setPretty(el.querySelector('.tool-output'), p.result.output);
    const note = el.querySelector('.tool-note');
    note.hidden = !p.result.truncated;
    setText(note, p.result.truncated ? 'The output was cut to the server\'s limit.' : '');
  }
  updateApproval(el, p, state);
}

function updateApproval(el, p, state) {
  const box = el.querySelector('.tool-approval');
  const a = p.approval;
  box.hidden = !a;
  if (!a) return;
  const ui = p[ANSWERING] || {};
  const pending = a.pending && state === 'approval';
  box.dataset.approval = a.pending ? (pending ? 'pending' : 'expired') : (a.approved ? 'approved' : 'denied');

  const why = el.querySelector('.approval-why');
  let ask = 'This tool call waits for your approval.';
  if (a.why) ask += ' ' + a.why;
  if (a.expires) {
    const at = new Date(a.expires);
    if (!Number.isNaN(at.getTime())) ask += ` Without an answer it is denied at ${at.toLocaleString()}.`;
  }
  why.hidden = !pending;
  setText(why, pending ? ask : '');

  const actions = el.querySelector('.approval-actions');
  const closed = ui.error && ui.final; // the server said there is nothing to answer
  actions.hidden = !pending || !!ui.sent || !!closed;
  for (const b of actions.querySelectorAll('button, input')) b.disabled = !!ui.sending;

  let answer = '';
  if (!a.pending) answer = a.approved ? 'Approved' : 'Denied';
  if (!a.pending && a.reason) answer += `: ${a.reason}`;
  if (pending && ui.sending) answer = ui.approve ? 'Approving…' : 'Denying…';
  if (pending && ui.sent) answer = ui.approve ? 'Approved, waiting for the run to go on…' : 'Denied, waiting for the run to go on…';
  if (a.pending && state !== 'approval') answer = 'Not answered before the answer ended.';
  const answerEl = el.querySelector('.approval-answer');
  answerEl.hidden = !answer;
  setText(answerEl, answer);

  const error = el.querySelector('.approval-error');
  error.hidden = !ui.error;
  setText(error, ui.error || '');
}

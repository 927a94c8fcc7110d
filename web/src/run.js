// An agent answer as the parts it happened in, in order: reasoning, text,
// tool calls (their input, approval and result), the boundaries between the
// model's steps, and sources. Built from the session's events as they
// stream, or from the steps the conversation stored. A plain answer has no
// parts: it is its text.

/**
 * Where the page keeps what it knows of an approval being sent from here
 * (sending, sent, error). A symbol, so the parts saved for a reload leave
 * it out.
 */
export const ANSWERING = Symbol('answering');

/** The event types that only agent subscriptions see. */
const AGENT_TYPES = new Set([
  'REASONING', 'TOOL_CALL_START', 'TOOL_CALL_DELTA', 'TOOL_CALL', 'TOOL_RESULT',
  'STEP', 'SOURCE', 'APPROVAL_REQUESTED', 'APPROVAL',
]);

/** Reports whether an event belongs to an agent run (not text, not a marker). */
export function isAgentEvent(type) {
  return AGENT_TYPES.has(type);
}

/** The parts of a stored answer's steps; null for a plain answer. */
export function partsFromSteps(steps) {
  if (!steps || !steps.length) return null;
  const parts = [];
  steps.forEach((s, i) => {
    if (i > 0) parts.push({ kind: 'step', number: i });
    if (s.reasoning) parts.push({ kind: 'reasoning', text: s.reasoning });
    if (s.text) parts.push({ kind: 'text', text: s.text });
    for (const c of s.toolCalls || []) {
      const tool = newTool(c.id, c.name);
      tool.input = c.input;
      if (c.output != null) {
        tool.result = { output: c.output, isError: !!c.isError, truncated: !!c.truncated, durationMs: c.durationMs };
      }
      parts.push(tool);
    }
  });
  return parts;
}

/** The parts of an answer that streamed as plain text until now. */
export function partsFromText(text) {
  return text ? [{ kind: 'text', text }] : [];
}

/** Adds streamed answer text (a DELTA) after the parts. */
export function appendText(parts, text) {
  const last = parts[parts.length - 1];
  if (last && last.kind === 'text') last.text += text;
  else parts.push({ kind: 'text', text });
}

/** Applies one agent event to the parts. */
export function applyEvent(parts, ev) {
  const call = ev.toolCall || {};
  switch (ev.type) {
    case 'REASONING': {
      const last = parts[parts.length - 1];
      if (last && last.kind === 'reasoning') last.text += ev.message || '';
      else parts.push({ kind: 'reasoning', text: ev.message || '' });
      break;
    }
    case 'TOOL_CALL_START':
      toolOf(parts, call.id, call.name);
      break;
    case 'TOOL_CALL_DELTA':
      toolOf(parts, call.id).args += ev.message || '';
      break;
    case 'TOOL_CALL': {
      const tool = toolOf(parts, call.id, call.name);
      if (call.input != null) tool.input = call.input;
      break;
    }
    case 'TOOL_RESULT': {
      const r = ev.toolResult || {};
      const tool = toolOf(parts, r.callId, r.name);
      tool.result = { output: r.output || '', isError: !!r.isError, truncated: !!r.truncated, durationMs: r.durationMs };
      break;
    }
    case 'STEP':
      // Only a step the run goes on from needs a boundary: the last one
      // ends the answer.
      if (ev.step && ev.step.continues) parts.push({ kind: 'step', number: ev.step.number });
      break;
    case 'SOURCE': {
      if (!ev.source) break;
      const last = parts[parts.length - 1];
      const src = { title: ev.source.title || '', url: ev.source.url || '', text: ev.source.text || '' };
      if (last && last.kind === 'sources') last.items.push(src);
      else parts.push({ kind: 'sources', items: [src] });
      break;
    }
    case 'APPROVAL_REQUESTED': {
      const a = ev.approval || {};
      const tool = toolOf(parts, a.callId, a.tool);
      if (tool.input == null && a.input != null) tool.input = a.input;
      tool.approval = { pending: true, why: a.reason || '', expires: a.expires || '' };
      break;
    }
    case 'APPROVAL': {
      const a = ev.approval || {};
      const tool = toolOf(parts, a.callId, a.tool);
      tool.approval = { pending: false, approved: !!a.approved, reason: a.reason || '', expires: a.expires || '' };
      break;
    }
    default:
      break;
  }
}

/**
 * What a tool call is doing now: running, approval (waits for an answer),
 * finished, failed, denied (its failure result has not come yet) or stopped
 * (the answer ended before the call did).
 */
export function toolState(tool, answerInProgress) {
  if (tool.result) return tool.result.isError ? 'failed' : 'finished';
  if (!answerInProgress) return 'stopped';
  if (tool.approval && tool.approval.pending) return 'approval';
  if (tool.approval && !tool.approval.approved) return 'denied';
  return 'running';
}

/** Moves what the page knew of approvals being answered onto fresh parts. */
export function carryAnswering(from, to) {
  if (!from || !to) return;
  for (const old of from) {
    if (old.kind !== 'tool') continue;
    const tool = to.find((p) => p.kind === 'tool' && p.id === old.id);
    if (!tool) continue;
    if (old[ANSWERING]) tool[ANSWERING] = old[ANSWERING];
    // The conversation does not keep approvals: what streamed here stays.
    if (old.approval && !tool.approval) tool.approval = old.approval;
  }
}

function newTool(id, name) {
  return { kind: 'tool', id: id || '', name: name || '', args: '', input: null, result: null, approval: null };
}

/** The tool part of a call id, made when it is new. */
function toolOf(parts, id, name) {
  let tool = parts.find((p) => p.kind === 'tool' && p.id === id);
  if (!tool) {
    tool = newTool(id, name);
    parts.push(tool);
  }
  if (name && !tool.name) tool.name = name;
  return tool;
}

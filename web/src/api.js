// The server's GraphQL API: queries and mutations over fetch (JSON POST), the
// session's events over graphql-ws (graphql-transport-ws).
import { createClient } from 'graphql-ws/client';
import { CodedError, fromGraphQL } from './errors.js';

// The agent fields (reasoning, tool calls and results, steps, sources,
// approvals) come only with agent: true; without it an agent answer is text.
const EVENT_FIELDS = `type message requestId index cursor stopReason model timeStamp
  usage { inputTokens outputTokens totalTokens }
  error { code message }
  toolCall { id name input }
  toolResult { callId name output isError truncated durationMs }
  step { number reason continues }
  source { title url text }
  approval { callId tool input approved reason expires }`;

const WATCH = `subscription Watch($sessionId: String!, $after: String) {
  onSendMessage(sessionId: $sessionId, after: $after, agent: true) { ${EVENT_FIELDS} }
}`;

/**
 * Talks to one tokencast server. credential() returns what the user entered:
 * an API key, or "Bearer <token>".
 */
export class Api {
  constructor({ endpoint = '/graphql', credential, onSocket }) {
    this.endpoint = endpoint;
    this.credential = credential;
    this.onSocket = onSocket || (() => {});
    this.client = null;
  }

  authHeaders() {
    const cred = (this.credential() || '').trim();
    if (!cred) return {};
    if (/^bearer\s+/i.test(cred)) return { Authorization: cred };
    return { 'x-api-key': cred };
  }

  /** Runs a query or mutation; throws CodedError. */
  async request(query, variables) {
    let res;
    try {
      res = await fetch(this.endpoint, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json', ...this.authHeaders() },
        body: JSON.stringify({ query, variables }),
      });
    } catch (err) {
      throw new CodedError('NETWORK', String(err));
    }
    let body = null;
    try {
      body = await res.json();
    } catch {
      throw new CodedError(res.status === 401 ? 'UNAUTHENTICATED' : 'NETWORK', `HTTP ${res.status}`);
    }
    const first = body && body.errors && body.errors[0];
    if (res.status === 401) throw new CodedError('UNAUTHENTICATED', first && first.message);
    if (first) throw fromGraphQL(first);
    return body.data;
  }

  models() {
    return this.request('query Models { models { name default } }').then((d) => d.models);
  }

  conversation(sessionId) {
    return this.request(`query Conversation($sessionId: String!) {
      conversation(sessionId: $sessionId) {
        turns {
          requestId role text status locale model at usage { inputTokens outputTokens totalTokens }
          steps { reasoning text toolCalls { id name input output isError truncated durationMs } }
        }
      }
    }`, { sessionId }).then((d) => d.conversation);
  }

  ask(input) {
    return this.request(`query Ask($input: GetLlmResponseInput!) {
      getLlmResponse(input: $input) { requestId }
    }`, { input }).then((d) => d.getLlmResponse);
  }

  cancel(sessionId, requestId) {
    return this.request(`mutation Cancel($sessionId: String!, $requestId: ID!) {
      cancelResponse(sessionId: $sessionId, requestId: $requestId) { requestId cancelled }
    }`, { sessionId, requestId }).then((d) => d.cancelResponse);
  }

  /** Approves or denies a tool call that waits for the session owner. */
  answerApproval({ sessionId, requestId, callId, approve, reason }) {
    return this.request(`mutation AnswerApproval($sessionId: String!, $requestId: ID!, $callId: ID!, $approve: Boolean!, $reason: String) {
      answerApproval(sessionId: $sessionId, requestId: $requestId, callId: $callId, approve: $approve, reason: $reason) { callId approved }
    }`, { sessionId, requestId, callId, approve, reason: reason || null }).then((d) => d.answerApproval);
  }

  socket() {
    if (this.client) return this.client;
    const url = new URL(this.endpoint, location.href);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    this.client = createClient({
      url: url.href,
      lazy: true,
      lazyCloseTimeout: 1000,
      keepAlive: 20000,
      // Reconnecting is ours: each new subscription carries the newest cursor.
      retryAttempts: 0,
      connectionParams: () => {
        const h = this.authHeaders();
        if (h.Authorization) return { Authorization: h.Authorization };
        return h['x-api-key'] ? { 'x-api-key': h['x-api-key'] } : {};
      },
      on: {
        connecting: () => this.onSocket('connecting'),
        connected: () => this.onSocket('connected'),
        closed: (ev) => this.onSocket('closed', ev),
      },
    });
    return this.client;
  }

  /** Drops the WebSocket, e.g. after the key changed. */
  resetSocket() {
    if (this.client) this.client.dispose();
    this.client = null;
  }

  /**
   * Watches a session's events after a cursor (or from the answer in flight
   * when there is none). onEnd gets a CodedError when the watch stops for any
   * reason other than dispose. Returns dispose.
   */
  watch(sessionId, after, onEvent, onEnd) {
    let done = false;
    const variables = { sessionId };
    if (after) variables.after = after;
    const dispose = this.socket().subscribe({ query: WATCH, variables }, {
      next: (result) => {
        if (done) return;
        if (result.errors && result.errors.length) return finish(fromGraphQL(result.errors[0]));
        const ev = result.data && result.data.onSendMessage;
        if (ev) onEvent(ev);
      },
      error: (err) => finish(closeError(err)),
      complete: () => finish(new CodedError('NETWORK', 'the subscription ended')),
    });
    function finish(err) {
      if (done) return;
      done = true;
      onEnd(err);
    }
    return () => {
      done = true;
      dispose();
    };
  }
}

/** Maps what graphql-ws reports (a CloseEvent, GraphQL errors, an Error) to a code. */
function closeError(err) {
  if (Array.isArray(err) && err.length) return fromGraphQL(err[0]);
  if (err && typeof err.code === 'number') {
    switch (err.code) {
      case 4401: // the token expired
      case 4403: return new CodedError('UNAUTHENTICATED', err.reason);
      case 4429: return new CodedError('TOO_MANY_CONNECTIONS', err.reason);
      case 1013: return new CodedError('SLOW_CONSUMER', err.reason);
      case 1001:
      case 1012: return new CodedError('SERVER_SHUTDOWN', err.reason);
      default: return new CodedError('NETWORK', `closed ${err.code} ${err.reason || ''}`.trim());
    }
  }
  return new CodedError('NETWORK', String(err && err.message ? err.message : err));
}

// aws-amplify 6, API_KEY mode, over TLS: the auth object in a header-…
// subprotocol beside graphql-ws, at wss://…/graphql/realtime.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import WebSocket from 'ws';
import { ASK, CLIENT_KEY, SUBSCRIBE, WRONG_KEY, checkAnswer, collector, countingWebSocket, demoAnswer, sleep, startServer, within } from './lib.mjs';

const { WebSocket: Counting, counter } = countingWebSocket(WebSocket);
globalThis.WebSocket = Counting;
const { Amplify } = await import('amplify6');
const { generateClient } = await import('amplify6/api');

let srv;
before(async () => { srv = await startServer({ tls: true }); });
after(async () => { await srv?.stop(); });

function client(apiKey) {
  Amplify.configure({ API: { GraphQL: { endpoint: srv.url, region: 'us-east-1', defaultAuthMode: 'apiKey', apiKey } } });
  return generateClient();
}

test('Amplify v6 streams the whole answer in order over wss://…/graphql/realtime', async () => {
  const api = client(CLIENT_KEY);
  const c = collector();
  const opened = counter.opened;
  const sub = api.graphql({ query: SUBSCRIBE, variables: { sessionId: 'amp6-1' } }).subscribe({
    next: ({ data }) => c.push(data.onSendMessage),
    error: (err) => assert.fail(`subscription error ${JSON.stringify(err?.errors ?? err)}`),
  });
  try {
    const res = await api.graphql({ query: ASK, variables: { input: { sessionId: 'amp6-1', message: 'Hello from Amplify 6', locale: 'es' } } });
    const requestId = res.data.getLlmResponse.requestId;
    const events = await within(15_000, c.done, 'answer');
    checkAnswer(assert, events, requestId, demoAnswer('es', 'Hello from Amplify 6'));
    assert.equal(counter.opened - opened, 1);
    const url = new URL(counter.urls.at(-1));
    assert.equal(url.protocol, 'wss:');
    assert.equal(url.pathname, '/graphql/realtime');
    const protocols = counter.protocols.at(-1);
    assert.equal(protocols[0], 'graphql-ws');
    assert.match(protocols[1], /^header-/);
    assert.equal(counter.sockets.at(-1).protocol, 'graphql-ws', 'the server echoes graphql-ws only');
  } finally {
    sub.unsubscribe();
  }
});

test('Amplify v6: a wrong key is refused (connection_error 401) with no retry', async () => {
  const api = client(WRONG_KEY);
  await assert.rejects(api.graphql({ query: ASK, variables: { input: { sessionId: 'amp6-2', message: 'hi', locale: 'en' } } }));
  await counter.allClosed();
  const opened = counter.opened;
  const err = await within(15_000, new Promise((resolve) => {
    api.graphql({ query: SUBSCRIBE, variables: { sessionId: 'amp6-2' } }).subscribe({
      next: () => assert.fail('data for a wrong key'),
      error: resolve,
    });
  }), 'refusal');
  assert.match(JSON.stringify(err?.errors ?? String(err)), /UnauthorizedException|401/);
  await sleep(2000);
  assert.equal(counter.opened - opened, 1, 'the client must not reconnect after a 401');
});

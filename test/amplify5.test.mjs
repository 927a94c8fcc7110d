// aws-amplify 5.3.27, the version the AWS sample's UI locks
// (chat-bot-ui/package-lock.json), API_KEY mode, against the server over TLS:
// https:// for the question, wss://…/graphql/realtime with the auth object in
// a header-… subprotocol for the subscription.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { after, before, test } from 'node:test';
import WebSocket from 'ws';
import { ASK, CLIENT_KEY, SUBSCRIBE, WRONG_KEY, answered, checkAnswer, collector, countingWebSocket, demoAnswer, sleep, startServer, within } from './lib.mjs';

const { WebSocket: Counting, counter } = countingWebSocket(WebSocket);
globalThis.WebSocket = Counting;
const { Amplify, API } = createRequire(import.meta.url)('amplify5');

let srv;
before(async () => { srv = await startServer({ tls: true }); });
after(async () => { await srv?.stop(); });

function configure(apiKey) {
  Amplify.configure({
    aws_appsync_graphqlEndpoint: srv.url,
    aws_appsync_region: 'us-east-1',
    aws_appsync_authenticationType: 'API_KEY',
    aws_appsync_apiKey: apiKey,
  });
}

test('Amplify v5 streams the whole answer in order over wss://…/graphql/realtime', async () => {
  configure(CLIENT_KEY);
  const c = collector();
  const opened = counter.opened;
  // Like the sample's UI: subscribe, then ask at once without waiting.
  const sub = API.graphql({ query: SUBSCRIBE, variables: { sessionId: 'amp5-1' } }).subscribe({
    next: ({ value }) => { assert.equal(value.errors, undefined); c.push(value.data.onSendMessage); },
    error: (err) => assert.fail(`subscription error ${JSON.stringify(err)}`),
  });
  try {
    const res = await API.graphql({ query: ASK, variables: { input: { sessionId: 'amp5-1', message: 'Hello from the sample UI', locale: 'en-US' }, history: [] } });
    const requestId = res.data.getLlmResponse.requestId;
    const events = await within(15_000, c.done, 'answer');
    checkAnswer(assert, events, requestId, demoAnswer('en-US', 'Hello from the sample UI'));
    assert.equal(counter.opened - opened, 1);
    const url = new URL(counter.urls.at(-1));
    assert.equal(url.protocol, 'wss:');
    assert.equal(url.pathname, '/graphql/realtime');
    const protocols = counter.protocols.at(-1);
    assert.equal(protocols[0], 'graphql-ws');
    assert.ok(protocols.some((p) => p.startsWith('header-')), `auth object in a header-… subprotocol: ${protocols}`);
  } finally {
    sub.unsubscribe();
  }
});

async function refusal(sessionId) {
  const err = await within(15_000, new Promise((resolve) => {
    API.graphql({ query: SUBSCRIBE, variables: { sessionId } }).subscribe({
      next: () => assert.fail('data for a wrong key'),
      error: resolve,
    });
  }), 'refusal');
  return err?.error?.errors?.[0]?.message ?? err?.errors?.[0]?.message ?? String(err);
}

test('Amplify v5: a wrong key is refused once (connection_error 401), with no retry', async () => {
  configure(WRONG_KEY);
  await assert.rejects(API.graphql({ query: ASK, variables: { input: { sessionId: 'amp5-2', message: 'hi', locale: 'en' } } }), (err) => {
    assert.match(err.errors[0].message, /status code 401/);
    return true;
  });
  await counter.allClosed(); // a fresh connection, so the handshake is refused
  const opened = counter.opened;
  const message = await refusal('amp5-2');
  assert.match(message, /UnauthorizedException/, message);
  await sleep(2000);
  assert.equal(counter.opened - opened, 1, 'the client must not reconnect after a 401');
});

test('Amplify v5: each subscription is authorized by its own auth object', async () => {
  configure(CLIENT_KEY);
  const c = collector();
  const good = API.graphql({ query: SUBSCRIBE, variables: { sessionId: 'amp5-3' } }).subscribe({
    next: ({ value }) => c.push(value.data.onSendMessage),
    error: (err) => assert.fail(`subscription error ${JSON.stringify(err?.error ?? err)}`),
  });
  try {
    await sleep(300);
    const opened = counter.opened;
    configure(WRONG_KEY); // the next start carries the wrong key on the same socket
    const message = await refusal('amp5-3');
    assert.match(message, /UnauthorizedException/, message);
    assert.equal(counter.opened, opened, 'the refusal reused the open connection');
    configure(CLIENT_KEY);
    const res = await API.graphql({ query: ASK, variables: { input: { sessionId: 'amp5-3', message: 'still there?', locale: 'en' } } });
    const events = await within(15_000, c.done, 'answer');
    checkAnswer(assert, events, res.data.getLlmResponse.requestId, demoAnswer('en', 'still there?'));
  } finally {
    good.unsubscribe();
  }
});

// The sample's UI sends getLlmResponse without waiting for its subscription to
// be acknowledged. AppSync would lose an answer that ended before the
// subscription landed; tokencast replays it (--late-join-window).
test('Amplify v5: an answer that ended before the subscription started arrives whole, once', async () => {
  configure(CLIENT_KEY);
  const question = 'Was I too quick?';
  const res = await API.graphql({ query: ASK, variables: { input: { sessionId: 'amp5-4', message: question, locale: 'en-US' } } });
  const requestId = res.data.getLlmResponse.requestId;
  await answered(srv, { sessionId: 'amp5-4', requestId });
  const c = collector();
  const sub = API.graphql({ query: SUBSCRIBE, variables: { sessionId: 'amp5-4' } }).subscribe({
    next: ({ value }) => { assert.equal(value.errors, undefined); c.push(value.data.onSendMessage); },
    error: (err) => assert.fail(`subscription error ${JSON.stringify(err?.error ?? err)}`),
  });
  try {
    const events = await within(15_000, c.done, 'the replayed answer');
    checkAnswer(assert, events, requestId, demoAnswer('en-US', question));
  } finally {
    sub.unsubscribe();
  }
});

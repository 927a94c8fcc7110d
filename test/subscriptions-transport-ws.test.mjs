// The legacy Apollo client subscriptions-transport-ws, subprotocol graphql-ws
// (told apart from AppSync by payload.query).
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { after, before, test } from 'node:test';
import WebSocket from 'ws';
import { CLIENT_KEY, SUBSCRIBE, WRONG_KEY, ask, checkAnswer, collector, countingWebSocket, demoAnswer, sleep, startServer, within } from './lib.mjs';

const { SubscriptionClient } = createRequire(import.meta.url)('subscriptions-transport-ws');

let srv;
before(async () => { srv = await startServer({ args: ['--ws-keepalive', '200ms'] }); });
after(async () => { await srv?.stop(); });

test('subscriptions-transport-ws streams the whole answer in order', async () => {
  const client = new SubscriptionClient(srv.wsUrl, { connectionParams: { 'x-api-key': CLIENT_KEY }, reconnect: false }, WebSocket);
  try {
    const connected = new Promise((resolve) => client.onConnected(resolve));
    const c = collector();
    const sub = client.request({ query: SUBSCRIBE, variables: { sessionId: 'legacy-1' } }).subscribe({
      next: ({ data, errors }) => { assert.equal(errors, undefined); c.push(data.onSendMessage); },
      error: (err) => assert.fail(`subscription error ${JSON.stringify(err)}`),
    });
    await connected;
    const requestId = await ask(srv, { sessionId: 'legacy-1', message: 'An old client?', locale: 'fr' });
    const events = await within(15_000, c.done, 'answer');
    checkAnswer(assert, events, requestId, demoAnswer('fr', 'An old client?'));
    sub.unsubscribe();
    // Keep-alives flow (every 200ms here) and do not upset the client.
    await sleep(500);
    assert.equal(client.status, WebSocket.OPEN);
  } finally {
    client.close();
  }
});

test('subscriptions-transport-ws: a query runs over the socket and completes', async () => {
  const client = new SubscriptionClient(srv.wsUrl, { connectionParams: { 'x-api-key': CLIENT_KEY }, reconnect: false }, WebSocket);
  try {
    const result = await within(10_000, new Promise((resolve, reject) => {
      let got;
      client.request({ query: '{ __typename }' }).subscribe({ next: (r) => { got = r; }, error: reject, complete: () => resolve(got) });
    }), 'query');
    assert.deepEqual(result.data, { __typename: 'Query' });
  } finally {
    client.close();
  }
});

test('subscriptions-transport-ws: a wrong key gets connection_error and no reconnect', async () => {
  const { WebSocket: Counting, counter } = countingWebSocket(WebSocket);
  const client = new SubscriptionClient(srv.wsUrl, {
    connectionParams: { 'x-api-key': WRONG_KEY },
    reconnect: false,
    connectionCallback: (err) => { if (err) refused(err); },
  }, Counting);
  let refused;
  const refusal = new Promise((resolve) => { refused = resolve; });
  try {
    client.request({ query: SUBSCRIBE, variables: { sessionId: 'legacy-2' } }).subscribe({ next: () => assert.fail('data for a wrong key') });
    const err = await within(10_000, refusal, 'connection_error');
    assert.equal(err.errors[0].errorCode, 401);
    assert.equal(err.errors[0].errorType, 'UnauthorizedException');
    await sleep(1000);
    assert.equal(counter.opened, 1);
  } finally {
    client.close();
  }
});

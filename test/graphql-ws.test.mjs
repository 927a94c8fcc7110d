// graphql-ws (enisdenjo), subprotocol graphql-transport-ws.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { CLIENT_KEY, SUBSCRIBE, WRONG_KEY, ask, checkAnswer, collector, countingWebSocket, demoAnswer, startServer, within } from './lib.mjs';

let srv;
before(async () => { srv = await startServer(); });
after(async () => { await srv?.stop(); });

test('graphql-ws streams the whole answer in order', async () => {
  const client = createClient({ url: srv.wsUrl, webSocketImpl: WebSocket, connectionParams: { 'x-api-key': CLIENT_KEY }, retryAttempts: 0 });
  try {
    const c = collector();
    const subscribed = new Promise((resolve) => client.on('connected', resolve));
    const unsubscribe = client.subscribe({ query: SUBSCRIBE, variables: { sessionId: 'gws-1' } }, {
      next: ({ data, errors }) => { assert.equal(errors, undefined); c.push(data.onSendMessage); },
      error: (err) => assert.fail(`subscription error ${JSON.stringify(err)}`),
      complete: () => {},
    });
    await subscribed;
    const requestId = await ask(srv, { sessionId: 'gws-1', message: 'What is graphql-ws?' });
    const events = await within(15_000, c.done, 'answer');
    checkAnswer(assert, events, requestId, demoAnswer('en', 'What is graphql-ws?'));
    unsubscribe();
  } finally {
    await client.dispose();
  }
});

test('graphql-ws: a wrong key is closed with 4403 Forbidden', async () => {
  const { WebSocket: Counting, counter } = countingWebSocket(WebSocket);
  const client = createClient({ url: srv.wsUrl, webSocketImpl: Counting, connectionParams: { 'x-api-key': WRONG_KEY }, retryAttempts: 0 });
  try {
    const err = await within(10_000, new Promise((resolve) => {
      client.subscribe({ query: SUBSCRIBE, variables: { sessionId: 'gws-2' } }, {
        next: () => assert.fail('data for a wrong key'),
        error: resolve,
        complete: () => resolve(new Error('completed instead of failing')),
      });
    }), 'refusal');
    assert.equal(err.code, 4403, `closed with ${err.code} ${err.reason}`);
    assert.equal(counter.opened, 1);
  } finally {
    await client.dispose();
  }
});

// graphql-ws (enisdenjo), subprotocol graphql-transport-ws.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { CLIENT_KEY, SUBSCRIBE, SUBSCRIBE_AFTER, WRONG_KEY, answered, ask, checkAnswer, collector, countingWebSocket, demoAnswer, startServer, within } from './lib.mjs';

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

function wsClient() {
  return createClient({ url: srv.wsUrl, webSocketImpl: WebSocket, connectionParams: { 'x-api-key': CLIENT_KEY }, retryAttempts: 0 });
}

/** Subscribes to a session (after a cursor, when given) and collects one answer. */
function watch(client, sessionId, after) {
  const c = collector();
  const unsubscribe = client.subscribe({ query: SUBSCRIBE_AFTER, variables: { sessionId, after } }, {
    next: ({ data, errors }) => { assert.equal(errors, undefined); c.push(data.onSendMessage); },
    error: (err) => assert.fail(`subscription error ${JSON.stringify(err)}`),
    complete: () => {},
  });
  return { ...c, unsubscribe };
}

/**
 * Resolves once the subscriptions sent before are attached: the server
 * handles a connection's frames in order, so a query sent after them on the
 * same socket is answered only then.
 */
async function attached(client) {
  for await (const r of client.iterate({ query: '{ __typename }' })) assert.deepEqual(r, { data: { __typename: 'Query' } });
}

test('graphql-ws: an answer that ended before the subscription started arrives whole, once', async () => {
  const question = 'Asked before subscribing';
  const requestId = await ask(srv, { sessionId: 'gws-3', message: question });
  await answered(srv, { sessionId: 'gws-3', requestId });
  const client = wsClient();
  try {
    const w = watch(client, 'gws-3');
    const events = await within(15_000, w.done, 'the replayed answer');
    checkAnswer(assert, events, requestId, demoAnswer('en', question));
    w.unsubscribe();
  } finally {
    await client.dispose();
  }
});

test('graphql-ws: a subscriber back with the cursor of an END is not given that answer again', async () => {
  const first = wsClient();
  let seen;
  try {
    const connected = new Promise((resolve) => first.on('connected', resolve));
    const live = watch(first, 'gws-4');
    await connected;
    const requestId = await ask(srv, { sessionId: 'gws-4', message: 'First question' });
    seen = await within(15_000, live.done, 'the first answer');
    checkAnswer(assert, seen, requestId, demoAnswer('en', 'First question'));
  } finally {
    await first.dispose();
  }

  // Back on a new connection, within the late-join window (without the
  // cursor the first answer would be replayed), and attached before the
  // second question, so the first answer is what is left out.
  const again = wsClient();
  try {
    const back = watch(again, 'gws-4', seen.at(-1).cursor);
    await within(10_000, attached(again), 'the subscription attached');
    const requestId = await ask(srv, { sessionId: 'gws-4', message: 'Second question' });
    const events = await within(15_000, back.done, 'the second answer');
    checkAnswer(assert, events, requestId, demoAnswer('en', 'First question', 'Second question'));
    back.unsubscribe();
  } finally {
    await again.dispose();
  }
});

// graphql-sse client in distinct connections mode (its default).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createClient } from 'graphql-sse';
import { CLIENT_KEY, SUBSCRIBE, WRONG_KEY, answered, ask, checkAnswer, collector, demoAnswer, sleep, startServer, within } from './lib.mjs';

let srv;
before(async () => { srv = await startServer(); });
after(async () => { await srv?.stop(); });

function counted() {
  const calls = { n: 0 };
  return { calls, fetchFn: (...args) => { calls.n++; return fetch(...args); } };
}

test('graphql-sse streams the whole answer in order', async () => {
  const { fetchFn } = counted();
  const client = createClient({ url: srv.url, headers: { 'x-api-key': CLIENT_KEY }, fetchFn, retryAttempts: 0 });
  try {
    const c = collector();
    const unsubscribe = client.subscribe({ query: SUBSCRIBE, variables: { sessionId: 'sse-1' } }, {
      next: ({ data, errors }) => { assert.equal(errors, undefined); c.push(data.onSendMessage); },
      error: (err) => assert.fail(`subscription error ${err}`),
      complete: () => {},
    });
    await sleep(200); // the subscription replays from START anyway
    const requestId = await ask(srv, { sessionId: 'sse-1', message: 'Events, please', locale: 'it' });
    const events = await within(15_000, c.done, 'answer');
    checkAnswer(assert, events, requestId, demoAnswer('it', 'Events, please'));
    unsubscribe();
  } finally {
    client.dispose();
  }
});

test('graphql-sse: an answer that ended before the subscription started arrives whole, once', async () => {
  const question = 'Asked before subscribing';
  const requestId = await ask(srv, { sessionId: 'sse-3', message: question, locale: 'fr' });
  await answered(srv, { sessionId: 'sse-3', requestId });
  const client = createClient({ url: srv.url, headers: { 'x-api-key': CLIENT_KEY }, retryAttempts: 0 });
  try {
    const c = collector();
    const unsubscribe = client.subscribe({ query: SUBSCRIBE, variables: { sessionId: 'sse-3' } }, {
      next: ({ data, errors }) => { assert.equal(errors, undefined); c.push(data.onSendMessage); },
      error: (err) => assert.fail(`subscription error ${err}`),
      complete: () => {},
    });
    const events = await within(15_000, c.done, 'the replayed answer');
    checkAnswer(assert, events, requestId, demoAnswer('fr', question));
    unsubscribe();
  } finally {
    client.dispose();
  }
});

test('graphql-sse: a query gets next then complete', async () => {
  const client = createClient({ url: srv.url, headers: { 'x-api-key': CLIENT_KEY }, retryAttempts: 0 });
  try {
    const results = [];
    for await (const r of client.iterate({ query: '{ __typename }' })) results.push(r);
    assert.deepEqual(results, [{ data: { __typename: 'Query' } }]);
  } finally {
    client.dispose();
  }
});

// graphql-sse retries every non-2xx answer (retryAttempts, default 5, with
// backoff); it has no notion of a final 401. With retries off, the refusal
// reaches the sink at once, as a NetworkError carrying the 401 response.
test('graphql-sse: a wrong key fails once with 401', async () => {
  const { calls, fetchFn } = counted();
  const client = createClient({ url: srv.url, headers: { 'x-api-key': WRONG_KEY }, fetchFn, retryAttempts: 0 });
  try {
    const err = await within(10_000, new Promise((resolve) => {
      client.subscribe({ query: SUBSCRIBE, variables: { sessionId: 'sse-2' } }, {
        next: () => assert.fail('data for a wrong key'),
        error: resolve,
        complete: () => resolve(new Error('completed instead of failing')),
      });
    }), 'refusal');
    assert.equal(err?.response?.status, 401, String(err));
    await sleep(1000);
    assert.equal(calls.n, 1, 'the client must not retry a 401');
  } finally {
    client.dispose();
  }
});

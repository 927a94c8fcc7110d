// Apollo Client 4 with aws-appsync-auth-link and
// aws-appsync-subscription-link, API_KEY mode, over TLS (the link derives
// wss://…/graphql/realtime and sends the auth object as a header-…
// subprotocol).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ApolloClient, ApolloLink, HttpLink, InMemoryCache, gql } from '@apollo/client';
import { createAuthLink } from 'aws-appsync-auth-link';
import { createSubscriptionHandshakeLink } from 'aws-appsync-subscription-link';
import WebSocket from 'ws';
import { ASK, CLIENT_KEY, SUBSCRIBE, WRONG_KEY, checkAnswer, collector, countingWebSocket, demoAnswer, sleep, startServer, within } from './lib.mjs';

const { WebSocket: Counting, counter } = countingWebSocket(WebSocket);
globalThis.WebSocket = Counting;

let srv;
before(async () => { srv = await startServer({ tls: true }); });
after(async () => { await srv?.stop(); });

function apollo(apiKey) {
  const config = { url: srv.url, region: 'us-east-1', auth: { type: 'API_KEY', apiKey } };
  const link = ApolloLink.from([
    createAuthLink(config),
    createSubscriptionHandshakeLink(config, new HttpLink({ uri: srv.url })),
  ]);
  return new ApolloClient({ link, cache: new InMemoryCache() });
}

test('Apollo with aws-appsync-subscription-link streams the whole answer in order', async () => {
  const client = apollo(CLIENT_KEY);
  const c = collector();
  const opened = counter.opened;
  const sub = client.subscribe({ query: gql(SUBSCRIBE), variables: { sessionId: 'link-1' } }).subscribe({
    next: ({ data }) => { if (data) c.push(data.onSendMessage); },
    error: (err) => assert.fail(`subscription error ${err}`),
  });
  try {
    const { data } = await client.query({ query: gql(ASK), variables: { input: { sessionId: 'link-1', message: 'Hello AppSync link', locale: 'pt-BR' } }, fetchPolicy: 'no-cache' });
    const events = await within(15_000, c.done, 'answer');
    checkAnswer(assert, events, data.getLlmResponse.requestId, demoAnswer('pt-BR', 'Hello AppSync link'));
    assert.equal(counter.opened - opened, 1);
    const url = new URL(counter.urls.at(-1));
    assert.equal(url.protocol, 'wss:');
    assert.equal(url.pathname, '/graphql/realtime');
  } finally {
    sub.unsubscribe();
    client.stop();
  }
});

test('aws-appsync-subscription-link: a wrong key is refused with no retry', async () => {
  const client = apollo(WRONG_KEY);
  try {
    await counter.allClosed();
    const opened = counter.opened;
    const err = await within(15_000, new Promise((resolve) => {
      client.subscribe({ query: gql(SUBSCRIBE), variables: { sessionId: 'link-2' } }).subscribe({
        next: (r) => { if (r.error) resolve(r.error); else if (r.data) assert.fail('data for a wrong key'); },
        error: resolve,
      });
    }), 'refusal');
    // Apollo 4 wraps the link's error object as the cause.
    assert.equal(err.cause?.errors?.[0]?.message, 'Connection failed: UnauthorizedException');
    await sleep(2000);
    assert.equal(counter.opened - opened, 1, 'the link must not reconnect after a 401');
  } finally {
    client.stop();
  }
});

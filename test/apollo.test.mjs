// Apollo Client 4 with GraphQLWsLink (graphql-ws underneath) for the
// subscription and HttpLink for the question.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ApolloClient, ApolloLink, HttpLink, InMemoryCache, gql } from '@apollo/client';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { getMainDefinition } from '@apollo/client/utilities';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { ASK, CLIENT_KEY, SUBSCRIBE, WRONG_KEY, checkAnswer, collector, demoAnswer, startServer, within } from './lib.mjs';

let srv;
before(async () => { srv = await startServer(); });
after(async () => { await srv?.stop(); });

function apollo(key) {
  const ws = createClient({ url: srv.wsUrl, webSocketImpl: WebSocket, connectionParams: { 'x-api-key': key }, retryAttempts: 0 });
  const http = new HttpLink({ uri: srv.url, headers: { 'x-api-key': key } });
  const link = ApolloLink.split(({ query }) => {
    const def = getMainDefinition(query);
    return def.kind === 'OperationDefinition' && def.operation === 'subscription';
  }, new GraphQLWsLink(ws), http);
  return { client: new ApolloClient({ link, cache: new InMemoryCache() }), ws };
}

test('Apollo Client with GraphQLWsLink streams the whole answer in order', async () => {
  const { client, ws } = apollo(CLIENT_KEY);
  try {
    const c = collector();
    const connected = new Promise((resolve) => ws.on('connected', resolve));
    const sub = client.subscribe({ query: gql(SUBSCRIBE), variables: { sessionId: 'apollo-1' }, fetchPolicy: 'no-cache' }).subscribe({
      next: ({ data, error }) => { assert.equal(error, undefined); c.push(data.onSendMessage); },
      error: (err) => assert.fail(`subscription error ${err}`),
    });
    await connected;
    const { data } = await client.query({ query: gql(ASK), variables: { input: { sessionId: 'apollo-1', message: 'Hello Apollo', locale: 'de-DE' } }, fetchPolicy: 'no-cache' });
    const requestId = data.getLlmResponse.requestId;
    const events = await within(15_000, c.done, 'answer');
    checkAnswer(assert, events, requestId, demoAnswer('de-DE', 'Hello Apollo'));
    sub.unsubscribe();
  } finally {
    client.stop();
    await ws.dispose();
  }
});

test('Apollo Client: a wrong key fails the query with 401 and the subscription with 4403', async () => {
  const { client, ws } = apollo(WRONG_KEY);
  try {
    await assert.rejects(
      client.query({ query: gql(ASK), variables: { input: { sessionId: 'apollo-2', message: 'hi', locale: 'en' } }, fetchPolicy: 'no-cache' }),
      (err) => { assert.match(String(err), /401|API key/); return true; },
    );
    const err = await within(10_000, new Promise((resolve) => {
      client.subscribe({ query: gql(SUBSCRIBE), variables: { sessionId: 'apollo-2' } }).subscribe({
        next: (r) => { if (r.error) resolve(r.error); else assert.fail('data for a wrong key'); },
        error: resolve,
      });
    }), 'refusal');
    assert.match(String(err?.message ?? err) + JSON.stringify(err), /4403|Forbidden/);
  } finally {
    client.stop();
    await ws.dispose();
  }
});

// The AWS sample UI's flow, several times in one session: per question,
// subscribe, ask at once without waiting for start_ack, show events until
// #END_STREAM#, unsubscribe. A follow-up asked right after the previous
// answer ended must get its own answer: the late-join window replays an
// answer that just ended only when no newer question comes within its grace.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { after, before, test } from 'node:test';
import WebSocket from 'ws';
import { ASK, CLIENT_KEY, SUBSCRIBE, checkAnswer, collector, demoAnswer, startServer, within } from './lib.mjs';

globalThis.WebSocket = WebSocket;
const { Amplify, API } = createRequire(import.meta.url)('amplify5');

let srv;
before(async () => { srv = await startServer({ tls: true }); });
after(async () => { await srv?.stop(); });

async function sampleTurn(sessionId, question) {
  const c = collector();
  const sub = API.graphql({ query: SUBSCRIBE, variables: { sessionId } }).subscribe({
    next: ({ value }) => c.push(value.data.onSendMessage),
    error: (err) => assert.fail(`subscription error ${JSON.stringify(err?.error ?? err)}`),
  });
  try {
    const res = await API.graphql({ query: ASK, variables: { input: { sessionId, message: question, locale: 'en_US' } } });
    return { requestId: res.data.getLlmResponse.requestId, events: await within(15_000, c.done, question) };
  } finally {
    sub.unsubscribe();
  }
}

test('each follow-up asked right after the previous answer ended gets its own answer', async () => {
  Amplify.configure({ aws_appsync_graphqlEndpoint: srv.url, aws_appsync_region: 'us-east-1', aws_appsync_authenticationType: 'API_KEY', aws_appsync_apiKey: CLIENT_KEY });
  const asked = [];
  for (const question of ['First', 'Second', 'Third', 'Fourth']) {
    asked.push(question);
    const turn = await sampleTurn('follow', question);
    checkAnswer(assert, turn.events, turn.requestId, demoAnswer('en_US', ...asked));
  }
});

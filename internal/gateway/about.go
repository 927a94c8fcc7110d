package gateway

import (
	"html/template"
	"net/http"
)

var indexPage = template.Must(template.New("index").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>tokencast</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem}pre{background:#f4f4f4;padding:1rem;overflow:auto}@media(prefers-color-scheme:dark){body{background:#111;color:#eee}pre{background:#222}}</style>
</head><body>
<h1>tokencast {{.Version}}</h1>
<p>tokencast turns a streaming LLM into a real-time GraphQL API: ask with a query, and the answer streams token by token to every subscriber of the chat session.</p>
<h2>Ask</h2>
<pre>curl -s http://{{.Host}}/graphql -H 'content-type: application/json'{{if .NeedsKey}} -H 'x-api-key: YOUR_KEY'{{end}} \
  -d '{"query":"query($i:GetLlmResponseInput!){getLlmResponse(input:$i){requestId messages{content}}}","variables":{"i":{"sessionId":"demo-1","message":"Hello","locale":"en"}}}'</pre>
<h2>Watch the answer stream (GraphQL over SSE)</h2>
<pre>curl -N http://{{.Host}}/graphql -H 'content-type: application/json' -H 'accept: text/event-stream'{{if .NeedsKey}} -H 'x-api-key: YOUR_KEY'{{end}} \
  -d '{"query":"subscription{onSendMessage(sessionId:\"demo-1\"){type message index cursor}}"}'</pre>
<p>WebSocket: <code>ws://{{.Host}}/graphql</code> with subprotocol <code>graphql-transport-ws</code> (graphql-ws, Apollo, urql) or <code>graphql-ws</code> (AppSync real-time: Amplify, aws-appsync-subscription-link; legacy subscriptions-transport-ws).</p>
<p>The chat UI is at <a href="/">/</a>. Health: <a href="/healthz">/healthz</a>, readiness: <a href="/readyz">/readyz</a>.</p>
</body></html>
`))

// about shows how to call the API with curl.
func (g *Gateway) about(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = indexPage.Execute(w, map[string]any{
		"Version":  g.d.Version,
		"Host":     r.Host,
		"NeedsKey": !g.d.Policy.Open(),
	})
}

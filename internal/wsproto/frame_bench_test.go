package wsproto

import "testing"

var benchData = []byte(`{"onSendMessage":{"sessionId":"s-1","message":"Hello, this is a token ","type":"DELTA","index":3,"cursor":"42"}}`)

// BenchmarkFrame measures wrapping an already encoded event in each
// dialect's frame: the per-subscriber work of the hot path.
func BenchmarkFrame(b *testing.B) {
	for _, d := range []struct {
		name string
		d    dialect
	}{{"graphql-transport-ws", transportWS{}}, {"appsync", appSync{maxPayload: 240 << 10}}, {"legacy", legacyWS{}}} {
		b.Run(d.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = d.d.frame("subscription-1", benchData)
			}
		})
	}
}

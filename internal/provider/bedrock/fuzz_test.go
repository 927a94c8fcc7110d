package bedrock

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/tokencast/tokencast/internal/chat"
)

// FuzzStream answers ConverseStream with arbitrary event stream bodies: one
// frame of any message type, event type and payload, followed by arbitrary
// bytes (half frames, bad checksums, garbage). Whatever arrives, the provider
// must not panic, must end with either its parts and no error or an error
// carrying a stable code, and every part it emits must be whole: a
// text-carrying part has text, a tool part names a call that was opened and
// not yet closed.
func FuzzStream(f *testing.F) {
	good := func(frames ...frame) []byte { return encodeFrames(frames) }
	seeds := []struct {
		messageType, name, payload string
		tail                       []byte
	}{
		{"event", "messageStart", `{"role":"assistant"}`, good(textDelta("hi"), messageStop("end_turn"), metadata)},
		{"event", "contentBlockDelta", `{"contentBlockIndex":0,"delta":{"text":"x"}}`, nil},
		{"event", "contentBlockDelta", `{"delta":{"toolUse":{"input":"{}"}}}`, good(messageStop("tool_use"))},
		{"event", "messageStop", `{"stopReason":"max_tokens"}`, good(metadata)},
		{"event", "metadata", `{"usage":{"inputTokens":-1,"outputTokens":99999999999}}`, nil},
		{"event", "contentBlockDelta", `{"delta":{"text":7}}`, nil},
		{"exception", "throttlingException", `{"message":"slow down"}`, nil},
		{"exception", "modelStreamErrorException", `{"message":"boom","originalStatusCode":500}`, nil},
		{"exception", "internalServerException", `not json`, nil},
		{"error", "", ``, nil},
		{"event", "unknownEvent", `{}`, []byte{0, 0, 0, 16, 0, 0, 0, 0, 1, 2, 3, 4}},
		{"event", "messageStart", `{"role":"assistant"}`, good(textDelta("cut"))[:20]},
		// Agent runs: tool calls, parallel calls, reasoning, redaction, citations.
		{"event", "contentBlockStart", `{"contentBlockIndex":1,"start":{"toolUse":{"toolUseId":"t1","name":"get_weather"}}}`,
			good(inputAt(1, `{"city":`), inputAt(1, `"Paris"}`), blockStopAt(1), messageStop("tool_use"), metadata)},
		{"event", "contentBlockStart", `{"contentBlockIndex":0,"start":{"toolUse":{"toolUseId":"a","name":"x"}}}`,
			good(toolUseAt(1, "b", "y"), inputAt(1, `{}`), inputAt(0, `{"k":1}`), blockStopAt(0), blockStopAt(1), messageStop("tool_use"))},
		{"event", "contentBlockDelta", `{"contentBlockIndex":0,"delta":{"reasoningContent":{"text":"hmm"}}}`,
			good(reasoningAt(0, `{"signature":"`+testSignature+`"}`), blockStopAt(0), redactedAt(1, testRedacted), messageStop("end_turn"))},
		{"event", "contentBlockDelta", `{"contentBlockIndex":0,"delta":{"reasoningContent":{"redactedContent":"!!not base64"}}}`, good(messageStop("end_turn"))},
		{"event", "contentBlockDelta", `{"contentBlockIndex":0,"delta":{"citation":{"title":"t","sourceContent":[{"text":"c"}],"location":{"web":{"url":"https://example.com"}}}}}`,
			good(textAt(0, "x"), messageStop("end_turn"))},
		{"event", "contentBlockStart", `{"contentBlockIndex":3,"start":{"toolUse":{"name":"no id"}}}`, good(inputAt(3, "{}"), messageStop("tool_use"))},
	}
	for _, s := range seeds {
		f.Add(s.messageType, s.name, s.payload, s.tail)
	}
	var body atomic.Pointer[[]byte]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/vnd.amazon.eventstream")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(*body.Load())
	}))
	defer srv.Close()
	f.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	f.Setenv("AWS_BEARER_TOKEN_BEDROCK", "")
	p, err := New(context.Background(), Options{
		Region: "us-east-1", BaseEndpoint: srv.URL, HTTPClient: srv.Client(), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider(testKeyID, testSecret, ""),
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, messageType, name, payload string, tail []byte) {
		typeHeader := ":event-type"
		if messageType == "exception" {
			typeHeader = ":exception-type"
		}
		data := encodeFrames(nil)
		msg := eventstream.Message{Headers: eventstream.Headers{
			{Name: ":message-type", Value: eventstream.StringValue(messageType)},
			{Name: typeHeader, Value: eventstream.StringValue(name)},
			{Name: ":content-type", Value: eventstream.StringValue("application/json")},
		}, Payload: []byte(payload)}
		if b, err := encodeMessage(msg); err == nil {
			data = append(data, b...)
		}
		data = append(data, tail...)
		body.Store(&data)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		open := map[string]int{}
		_, err := p.Stream(ctx, chat.Prompt{Model: modelID, Messages: []chat.Message{{Role: chat.RoleUser, Text: "q"}}}, func(pt chat.Part) error {
			checkPart(t, open, pt)
			return nil
		})
		if err == nil {
			return
		}
		var ce *chat.Error
		if !errors.As(err, &ce) || ce.Code == "" || ce.Message == "" {
			t.Fatalf("error without a stable code: %v", err)
		}
	})
}

// checkPart fails t unless pt is whole; open counts the calls opened and
// not yet closed.
func checkPart(t *testing.T, open map[string]int, pt chat.Part) {
	t.Helper()
	switch pt.Kind {
	case chat.PartText, chat.PartReasoning, chat.PartSignature:
		if pt.Text == "" {
			t.Fatalf("emitted an empty part of kind %d", pt.Kind)
		}
	case chat.PartRedacted:
		if len(pt.Data) == 0 {
			t.Fatal("emitted empty redacted reasoning")
		}
	case chat.PartToolStart:
		if pt.CallID == "" {
			t.Fatal("opened a call without an id")
		}
		open[pt.CallID]++
	case chat.PartToolDelta:
		if open[pt.CallID] == 0 || pt.Text == "" {
			t.Fatalf("delta %q of call %q, which is not open", pt.Text, pt.CallID)
		}
	case chat.PartToolEnd:
		if open[pt.CallID] == 0 {
			t.Fatalf("closed call %q, which is not open", pt.CallID)
		}
		open[pt.CallID]--
	case chat.PartSource:
		if pt.Source == nil || *pt.Source == (chat.Source{}) {
			t.Fatal("emitted an empty source")
		}
	default:
		t.Fatalf("emitted a part of unknown kind %d", pt.Kind)
	}
}

func encodeMessage(msg eventstream.Message) ([]byte, error) {
	var buf bytesBuffer
	err := eventstream.NewEncoder().Encode(&buf, msg)
	return buf, err
}

// bytesBuffer is an io.Writer appending to a byte slice.
type bytesBuffer []byte

func (b *bytesBuffer) Write(p []byte) (int, error) { *b = append(*b, p...); return len(p), nil }

// encodeFrames is encode without a *testing.T, for fuzz seeds.
func encodeFrames(frames []frame) []byte {
	var out []byte
	for _, f := range frames {
		typeHeader := ":event-type"
		if f.messageType == "exception" {
			typeHeader = ":exception-type"
		}
		b, err := encodeMessage(eventstream.Message{Headers: eventstream.Headers{
			{Name: ":message-type", Value: eventstream.StringValue(f.messageType)},
			{Name: typeHeader, Value: eventstream.StringValue(f.name)},
			{Name: ":content-type", Value: eventstream.StringValue("application/json")},
		}, Payload: []byte(f.payload)})
		if err != nil {
			panic(err)
		}
		out = append(out, b...)
	}
	return out
}

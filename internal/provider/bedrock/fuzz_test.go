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
// must not panic and must end with either its text and no error or an error
// carrying a stable code.
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
		_, err := p.Stream(ctx, chat.Prompt{Model: modelID, Messages: []chat.Message{{Role: chat.RoleUser, Text: "q"}}}, func(chat.Part) error { return nil })
		if err == nil {
			return
		}
		var ce *chat.Error
		if !errors.As(err, &ce) || ce.Code == "" || ce.Message == "" {
			t.Fatalf("error without a stable code: %v", err)
		}
	})
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

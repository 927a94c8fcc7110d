// Package anthropic streams answers from Anthropic's Messages API.
package anthropic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/provider/upstream"
)

// name prefixes the log-side text of this provider's errors.
const name = "anthropic"

// DefaultBaseURL is Anthropic's own API.
const DefaultBaseURL = "https://api.anthropic.com"

// APIVersion is the anthropic-version header this client speaks.
const APIVersion = "2023-06-01"

// DefaultMaxTokens is sent when Options.MaxTokens is 0: the API requires a cap.
const DefaultMaxTokens = 1024

// Options configure a Provider.
type Options struct {
	// BaseURL is the API root: requests go to BaseURL + "/v1/messages".
	BaseURL string
	// APIKey is sent in the x-api-key header.
	APIKey string
	// HTTPClient sends the requests; nil uses http.DefaultClient. Its Timeout
	// must be zero or longer than any answer: ctx bounds each call instead.
	HTTPClient *http.Client
	// MaxTokens caps the answer's length; 0 means DefaultMaxTokens.
	MaxTokens int
	// Temperature is sent when set.
	Temperature *float64
}

// FromEnv reads Anthropic's usual variables: ANTHROPIC_BASE_URL (default
// DefaultBaseURL) and ANTHROPIC_API_KEY, which is required.
func FromEnv(getenv func(string) string) (Options, error) {
	opts := Options{BaseURL: getenv("ANTHROPIC_BASE_URL"), APIKey: getenv("ANTHROPIC_API_KEY")}
	if opts.BaseURL == "" {
		opts.BaseURL = DefaultBaseURL
	}
	if err := upstream.CheckBaseURL(opts.BaseURL); err != nil {
		return Options{}, fmt.Errorf("ANTHROPIC_BASE_URL: %w", err)
	}
	if opts.APIKey == "" {
		return Options{}, errors.New("ANTHROPIC_API_KEY is not set")
	}
	return opts, nil
}

// Provider streams Messages API answers. It is safe for concurrent use.
type Provider struct {
	opts   Options
	client *http.Client
}

// New returns a provider for opts.
func New(opts Options) (*Provider, error) {
	if err := upstream.CheckBaseURL(opts.BaseURL); err != nil {
		return nil, fmt.Errorf("anthropic base URL: %w", err)
	}
	opts.BaseURL = strings.TrimRight(opts.BaseURL, "/")
	if opts.MaxTokens <= 0 {
		opts.MaxTokens = DefaultMaxTokens
	}
	return &Provider{opts: opts, client: upstream.Client(opts.HTTPClient)}, nil
}

type message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type request struct {
	Model       string    `json:"model"`
	MaxTokens   int       `json:"max_tokens"`
	System      string    `json:"system,omitempty"`
	Messages    []message `json:"messages"`
	Stream      bool      `json:"stream"`
	Temperature *float64  `json:"temperature,omitempty"`
}

// Stream asks for an answer to p and emits its text as it arrives.
// Cancelling ctx cancels the upstream request, also before its first byte.
func (p *Provider) Stream(ctx context.Context, prompt chat.Prompt, emit func(chat.Part) error) (chat.Final, error) {
	req, err := p.newRequest(ctx, prompt)
	if err != nil {
		return chat.Final{}, err
	}
	return upstream.Stream(ctx, name, p.client, req, func(body io.Reader) (chat.Final, error) {
		return decode(body, emit)
	})
}

func (p *Provider) newRequest(ctx context.Context, prompt chat.Prompt) (*http.Request, error) {
	body := request{
		Model:       prompt.Model,
		MaxTokens:   p.opts.MaxTokens,
		System:      prompt.System,
		Stream:      true,
		Temperature: p.opts.Temperature,
	}
	for _, m := range prompt.Messages {
		body.Messages = append(body.Messages, message{Role: string(m.Role), Content: m.Text})
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("anthropic: encode request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.opts.BaseURL+"/v1/messages", bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("anthropic: new request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("anthropic-version", APIVersion)
	req.Header.Set("x-api-key", p.opts.APIKey)
	return req, nil
}

// usage is the token count of message_start's message and of message_delta.
type usage struct {
	InputTokens              int `json:"input_tokens"`
	OutputTokens             int `json:"output_tokens"`
	CacheCreationInputTokens int `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int `json:"cache_read_input_tokens"`
}

// input counts every input token the answer cost, cached or not.
func (u usage) input() int {
	return u.InputTokens + u.CacheCreationInputTokens + u.CacheReadInputTokens
}

// event is any Messages stream event; the fields its type does not use stay
// empty.
type event struct {
	Type    string `json:"type"`
	Message struct {
		Usage usage `json:"usage"`
	} `json:"message"`
	Delta struct {
		Type       string `json:"type"`
		Text       string `json:"text"`
		StopReason string `json:"stop_reason"`
	} `json:"delta"`
	Usage *usage `json:"usage"`
	Error struct {
		Type string `json:"type"`
	} `json:"error"`
}

// decode reads a Messages event stream, emitting text deltas. The answer is
// complete only once message_stop arrived.
func decode(body io.Reader, emit func(chat.Part) error) (chat.Final, error) {
	events := upstream.NewSSEReader(body, upstream.MaxEventBytes)
	var final chat.Final
	for {
		sse, err := events.Next()
		if errors.Is(err, io.EOF) {
			return chat.Final{}, &upstream.Error{Provider: name, Code: upstream.CodeIncomplete, Message: upstream.MsgIncomplete,
				Cause: errors.New("stream ended without message_stop")}
		}
		if err != nil {
			return chat.Final{}, upstream.ReadError(name, err)
		}
		var ev event
		if err := json.Unmarshal(sse.Data, &ev); err != nil {
			if sse.Name == "error" {
				return chat.Final{}, streamError("", sse.Data)
			}
			return chat.Final{}, &upstream.Error{Provider: name, Code: chat.CodeProvider, Message: upstream.MsgFailed,
				Cause: fmt.Errorf("decode %s event: %w", sse.Name, err)}
		}
		if ev.Type == "" {
			ev.Type = sse.Name
		}
		switch ev.Type {
		case "message_start":
			final.Usage.InputTokens = ev.Message.Usage.input()
			final.Usage.OutputTokens = ev.Message.Usage.OutputTokens
		case "content_block_delta":
			if ev.Delta.Type == "text_delta" && ev.Delta.Text != "" {
				if err := emit(chat.TextPart(ev.Delta.Text)); err != nil {
					return chat.Final{}, fmt.Errorf("anthropic: deliver delta: %w", err)
				}
			}
		case "message_delta":
			if ev.Delta.StopReason != "" {
				final.StopReason = ev.Delta.StopReason
			}
			if ev.Usage != nil {
				// Counts here are cumulative: they replace, never add.
				final.Usage.OutputTokens = ev.Usage.OutputTokens
				if in := ev.Usage.input(); in > 0 {
					final.Usage.InputTokens = in
				}
			}
		case "message_stop":
			final.Usage.TotalTokens = final.Usage.InputTokens + final.Usage.OutputTokens
			return final, nil
		case "error":
			return chat.Final{}, streamError(ev.Error.Type, sse.Data)
		}
		// ping, content_block_start/stop and event types added later carry
		// nothing the answer needs.
	}
}

// streamError maps an error event: a rate limit is throttling, an overload
// or an internal error of the API means try again later, anything else is
// a provider failure.
func streamError(errType string, raw []byte) *upstream.Error {
	e := &upstream.Error{Provider: name, Cause: fmt.Errorf("error event: %s", raw)}
	switch errType {
	case "rate_limit_error":
		e.Code, e.Message = upstream.CodeThrottled, upstream.MsgThrottled
	case "overloaded_error":
		e.Code, e.Message = upstream.CodeUnavailable, upstream.MsgOverloaded
	case "api_error":
		e.Code, e.Message = upstream.CodeUnavailable, upstream.MsgUnavailable
	default:
		e.Code, e.Message = chat.CodeProvider, upstream.MsgFailed
	}
	return e
}

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

// DefaultMaxTokens is sent when Options.MaxTokens is 0: the API requires a
// cap. With thinking on it is the room left for the answer beyond the
// thinking budget.
const DefaultMaxTokens = 1024

// MinThinkingBudget is the smallest thinking budget the API accepts.
const MinThinkingBudget = 1024

// Options configure a Provider.
type Options struct {
	// BaseURL is the API root: requests go to BaseURL + "/v1/messages".
	BaseURL string
	// APIKey is sent in the x-api-key header.
	APIKey string
	// HTTPClient sends the requests; nil uses the providers' shared client
	// (upstream.Client), whose pool keeps many connections per host. Its Timeout
	// must be zero or longer than any answer: ctx bounds each call instead.
	HTTPClient *http.Client
	// MaxTokens caps the answer's length, thinking included; 0 means
	// DefaultMaxTokens, plus ThinkingBudget when thinking is on.
	MaxTokens int
	// Temperature is sent when set. The API allows none but 1 with
	// thinking on.
	Temperature *float64
	// ThinkingBudget turns extended thinking on: the model may reason for up
	// to this many tokens (at least MinThinkingBudget, less than MaxTokens)
	// before it answers, and its reasoning streams as chat.PartReasoning.
	// 0 leaves thinking off.
	ThinkingBudget int
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
		opts.MaxTokens = DefaultMaxTokens + max(opts.ThinkingBudget, 0)
	}
	if err := checkThinking(opts); err != nil {
		return nil, fmt.Errorf("anthropic: %w", err)
	}
	return &Provider{opts: opts, client: upstream.Client(opts.HTTPClient)}, nil
}

// checkThinking refuses, when the server starts, what the API would refuse
// on every call.
func checkThinking(opts Options) error {
	switch budget := opts.ThinkingBudget; {
	case budget == 0:
		return nil
	case budget < MinThinkingBudget:
		return fmt.Errorf("thinking budget %d is below the API's minimum of %d tokens", budget, MinThinkingBudget)
	case opts.MaxTokens <= budget:
		return fmt.Errorf("max tokens %d must be larger than the thinking budget %d", opts.MaxTokens, budget)
	case opts.Temperature != nil && *opts.Temperature != 1:
		return errors.New("a temperature other than 1 cannot be set with thinking on")
	}
	return nil
}

// Stream asks for an answer to p and emits its parts as they arrive.
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
	if p.opts.ThinkingBudget > 0 {
		body.Thinking = &thinking{Type: "enabled", BudgetTokens: p.opts.ThinkingBudget}
	}
	var err error
	if len(prompt.Tools) > 0 {
		if body.Tools, err = tools(prompt.Tools); err != nil {
			return nil, fmt.Errorf("anthropic: %w", err)
		}
	}
	for _, m := range prompt.Messages {
		c, err := content(m)
		if err != nil {
			return nil, fmt.Errorf("anthropic: %w", err)
		}
		body.Messages = append(body.Messages, message{Role: string(m.Role), Content: c})
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

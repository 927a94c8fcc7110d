// Package openai streams answers from an OpenAI-compatible chat completions
// endpoint: OpenAI itself, Azure OpenAI, and the servers that speak its
// dialect (Ollama, vLLM, llama.cpp, LM Studio, Groq, OpenRouter).
package openai

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/provider/upstream"
)

// name prefixes the log-side text of this provider's errors.
const name = "openai"

// DefaultBaseURL is OpenAI's own API.
const DefaultBaseURL = "https://api.openai.com/v1"

// DefaultAzureAPIVersion is the Azure OpenAI API version used when
// AZURE_OPENAI_API_VERSION is not set.
const DefaultAzureAPIVersion = "2024-10-21"

// Options configure a Provider.
type Options struct {
	// BaseURL is the API root: requests go to BaseURL + "/chat/completions"
	// (for Azure, the resource endpoint, e.g. https://NAME.openai.azure.com).
	BaseURL string
	// APIKey is sent as "Authorization: Bearer" (Azure: the api-key header);
	// empty sends none, for local servers that need none.
	APIKey string
	// Azure switches to Azure OpenAI: the prompt's model names the
	// deployment, the path is /openai/deployments/{model}/chat/completions
	// and the key travels in the api-key header.
	Azure bool
	// APIVersion is Azure's api-version query parameter; required with Azure.
	APIVersion string
	// HTTPClient sends the requests; nil uses the providers' shared client
	// (upstream.Client), whose pool keeps many connections per host. Its Timeout
	// must be zero or longer than any answer: ctx bounds each call instead.
	HTTPClient *http.Client
	// MaxTokens caps the answer's length (max_tokens); 0 leaves it to the
	// server.
	MaxTokens int
	// Temperature is sent when set.
	Temperature *float64
}

// FromEnv reads OpenAI's usual variables: OPENAI_BASE_URL (default
// DefaultBaseURL) and OPENAI_API_KEY, which is required only for the default
// base URL (local servers usually need no key).
func FromEnv(getenv func(string) string) (Options, error) {
	opts := Options{BaseURL: getenv("OPENAI_BASE_URL"), APIKey: getenv("OPENAI_API_KEY")}
	if opts.BaseURL == "" {
		opts.BaseURL = DefaultBaseURL
	}
	if err := upstream.CheckBaseURL(opts.BaseURL); err != nil {
		return Options{}, fmt.Errorf("OPENAI_BASE_URL: %w", err)
	}
	if opts.APIKey == "" && strings.TrimRight(opts.BaseURL, "/") == DefaultBaseURL {
		return Options{}, errors.New("OPENAI_API_KEY is not set")
	}
	return opts, nil
}

// AzureFromEnv reads Azure OpenAI's usual variables: AZURE_OPENAI_ENDPOINT and
// AZURE_OPENAI_API_KEY (both required) and AZURE_OPENAI_API_VERSION (default
// DefaultAzureAPIVersion).
func AzureFromEnv(getenv func(string) string) (Options, error) {
	opts := Options{
		BaseURL:    getenv("AZURE_OPENAI_ENDPOINT"),
		APIKey:     getenv("AZURE_OPENAI_API_KEY"),
		Azure:      true,
		APIVersion: getenv("AZURE_OPENAI_API_VERSION"),
	}
	if opts.APIVersion == "" {
		opts.APIVersion = DefaultAzureAPIVersion
	}
	switch {
	case opts.BaseURL == "":
		return Options{}, errors.New("AZURE_OPENAI_ENDPOINT is not set")
	case opts.APIKey == "":
		return Options{}, errors.New("AZURE_OPENAI_API_KEY is not set")
	}
	if err := upstream.CheckBaseURL(opts.BaseURL); err != nil {
		return Options{}, fmt.Errorf("AZURE_OPENAI_ENDPOINT: %w", err)
	}
	return opts, nil
}

// Provider streams chat completions. It is safe for concurrent use.
type Provider struct {
	opts   Options
	client *http.Client
}

// New returns a provider for opts.
func New(opts Options) (*Provider, error) {
	if err := upstream.CheckBaseURL(opts.BaseURL); err != nil {
		return nil, fmt.Errorf("openai base URL: %w", err)
	}
	if opts.Azure && opts.APIVersion == "" {
		return nil, errors.New("openai: Azure needs an API version")
	}
	opts.BaseURL = strings.TrimRight(opts.BaseURL, "/")
	return &Provider{opts: opts, client: upstream.Client(opts.HTTPClient)}, nil
}

// Stream asks for a completion of prompt and emits its reasoning, text and
// tool calls as they arrive.
// Cancelling ctx cancels the upstream request, also before its first byte.
func (p *Provider) Stream(ctx context.Context, prompt chat.Prompt, emit func(chat.Part) error) (chat.Final, error) {
	req, err := p.newRequest(ctx, prompt)
	if err != nil {
		return chat.Final{}, err
	}
	taken := takenCallIDs(prompt.Messages)
	return upstream.Stream(ctx, name, p.client, req, func(body io.Reader) (chat.Final, error) {
		return decode(body, taken, emit)
	})
}

func (p *Provider) newRequest(ctx context.Context, prompt chat.Prompt) (*http.Request, error) {
	body := request{
		Model:         prompt.Model,
		Messages:      messages(prompt),
		Tools:         tools(prompt.Tools),
		Stream:        true,
		StreamOptions: streamOptions{IncludeUsage: true},
		MaxTokens:     p.opts.MaxTokens,
		Temperature:   p.opts.Temperature,
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("openai: encode request: %w", err)
	}
	endpoint := p.opts.BaseURL + "/chat/completions"
	if p.opts.Azure {
		endpoint = p.opts.BaseURL + "/openai/deployments/" + url.PathEscape(prompt.Model) +
			"/chat/completions?api-version=" + url.QueryEscape(p.opts.APIVersion)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("openai: new request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	switch {
	case p.opts.APIKey == "":
	case p.opts.Azure:
		req.Header.Set("api-key", p.opts.APIKey)
	default:
		req.Header.Set("Authorization", "Bearer "+p.opts.APIKey)
	}
	return req, nil
}

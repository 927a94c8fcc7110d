// Package ollama streams answers from Ollama's native chat API
// (POST /api/chat, newline-delimited JSON). Ollama also speaks the OpenAI
// dialect at /v1, which the openai provider covers; this one reads Ollama's
// own token counts and errors.
package ollama

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/provider/upstream"
)

const name = "ollama"

// DefaultHost is where Ollama listens unless OLLAMA_HOST says otherwise.
const DefaultHost = "http://127.0.0.1:11434"

// Options configure a Provider.
type Options struct {
	// BaseURL is the server root: requests go to BaseURL + "/api/chat".
	BaseURL string
	// HTTPClient sends the requests; nil uses the providers' shared client
	// (upstream.Client), whose pool keeps many connections per host. ctx, not a
	// client timeout, bounds each call.
	HTTPClient *http.Client
	// MaxTokens caps the answer (num_predict); 0 leaves it to the model.
	MaxTokens int
	// Temperature is sent when set.
	Temperature *float64
}

// FromEnv reads OLLAMA_HOST as Ollama's own CLI does: a URL, or host:port.
func FromEnv(getenv func(string) string) (Options, error) {
	host := strings.TrimSpace(getenv("OLLAMA_HOST"))
	if host == "" {
		host = DefaultHost
	}
	if !strings.Contains(host, "://") {
		host = "http://" + host
	}
	if err := upstream.CheckBaseURL(host); err != nil {
		return Options{}, fmt.Errorf("OLLAMA_HOST: %w", err)
	}
	return Options{BaseURL: strings.TrimRight(host, "/")}, nil
}

// Provider is an Ollama server.
type Provider struct {
	opts   Options
	client *http.Client
}

// New returns a provider for opts.
func New(opts Options) (*Provider, error) {
	if err := upstream.CheckBaseURL(opts.BaseURL); err != nil {
		return nil, fmt.Errorf("ollama base URL: %w", err)
	}
	return &Provider{opts: opts, client: upstream.Client(opts.HTTPClient)}, nil
}

// Stream asks for an answer to prompt and emits its reasoning, text and
// tool calls as they arrive.
func (p *Provider) Stream(ctx context.Context, prompt chat.Prompt, emit func(chat.Part) error) (chat.Final, error) {
	body := request{Model: prompt.Model, Messages: messages(prompt), Stream: true, Tools: tools(prompt.Tools)}
	if p.opts.MaxTokens > 0 || p.opts.Temperature != nil {
		body.Options = map[string]any{}
		if p.opts.MaxTokens > 0 {
			body.Options["num_predict"] = p.opts.MaxTokens
		}
		if p.opts.Temperature != nil {
			body.Options["temperature"] = *p.opts.Temperature
		}
	}
	data, err := json.Marshal(body)
	if err != nil {
		return chat.Final{}, fmt.Errorf("ollama: encode request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.opts.BaseURL+"/api/chat", bytes.NewReader(data))
	if err != nil {
		return chat.Final{}, fmt.Errorf("ollama: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	taken := takenCallIDs(prompt.Messages)
	return upstream.Stream(ctx, name, p.client, req, func(r io.Reader) (chat.Final, error) {
		return decode(r, taken, emit)
	})
}

package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"text/template"

	"github.com/goccy/go-yaml"

	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/config"
	"github.com/tokencast/tokencast/internal/orchestrator"
	"github.com/tokencast/tokencast/internal/provider/anthropic"
	"github.com/tokencast/tokencast/internal/provider/bedrock"
	"github.com/tokencast/tokencast/internal/provider/demo"
	"github.com/tokencast/tokencast/internal/provider/ollama"
	"github.com/tokencast/tokencast/internal/provider/openai"
	"github.com/tokencast/tokencast/internal/tools"
)

// modelFile is the --config file: named models and their parameters, and
// keys (beside those of the environment).
type modelFile struct {
	// APIKeys and ServiceKeys are read like TOKENCAST_API_KEYS and
	// TOKENCAST_SERVICE_KEYS; "name:sha256:<hex>" keeps only a hash here.
	APIKeys     []string `yaml:"api_keys"`
	ServiceKeys []string `yaml:"service_keys"`
	// PublicKeys are client keys public by design (browser-embedded),
	// read like TOKENCAST_PUBLIC_KEYS: limits count per client address.
	PublicKeys []string `yaml:"public_keys"`
	// DefaultModel names the model used when a request names none
	// (--model wins over it).
	DefaultModel string `yaml:"default_model"`
	// SystemPrompt is the default system prompt template.
	SystemPrompt *string `yaml:"system_prompt"`
	// Models by the name clients use.
	Models map[string]modelEntry `yaml:"models"`
	// MCPServers are where agent models' tools come from, by name.
	MCPServers map[string]mcpServerEntry `yaml:"mcp_servers"`
	// Tools are how tools may be run, by "server.tool".
	Tools map[string]toolPolicyEntry `yaml:"tools"`
	// Usage is prices, budgets and the usage metrics' labels (usage.go).
	Usage usageEntry `yaml:"usage"`
}

// mcpServerEntry is an MCP server reached over Streamable HTTP. Header
// values name environment variables as ${NAME}: secrets stay out of the
// file, and never come from a client.
type mcpServerEntry struct {
	URL     string            `yaml:"url"`
	Headers map[string]string `yaml:"headers"`
}

// toolPolicyEntry is how a tool may be run.
type toolPolicyEntry struct {
	// Approval "required": a person approves each call.
	Approval string `yaml:"approval"`
	// Idempotent false: a call that may have run already is not run again
	// without approval.
	Idempotent *bool  `yaml:"idempotent"`
	Timeout    string `yaml:"timeout"`
}

type modelEntry struct {
	// Ref is "provider:model-id".
	Ref          string   `yaml:"ref"`
	MaxTokens    int      `yaml:"max_tokens"`
	Temperature  *float64 `yaml:"temperature"`
	SystemPrompt *string  `yaml:"system_prompt"`
	Fallbacks    []string `yaml:"fallbacks"`
	// Tools the model may call, as "server.tool" or "server.*"; the demo
	// model has builtin.* unless it names its own.
	Tools []string `yaml:"tools"`
	// ThinkingBudget turns on extended thinking (Anthropic, Bedrock's
	// Claude) with this many tokens; 0 is off.
	ThinkingBudget int `yaml:"thinking_budget"`
}

// readConfigFile reads --config; no file is an empty one. Unknown keys are
// warned about, not refused.
func readConfigFile(path string, log *slog.Logger) (modelFile, error) {
	file := modelFile{}
	if path == "" {
		return file, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return file, fmt.Errorf("--config: %w", err)
	}
	if err := yaml.UnmarshalWithOptions(data, &file, yaml.Strict()); err != nil {
		log.Warn("config file has keys tokencast does not know; they are ignored", "file", path, "err", yaml.FormatError(err, false, false))
		file = modelFile{}
		if err := yaml.Unmarshal(data, &file); err != nil {
			return file, fmt.Errorf("--config %s: %w", path, err)
		}
	}
	return file, nil
}

// languages names the language of a locale in the system prompt.
var languages = map[string]string{
	"en": "English", "fr": "French", "de": "German", "es": "Spanish", "it": "Italian",
	"pt": "Portuguese", "nl": "Dutch", "ja": "Japanese", "zh": "Chinese", "ko": "Korean",
	"ru": "Russian", "ar": "Arabic", "hi": "Hindi", "pl": "Polish", "sv": "Swedish", "tr": "Turkish",
}

// models builds the configured models: those of the --config file, the
// --model default (a bare "provider:model-id" needs no file), the demo model,
// and those of opts. It returns them by name, the names clients may
// ask for, and the default's name.
func models(ctx context.Context, p config.Providers, getenv func(string) string, file modelFile, opts Options, reg *tools.Registry, policies map[string]orchestrator.ToolPolicy) (map[string]orchestrator.Model, []string, string, error) {
	defaultName := cmp(p.Model, file.DefaultModel, DefaultModel)
	entries := file.Models
	if entries == nil {
		entries = map[string]modelEntry{}
	}
	if _, ok := entries[DefaultModel]; !ok {
		entries[DefaultModel] = modelEntry{Ref: DefaultModel}
	}
	if _, ok := entries[defaultName]; !ok {
		// --model openai:gpt-4o-mini names a model by its reference.
		entries[defaultName] = modelEntry{Ref: defaultName}
	}
	prompt := p.SystemPrompt
	if file.SystemPrompt != nil {
		prompt = *file.SystemPrompt
	}

	out := make(map[string]orchestrator.Model, len(entries)+len(opts.Models))
	var errs []error
	for name, e := range entries {
		m, err := buildModel(ctx, p.Demo, getenv, e, cmpPtr(e.SystemPrompt, prompt))
		if err != nil {
			errs = append(errs, fmt.Errorf("model %q (%s): %w", name, e.Ref, err))
			continue
		}
		for _, f := range e.Fallbacks {
			if _, ok := entries[f]; !ok {
				errs = append(errs, fmt.Errorf("model %q: fallback %q is not a configured model", name, f))
			}
		}
		if m.Tools, m.ToolRefs, err = modelTools(reg, e); err != nil {
			errs = append(errs, fmt.Errorf("model %q: tools: %w", name, err))
		}
		m.Policies = policies
		out[name] = m
	}
	for name, p := range opts.Models {
		_, id, _ := strings.Cut(name, ":")
		m := orchestrator.Model{Ref: name, ID: id, Provider: p, Policies: policies}
		// No Ref in the entry: an extra model named demo:… does not get
		// the demo model's tools unasked.
		var err error
		if m.Tools, m.ToolRefs, err = modelTools(reg, modelEntry{Tools: opts.ModelTools[name]}); err != nil {
			errs = append(errs, fmt.Errorf("model %q: tools: %w", name, err))
		}
		out[name] = m
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, "", err
	}
	names := make([]string, 0, len(out))
	for name := range out {
		names = append(names, name)
	}
	slices.Sort(names)
	return out, names, defaultName, nil
}

// buildModel makes the provider a model reference names.
func buildModel(ctx context.Context, demoPace config.Demo, getenv func(string) string, e modelEntry, systemPrompt string) (orchestrator.Model, error) {
	provider, id, ok := strings.Cut(e.Ref, ":")
	if !ok || id == "" {
		return orchestrator.Model{}, errors.New(`a model reference is "provider:model-id", e.g. openai:gpt-4o-mini`)
	}
	system, err := systemTemplate(systemPrompt)
	if err != nil {
		return orchestrator.Model{}, err
	}
	m := orchestrator.Model{Ref: e.Ref, ID: id, System: system, Fallbacks: e.Fallbacks}
	if e.ThinkingBudget != 0 && provider != "anthropic" && provider != "bedrock" {
		return m, errors.New("thinking_budget applies to anthropic and bedrock models only")
	}
	switch provider {
	case "demo":
		m.Provider = &demo.Provider{TTFT: demoPace.TTFT, TokenInterval: demoPace.TokenInterval, Repeat: demoPace.Repeat}
	case "openai", "azure":
		read := openai.FromEnv
		if provider == "azure" {
			read = openai.AzureFromEnv
		}
		opts, err := read(getenv)
		if err != nil {
			return m, err
		}
		opts.MaxTokens, opts.Temperature = e.MaxTokens, e.Temperature
		m.Provider, err = openai.New(opts)
		if err != nil {
			return m, err
		}
	case "anthropic":
		opts, err := anthropic.FromEnv(getenv)
		if err != nil {
			return m, err
		}
		opts.MaxTokens, opts.Temperature, opts.ThinkingBudget = e.MaxTokens, e.Temperature, e.ThinkingBudget
		m.Provider, err = anthropic.New(opts)
		if err != nil {
			return m, err
		}
	case "ollama":
		opts, err := ollama.FromEnv(getenv)
		if err != nil {
			return m, err
		}
		opts.MaxTokens, opts.Temperature = e.MaxTokens, e.Temperature
		m.Provider, err = ollama.New(opts)
		if err != nil {
			return m, err
		}
	case "bedrock":
		opts, err := bedrock.FromEnv(getenv)
		if err != nil {
			return m, err
		}
		// The orchestrator retries before the first token itself.
		opts.MaxTokens, opts.Temperature, opts.RetryMaxAttempts, opts.ThinkingBudget = e.MaxTokens, e.Temperature, 1, e.ThinkingBudget
		m.Provider, err = bedrock.New(ctx, opts)
		if err != nil {
			return m, err
		}
	default:
		return m, fmt.Errorf("unknown provider %q: want bedrock, openai, azure, anthropic, ollama or demo", provider)
	}
	return m, nil
}

// systemTemplate compiles a system prompt template; {{.Locale}} and
// {{.Language}} name the user's locale and its language.
func systemTemplate(text string) (func(locale string) string, error) {
	if strings.TrimSpace(text) == "" {
		return nil, nil
	}
	t, err := template.New("system").Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("system prompt template: %w", err)
	}
	render := func(locale string) (string, error) {
		name, ok := languages[chat.Language(locale)]
		if !ok {
			name = locale
		}
		var b bytes.Buffer
		err := t.Execute(&b, struct{ Locale, Language string }{locale, name})
		return b.String(), err
	}
	if _, err := render("en"); err != nil {
		return nil, fmt.Errorf("system prompt template: %w", err)
	}
	return func(locale string) string {
		s, _ := render(locale)
		return s
	}, nil
}

func cmp(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}

func cmpPtr(p *string, fallback string) string {
	if p != nil {
		return *p
	}
	return fallback
}

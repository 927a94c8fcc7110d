package config

import (
	"flag"
	"time"
)

// Providers is which models answer: the default model, the --config file
// that names models, the default system prompt, and the demo model's pace.
// Each provider's own settings come from its usual environment variables.
type Providers struct {
	Model        string
	ConfigFile   string
	SystemPrompt string
	Demo         Demo
}

// Demo is the pace of the built-in demo model.
type Demo struct {
	TTFT          time.Duration
	TokenInterval time.Duration
	Repeat        int
}

func (p *Providers) flags(fs *flag.FlagSet) {
	fs.StringVar(&p.Model, "model", "", `default model, a name from --config or a reference "provider:model-id" (bedrock:…, openai:…, azure:…, anthropic:…, ollama:…, demo:default); default: the config file's default_model, else demo:default`)
	fs.StringVar(&p.ConfigFile, "config", "", "YAML file declaring named models (ref, max_tokens, temperature, system_prompt, fallbacks, tools, thinking_budget), MCP servers, tool policies, and usage prices and budgets; see docs/providers.md, docs/agents.md and docs/usage.md")
	fs.StringVar(&p.SystemPrompt, "system-prompt", "Answer in {{.Language}} (the user's locale is {{.Locale}}).", "system prompt template for models without their own; {{.Locale}} and {{.Language}} name the user's locale")
	fs.DurationVar(&p.Demo.TTFT, "demo-ttft", 300*time.Millisecond, "demo model: delay before the first token")
	fs.DurationVar(&p.Demo.TokenInterval, "demo-token-interval", 40*time.Millisecond, "demo model: delay between tokens")
	fs.IntVar(&p.Demo.Repeat, "demo-repeat", 1, "demo model: repeat each answer this many times (for load tests)")
}

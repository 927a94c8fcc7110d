package app

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/config"
	"github.com/tokencast/tokencast/internal/orchestrator"
	"github.com/tokencast/tokencast/internal/tools"
)

type silentProvider struct{}

func (silentProvider) Stream(context.Context, chat.Prompt, func(chat.Part) error) (chat.Final, error) {
	return chat.Final{}, nil
}

func TestExtraModelsCallOnlyTheToolsOptionsName(t *testing.T) {
	ctx := context.Background()
	reg, err := tools.New(ctx, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close() })
	getenv := func(string) string { return "" }
	extra := map[string]orchestrator.Provider{"bench:tools": silentProvider{}, "bench:plain": silentProvider{}, "demo:extra": silentProvider{}}

	got, _, _, err := models(ctx, config.Providers{}, getenv, modelFile{},
		Options{Models: extra, ModelTools: map[string][]string{"bench:tools": {"builtin.calculator"}}}, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		model string
		tools []string
	}{
		{"bench:tools", []string{"calculator"}},
		{"bench:plain", nil},
		// An extra model is not the demo model, whatever its name.
		{"demo:extra", nil},
	} {
		t.Run(tc.model, func(t *testing.T) {
			m := got[tc.model]
			var names []string
			for _, s := range m.Tools {
				names = append(names, s.Name)
			}
			if strings.Join(names, ",") != strings.Join(tc.tools, ",") {
				t.Fatalf("tools %v, want %v", names, tc.tools)
			}
			for _, name := range tc.tools {
				if m.ToolRefs[name] != "builtin."+name {
					t.Errorf("%s is called as %q, want builtin.%s", name, m.ToolRefs[name], name)
				}
			}
		})
	}

	_, _, _, err = models(ctx, config.Providers{}, getenv, modelFile{},
		Options{Models: extra, ModelTools: map[string][]string{"bench:tools": {"builtin.nothing"}}}, reg, nil)
	if err == nil || !strings.Contains(err.Error(), `model "bench:tools"`) {
		t.Fatalf("an unknown tool: err %v, want one naming the model", err)
	}
}

package app

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/orchestrator"
	"github.com/tokencast/tokencast/internal/tools"
)

// demoTools are the tools the demo model may call unless the config file
// names its own: the built-in ones, so the embedded default shows an agent
// run with no credentials.
var demoTools = []string{"builtin.*"}

// buildTools connects to the MCP servers the config file declares, and to
// the built-in one. Header values name environment variables as ${NAME};
// a variable that is not set is an error naming it, never its value.
func buildTools(ctx context.Context, file modelFile, getenv func(string) string, log *slog.Logger) (*tools.Registry, error) {
	names := make([]string, 0, len(file.MCPServers))
	for name := range file.MCPServers {
		names = append(names, name)
	}
	slices.Sort(names)
	var servers []tools.Server
	for _, name := range names {
		e := file.MCPServers[name]
		if name == "builtin" {
			return nil, fmt.Errorf("mcp_servers: %q is the built-in server's name", name)
		}
		headers := make(map[string]string, len(e.Headers))
		for k, v := range e.Headers {
			var missing []string
			headers[k] = os.Expand(v, func(name string) string {
				val := getenv(name)
				if val == "" {
					missing = append(missing, name)
				}
				return val
			})
			if len(missing) > 0 {
				return nil, fmt.Errorf("mcp_servers.%s.headers.%s: environment variable %s is not set", name, k, strings.Join(missing, ", "))
			}
		}
		servers = append(servers, tools.Server{Name: name, URL: e.URL, Headers: headers})
	}
	return tools.New(ctx, servers, log)
}

// toolPolicies reads the config file's tools section into policies by the
// tool's name as models see it.
func toolPolicies(file modelFile) (map[string]orchestrator.ToolPolicy, error) {
	out := make(map[string]orchestrator.ToolPolicy, len(file.Tools))
	for key, e := range file.Tools {
		server, tool, ok := strings.Cut(key, ".")
		if !ok || server == "" || tool == "" {
			return nil, fmt.Errorf("tools: %q: name a tool as server.tool", key)
		}
		var p orchestrator.ToolPolicy
		switch e.Approval {
		case "", "none":
		case "required":
			p.Approval = true
		default:
			return nil, fmt.Errorf("tools.%s.approval: %q: want required or none", key, e.Approval)
		}
		p.NonIdempotent = e.Idempotent != nil && !*e.Idempotent
		if e.Timeout != "" {
			d, err := time.ParseDuration(e.Timeout)
			if err != nil || d <= 0 {
				return nil, fmt.Errorf("tools.%s.timeout: %q: want a positive duration such as 20s", key, e.Timeout)
			}
			p.Timeout = d
		}
		if have, dup := out[tool]; dup && have != p {
			return nil, fmt.Errorf("tools: two servers' %q have different policies; tools models see are named by tool alone", tool)
		}
		out[tool] = p
	}
	return out, nil
}

// toolbox runs tools through the registry for the workers.
type toolbox struct{ r *tools.Registry }

func (t toolbox) Call(ctx context.Context, name string, input json.RawMessage) (orchestrator.ToolResult, error) {
	res, err := t.r.Call(ctx, name, input)
	return orchestrator.ToolResult{Output: res.Output, IsError: res.IsError}, err
}

// modelTools are the tools a model entry may call, and the name the
// registry knows each by (server.tool: two servers may offer one name, so
// long as a model is given only one of them).
func modelTools(reg *tools.Registry, e modelEntry) ([]chat.ToolSpec, map[string]string, error) {
	patterns := e.Tools
	if patterns == nil && strings.HasPrefix(e.Ref, "demo:") {
		patterns = demoTools
	}
	if reg == nil || len(patterns) == 0 {
		return nil, nil, nil
	}
	specs, err := reg.Specs(patterns)
	if err != nil {
		return nil, nil, err
	}
	refs := make(map[string]string, len(specs))
	for _, s := range specs {
		if refs[s.Name], err = reg.Resolve(patterns, s.Name); err != nil {
			return nil, nil, err
		}
	}
	return specs, refs, nil
}

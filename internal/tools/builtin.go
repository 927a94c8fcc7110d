package tools

import (
	"context"
	"fmt"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// This file owns the built-in server: tokencast's own tools, served by the
// SDK's MCP server and reached through an in-memory transport by the same
// client code as every remote server.

// builtinDialer opens sessions to a built-in server made for this registry.
func builtinDialer(client *mcp.Client) dialer {
	server := newBuiltinServer()
	return func(ctx context.Context) (*mcp.ClientSession, func(), error) {
		serverSide, clientSide := mcp.NewInMemoryTransports()
		ss, err := server.Connect(ctx, serverSide, nil)
		if err != nil {
			return nil, nil, err
		}
		session, err := client.Connect(ctx, clientSide, nil)
		if err != nil {
			_ = ss.Close()
			return nil, nil, err
		}
		stop := func() {
			_ = ss.Close()
			_ = ss.Wait()
		}
		return session, stop, nil
	}
}

func newBuiltinServer() *mcp.Server {
	server := mcp.NewServer(&mcp.Implementation{Name: "tokencast-builtin", Version: "1"}, nil)
	mcp.AddTool(server, &mcp.Tool{
		Name:        "clock",
		Description: "The current date and time (RFC 3339) and weekday, in a time zone.",
	}, clock)
	mcp.AddTool(server, &mcp.Tool{
		Name: "calculator",
		Description: "Evaluates an arithmetic expression: + - * / % (remainder), ^ (power, " +
			"right-associative), parentheses, unary minus, decimals. Example: (2+3)^2/4",
	}, calculator)
	return server
}

type clockInput struct {
	Timezone string `json:"timezone,omitempty" jsonschema:"an IANA time zone name such as Europe/Paris; UTC when empty"`
}

type clockOutput struct {
	Time     string `json:"time" jsonschema:"the current time, RFC 3339"`
	Weekday  string `json:"weekday" jsonschema:"the day of the week in that zone"`
	Timezone string `json:"timezone" jsonschema:"the time zone"`
}

// clock tells the time. An unknown zone is the tool's error, for the model
// to correct.
func clock(_ context.Context, _ *mcp.CallToolRequest, in clockInput) (*mcp.CallToolResult, clockOutput, error) {
	name := in.Timezone
	if name == "" {
		name = "UTC"
	}
	// "Local" would tell the model the server's zone, which is not the
	// user's and not the model's business.
	if name == "Local" {
		return nil, clockOutput{}, fmt.Errorf("unknown time zone %q: use an IANA name such as Europe/Paris", in.Timezone)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, clockOutput{}, fmt.Errorf("unknown time zone %q: use an IANA name such as Europe/Paris", in.Timezone)
	}
	now := time.Now().In(loc)
	return nil, clockOutput{Time: now.Format(time.RFC3339), Weekday: now.Weekday().String(), Timezone: loc.String()}, nil
}

type calculatorInput struct {
	Expression string `json:"expression" jsonschema:"the expression, e.g. 2*(3+4)^2"`
}

// calculator evaluates an expression; bad syntax and undefined results are
// the tool's errors, for the model to correct.
func calculator(_ context.Context, _ *mcp.CallToolRequest, in calculatorInput) (*mcp.CallToolResult, any, error) {
	v, err := evaluate(in.Expression)
	if err != nil {
		return nil, nil, err
	}
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: formatNumber(v)}}}, nil, nil
}

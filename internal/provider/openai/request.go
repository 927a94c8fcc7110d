package openai

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/tokencast/tokencast/internal/chat"
)

// The chat completions request body, and how a prompt maps onto it: the
// conversation as messages, an agent run's steps as assistant tool_calls
// and role "tool" results, the tools as functions.

type request struct {
	Model         string        `json:"model"`
	Messages      []message     `json:"messages"`
	Stream        bool          `json:"stream"`
	StreamOptions streamOptions `json:"stream_options"`
	MaxTokens     int           `json:"max_tokens,omitempty"`
	Temperature   *float64      `json:"temperature,omitempty"`
	Tools         []tool        `json:"tools,omitempty"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

type message struct {
	Role string `json:"role"`
	// Content is null only in an assistant message that is all tool calls.
	Content    *string    `json:"content"`
	ToolCalls  []toolCall `json:"tool_calls,omitempty"`
	ToolCallID string     `json:"tool_call_id,omitempty"`
}

type toolCall struct {
	ID       string       `json:"id"`
	Type     string       `json:"type"`
	Function functionCall `json:"function"`
}

type functionCall struct {
	Name string `json:"name"`
	// Arguments is the call's JSON input as a string.
	Arguments string `json:"arguments"`
}

type tool struct {
	Type     string   `json:"type"`
	Function function `json:"function"`
}

type function struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters"`
}

// noParameters is the schema of a tool that declares none: the API wants an
// object schema for every function.
var noParameters = json.RawMessage(`{"type":"object","properties":{}}`)

func textMessage(role, text string) message { return message{Role: role, Content: &text} }

// messages is the prompt's system text and conversation as chat completion
// messages. A message without blocks is its text, as ever.
func messages(prompt chat.Prompt) []message {
	var out []message
	if prompt.System != "" {
		out = append(out, textMessage("system", prompt.System))
	}
	for _, m := range prompt.Messages {
		switch {
		case len(m.Blocks) == 0:
			out = append(out, textMessage(string(m.Role), m.Text))
		case m.Role == chat.RoleAssistant:
			out = append(out, assistantMessage(m.Blocks))
		default:
			out = appendResults(out, string(m.Role), m.Blocks)
		}
	}
	return out
}

// assistantMessage is one step of an agent run: its text blocks joined as
// they were streamed, and its tool calls. Reasoning is left out: chat
// completions take none back (DeepSeek refuses a request that carries its
// reasoning_content).
func assistantMessage(blocks []chat.Block) message {
	msg := message{Role: "assistant"}
	var text strings.Builder
	for _, b := range blocks {
		switch b.Kind {
		case chat.BlockText:
			text.WriteString(b.Text)
		case chat.BlockToolCall:
			msg.ToolCalls = append(msg.ToolCalls, toolCall{
				ID:       b.CallID,
				Type:     "function",
				Function: functionCall{Name: b.Name, Arguments: arguments(b.Input)},
			})
		}
	}
	if text.Len() > 0 || len(msg.ToolCalls) == 0 {
		content := text.String()
		msg.Content = &content
	}
	return msg
}

// appendResults appends a user message's tool results, one role "tool"
// message each, in order; text blocks between them stay messages of role.
// The API has no error flag: a failed tool's output says so in its words.
func appendResults(out []message, role string, blocks []chat.Block) []message {
	var text strings.Builder
	pending := false
	for _, b := range blocks {
		switch b.Kind {
		case chat.BlockText:
			text.WriteString(b.Text)
			pending = true
		case chat.BlockToolResult:
			if pending {
				out = append(out, textMessage(role, text.String()))
				text.Reset()
				pending = false
			}
			result := textMessage("tool", b.Text)
			result.ToolCallID = b.CallID
			out = append(out, result)
		}
	}
	if pending {
		out = append(out, textMessage(role, text.String()))
	}
	return out
}

// arguments is a tool call's input as the string the API expects; a call
// that had none is an empty object.
func arguments(input json.RawMessage) string {
	if len(bytes.TrimSpace(input)) == 0 {
		return "{}"
	}
	return string(input)
}

// tools are the prompt's tools as functions.
func tools(specs []chat.ToolSpec) []tool {
	if len(specs) == 0 {
		return nil
	}
	out := make([]tool, 0, len(specs))
	for _, s := range specs {
		params := s.InputSchema
		if len(bytes.TrimSpace(params)) == 0 {
			params = noParameters
		}
		out = append(out, tool{Type: "function", Function: function{Name: s.Name, Description: s.Description, Parameters: params}})
	}
	return out
}

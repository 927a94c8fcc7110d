package anthropic

import (
	"encoding/json"
	"fmt"

	"github.com/tokencast/tokencast/internal/chat"
)

// request is the body of a Messages call.
type request struct {
	Model       string    `json:"model"`
	MaxTokens   int       `json:"max_tokens"`
	System      string    `json:"system,omitempty"`
	Messages    []message `json:"messages"`
	Tools       []tool    `json:"tools,omitempty"`
	Thinking    *thinking `json:"thinking,omitempty"`
	Stream      bool      `json:"stream"`
	Temperature *float64  `json:"temperature,omitempty"`
}

// thinking turns extended thinking on.
type thinking struct {
	Type         string `json:"type"`
	BudgetTokens int    `json:"budget_tokens"`
}

// tool is a tool as the Messages API is offered it.
type tool struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	InputSchema json.RawMessage `json:"input_schema"`
}

// message is one turn. A turn without blocks keeps the plain string content
// it always had; a turn with blocks sends them as a list.
type message struct {
	Role    string `json:"role"`
	Content any    `json:"content"`
}

// The content blocks a request carries back, one type each so that every
// field the API requires of that type is always present.
type (
	textBlock struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	thinkingBlock struct {
		Type      string `json:"type"`
		Thinking  string `json:"thinking"`
		Signature string `json:"signature"`
	}
	redactedThinkingBlock struct {
		Type string `json:"type"`
		Data string `json:"data"`
	}
	toolUseBlock struct {
		Type  string          `json:"type"`
		ID    string          `json:"id"`
		Name  string          `json:"name"`
		Input json.RawMessage `json:"input"`
	}
	toolResultBlock struct {
		Type      string `json:"type"`
		ToolUseID string `json:"tool_use_id"`
		Content   string `json:"content,omitempty"`
		IsError   bool   `json:"is_error,omitempty"`
	}
)

// emptyObject is the schema of a tool that declares none, and the input of
// a call that has none: the API requires both to be objects.
var emptyObject = json.RawMessage(`{"type":"object"}`)

// tools converts the tools a prompt offers.
func tools(specs []chat.ToolSpec) ([]tool, error) {
	out := make([]tool, 0, len(specs))
	for _, s := range specs {
		schema := s.InputSchema
		if len(schema) == 0 {
			schema = emptyObject
		} else if !json.Valid(schema) {
			return nil, fmt.Errorf("tool %s: input schema is not JSON", s.Name)
		}
		out = append(out, tool{Name: s.Name, Description: s.Description, InputSchema: schema})
	}
	return out, nil
}

// content is a message's content: its text, or its blocks when it has any.
func content(m chat.Message) (any, error) {
	if len(m.Blocks) == 0 {
		return m.Text, nil
	}
	out := make([]any, 0, len(m.Blocks))
	for _, b := range m.Blocks {
		switch b.Kind {
		case chat.BlockText:
			// The API refuses empty text blocks; an empty one says nothing.
			if b.Text != "" {
				out = append(out, textBlock{Type: "text", Text: b.Text})
			}
		case chat.BlockReasoning:
			out = append(out, thinkingBlock{Type: "thinking", Thinking: b.Text, Signature: b.Signature})
		case chat.BlockRedacted:
			out = append(out, redactedThinkingBlock{Type: "redacted_thinking", Data: string(b.Data)})
		case chat.BlockToolCall:
			input := b.Input
			if len(input) == 0 {
				input = json.RawMessage(`{}`)
			} else if !json.Valid(input) {
				return nil, fmt.Errorf("tool call %s: input is not JSON", b.CallID)
			}
			out = append(out, toolUseBlock{Type: "tool_use", ID: b.CallID, Name: b.Name, Input: input})
		case chat.BlockToolResult:
			out = append(out, toolResultBlock{Type: "tool_result", ToolUseID: b.CallID, Content: b.Text, IsError: b.IsError})
		default:
			return nil, fmt.Errorf("block kind %q has no Messages API form", b.Kind)
		}
	}
	return out, nil
}

package ollama

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/tokencast/tokencast/internal/chat"
)

// The /api/chat request body, and how a prompt maps onto it: the
// conversation as messages, an agent run's steps as assistant tool_calls
// and role "tool" results, the tools as functions.

type request struct {
	Model    string         `json:"model"`
	Messages []message      `json:"messages"`
	Stream   bool           `json:"stream"`
	Tools    []tool         `json:"tools,omitempty"`
	Options  map[string]any `json:"options,omitempty"`
}

type message struct {
	Role      string     `json:"role"`
	Content   string     `json:"content"`
	Thinking  string     `json:"thinking,omitempty"`
	ToolCalls []toolCall `json:"tool_calls,omitempty"`
	// ToolName names the tool a role "tool" message is the result of.
	ToolName string `json:"tool_name,omitempty"`
}

type toolCall struct {
	Function functionCall `json:"function"`
}

type functionCall struct {
	Name string `json:"name"`
	// Arguments is the call's input as a JSON object (not a string, as in
	// OpenAI's dialect).
	Arguments json.RawMessage `json:"arguments"`
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

// emptyObject is the input of a call that has none, and the schema of a
// tool that declares none.
var (
	emptyObject  = json.RawMessage(`{}`)
	noParameters = json.RawMessage(`{"type":"object","properties":{}}`)
)

// messages is the prompt's system text and conversation as /api/chat
// messages. A message without blocks is its text, as ever.
func messages(prompt chat.Prompt) []message {
	var out []message
	if prompt.System != "" {
		out = append(out, message{Role: "system", Content: prompt.System})
	}
	for _, m := range prompt.Messages {
		switch {
		case len(m.Blocks) == 0:
			out = append(out, message{Role: string(m.Role), Content: m.Text})
		case m.Role == chat.RoleAssistant:
			out = append(out, assistantMessage(m.Blocks))
		default:
			out = appendResults(out, string(m.Role), m.Blocks)
		}
	}
	return out
}

// assistantMessage is one step of an agent run: its text and its reasoning
// blocks each joined as they were streamed, and its tool calls. Unlike the
// OpenAI dialect, /api/chat takes reasoning back (thinking), which a
// model's template may render between tool calls or drop; redacted
// reasoning is another provider's and is left out.
func assistantMessage(blocks []chat.Block) message {
	msg := message{Role: "assistant"}
	var text, thinking strings.Builder
	for _, b := range blocks {
		switch b.Kind {
		case chat.BlockText:
			text.WriteString(b.Text)
		case chat.BlockReasoning:
			thinking.WriteString(b.Text)
		case chat.BlockToolCall:
			msg.ToolCalls = append(msg.ToolCalls, toolCall{Function: functionCall{Name: b.Name, Arguments: arguments(b.Input)}})
		}
	}
	msg.Content = text.String()
	msg.Thinking = thinking.String()
	return msg
}

// appendResults appends a user message's tool results, one role "tool"
// message each, in order; text blocks between them stay messages of role.
// Ollama has no error flag: a failed tool's output says so in its words.
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
				out = append(out, message{Role: role, Content: text.String()})
				text.Reset()
				pending = false
			}
			out = append(out, message{Role: "tool", Content: b.Text, ToolName: b.Name})
		}
	}
	if pending {
		out = append(out, message{Role: role, Content: text.String()})
	}
	return out
}

// arguments is a call's input as the object Ollama expects. An input that
// is not one (none, or a model's broken JSON kept as it came, perhaps from
// another provider) goes as an empty object: Ollama refuses anything else,
// and the tool's result already says what went wrong.
func arguments(input json.RawMessage) json.RawMessage {
	trimmed := bytes.TrimSpace(input)
	if len(trimmed) == 0 || trimmed[0] != '{' || !json.Valid(trimmed) {
		return emptyObject
	}
	return trimmed
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

package graph

import (
	"strconv"

	"github.com/tokencast/tokencast/internal/chat"
)

// encodeAgent writes one of the agent events' objects (toolCall, toolResult,
// step, source, approval) as the subscriber selected it, or null when the
// event has none.
func encodeAgent(b []byte, field string, fields []shapeField, ev *chat.Event) []byte {
	typename, get := agentObject(field, ev)
	if get == nil {
		return append(b, "null"...)
	}
	b = append(b, '{')
	for i, f := range fields {
		if i > 0 {
			b = append(b, ',')
		}
		b = chat.AppendQuoted(b, f.key)
		b = append(b, ':')
		if f.name == "__typename" {
			b = chat.AppendQuoted(b, typename)
			continue
		}
		if nb, ok := get(b, f.name); ok {
			b = nb
		} else {
			b = append(b, "null"...)
		}
	}
	return append(b, '}')
}

type fieldWriter func(b []byte, name string) ([]byte, bool)

// agentObject returns the GraphQL type of an event's agent object and how
// to write its fields; nil when the event has none.
func agentObject(field string, ev *chat.Event) (string, fieldWriter) {
	switch field {
	case "toolCall":
		t := ev.Tool
		if t == nil || ev.Type == chat.EventToolResult {
			return "", nil
		}
		return "ToolCall", func(b []byte, name string) ([]byte, bool) {
			switch name {
			case "id":
				return chat.AppendQuoted(b, t.CallID), true
			case "name":
				return appendOptString(b, t.Name), true
			case "input":
				return appendOptString(b, string(t.Input)), true
			}
			return b, false
		}
	case "toolResult":
		t := ev.Tool
		if t == nil || ev.Type != chat.EventToolResult {
			return "", nil
		}
		return "ToolResult", func(b []byte, name string) ([]byte, bool) {
			switch name {
			case "callId":
				return chat.AppendQuoted(b, t.CallID), true
			case "name":
				return appendOptString(b, t.Name), true
			case "output":
				return chat.AppendQuoted(b, t.Output), true
			case "isError":
				return strconv.AppendBool(b, t.IsError), true
			case "truncated":
				return strconv.AppendBool(b, t.Truncated), true
			case "durationMs":
				return strconv.AppendFloat(b, t.DurationMillis, 'f', -1, 64), true
			}
			return b, false
		}
	case "step":
		s := ev.Step
		if s == nil {
			return "", nil
		}
		return "Step", func(b []byte, name string) ([]byte, bool) {
			switch name {
			case "number":
				return strconv.AppendInt(b, int64(s.Number), 10), true
			case "reason":
				return appendOptString(b, s.Reason), true
			case "continues":
				return strconv.AppendBool(b, s.Continues), true
			}
			return b, false
		}
	case "source":
		s := ev.Source
		if s == nil {
			return "", nil
		}
		return "Source", func(b []byte, name string) ([]byte, bool) {
			switch name {
			case "title":
				return appendOptString(b, s.Title), true
			case "url":
				return appendOptString(b, s.URL), true
			case "text":
				return appendOptString(b, s.Text), true
			}
			return b, false
		}
	case "approval":
		a := ev.Approval
		if a == nil {
			return "", nil
		}
		return "Approval", func(b []byte, name string) ([]byte, bool) {
			switch name {
			case "callId":
				return chat.AppendQuoted(b, a.CallID), true
			case "tool":
				return appendOptString(b, a.Tool), true
			case "input":
				return appendOptString(b, string(a.Input)), true
			case "approved":
				return strconv.AppendBool(b, a.Approved), true
			case "reason":
				return appendOptString(b, a.Reason), true
			case "expires":
				return appendOptString(b, a.Expires), true
			}
			return b, false
		}
	}
	return "", nil
}

func appendOptInt(b []byte, n int) []byte {
	if n == 0 {
		return append(b, "null"...)
	}
	return strconv.AppendInt(b, int64(n), 10)
}

package ollama

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/provider/upstream"
)

// line is one NDJSON object of Ollama's stream.
type line struct {
	Message *struct {
		Content   string `json:"content"`
		Thinking  string `json:"thinking"`
		ToolCalls []struct {
			// ID is set by newer servers only.
			ID       string `json:"id"`
			Function struct {
				Name      string          `json:"name"`
				Arguments json.RawMessage `json:"arguments"`
			} `json:"function"`
		} `json:"tool_calls"`
	} `json:"message"`
	Done            bool   `json:"done"`
	DoneReason      string `json:"done_reason"`
	PromptEvalCount int    `json:"prompt_eval_count"`
	EvalCount       int    `json:"eval_count"`
	Error           string `json:"error"`
}

// decode reads the NDJSON stream: reasoning in message.thinking, text in
// message.content, tool calls whole in message.tool_calls, the last line
// done:true with the token counts, or an "error" line. A stream that ends
// before done is INCOMPLETE. taken holds the tool call ids the conversation
// already uses, which a call that arrives without one must not be given.
func decode(body io.Reader, taken map[string]bool, emit func(chat.Part) error) (chat.Final, error) {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 4096), upstream.MaxEventBytes)
	ids := callIDs{taken: taken}
	for sc.Scan() {
		raw := bytes.TrimSpace(sc.Bytes())
		if len(raw) == 0 {
			continue
		}
		var l line
		if err := json.Unmarshal(raw, &l); err != nil {
			// A line cut off by a dropped connection is the usual cause.
			return chat.Final{}, upstream.ReadError(name, fmt.Errorf("undecodable line: %w", err))
		}
		if l.Error != "" {
			return chat.Final{}, &upstream.Error{Provider: name, Code: chat.CodeProvider, Message: upstream.MsgFailed, Cause: errors.New(l.Error)}
		}
		if m := l.Message; m != nil {
			if m.Thinking != "" {
				if err := emit(chat.Part{Kind: chat.PartReasoning, Text: m.Thinking}); err != nil {
					return chat.Final{}, err
				}
			}
			if m.Content != "" {
				if err := emit(chat.TextPart(m.Content)); err != nil {
					return chat.Final{}, err
				}
			}
			for _, call := range m.ToolCalls {
				id := call.ID
				if id == "" || ids.seen[id] {
					id = ids.next()
				} else {
					ids.use(id)
				}
				if err := emitCall(emit, id, call.Function.Name, call.Function.Arguments); err != nil {
					return chat.Final{}, err
				}
			}
		}
		if l.Done {
			return chat.Final{
				Usage:      chat.Usage{InputTokens: l.PromptEvalCount, OutputTokens: l.EvalCount, TotalTokens: l.PromptEvalCount + l.EvalCount},
				StopReason: l.DoneReason,
			}, nil
		}
	}
	err := sc.Err()
	if errors.Is(err, bufio.ErrTooLong) {
		err = fmt.Errorf("%w: %w", upstream.ErrEventTooLarge, err)
	}
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	return chat.Final{}, upstream.ReadError(name, err)
}

// emitCall emits a tool call that arrived whole: its start, its whole input
// as one delta, its end.
func emitCall(emit func(chat.Part) error, id, name string, args json.RawMessage) error {
	parts := [...]chat.Part{
		{Kind: chat.PartToolStart, CallID: id, Name: name},
		{Kind: chat.PartToolDelta, CallID: id, Text: input(args)},
		{Kind: chat.PartToolEnd, CallID: id},
	}
	for _, p := range parts {
		if err := emit(p); err != nil {
			return err
		}
	}
	return nil
}

// input is a call's arguments as JSON text: an object as it came, the
// JSON inside a string (a server that sends arguments encoded, as in the
// OpenAI dialect), an empty object for none.
func input(args json.RawMessage) string {
	if len(args) > 0 && args[0] == '"' {
		var s string
		if json.Unmarshal(args, &s) == nil && json.Valid([]byte(s)) {
			args = json.RawMessage(s)
		}
	}
	if len(bytes.TrimSpace(args)) == 0 || string(args) == "null" {
		return "{}"
	}
	return string(args)
}

// callIDs names the tool calls that arrive without an id: call_<n> in the
// order seen, skipping the ids of the conversation (taken, read only) and
// of this answer, so that a run's calls stay apart across its steps.
type callIDs struct {
	n     int
	taken map[string]bool
	seen  map[string]bool
}

// use records an id the server gave.
func (c *callIDs) use(id string) {
	if c.seen == nil {
		c.seen = map[string]bool{}
	}
	c.seen[id] = true
}

func (c *callIDs) next() string {
	for {
		id := "call_" + strconv.Itoa(c.n)
		c.n++
		if !c.taken[id] && !c.seen[id] {
			c.use(id)
			return id
		}
	}
}

// takenCallIDs are the ids of the tool calls in a conversation.
func takenCallIDs(messages []chat.Message) map[string]bool {
	var taken map[string]bool
	for _, m := range messages {
		for _, b := range m.Blocks {
			if b.Kind == chat.BlockToolCall {
				if taken == nil {
					taken = map[string]bool{}
				}
				taken[b.CallID] = true
			}
		}
	}
	return taken
}

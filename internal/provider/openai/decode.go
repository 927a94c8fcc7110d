package openai

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/provider/upstream"
)

// chunk is one streamed chat.completion.chunk, or an error object that some
// servers send in its place.
type chunk struct {
	Choices []struct {
		Index int `json:"index"`
		Delta struct {
			Content string `json:"content"`
			// ReasoningContent is DeepSeek's, vLLM's and llama.cpp's name
			// for reasoning text; Reasoning is OpenRouter's and newer
			// vLLM's. A server that sends both sends the same text.
			ReasoningContent looseText       `json:"reasoning_content"`
			Reasoning        looseText       `json:"reasoning"`
			ToolCalls        []toolCallDelta `json:"tool_calls"`
		} `json:"delta"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage *struct {
		PromptTokens        int `json:"prompt_tokens"`
		CompletionTokens    int `json:"completion_tokens"`
		TotalTokens         int `json:"total_tokens"`
		PromptTokensDetails *struct {
			CachedTokens int `json:"cached_tokens"`
		} `json:"prompt_tokens_details"`
		CompletionTokensDetails *struct {
			ReasoningTokens int `json:"reasoning_tokens"`
		} `json:"completion_tokens_details"`
	} `json:"usage"`
	Error *struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
}

// toolCallDelta is a fragment of a tool call: the first of an index has
// its id and name, the later ones pieces of its arguments.
type toolCallDelta struct {
	Index    int    `json:"index"`
	ID       string `json:"id"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

// looseText is a text field that servers outside OpenAI's own may fill
// with something other than a string: that reads as no text rather than
// failing the answer.
type looseText string

// UnmarshalJSON keeps a string and ignores anything else.
func (t *looseText) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		*t = looseText(s)
	}
	return nil
}

// decode reads a chat completions event stream, emitting the first choice's
// reasoning, text and tool calls. The answer is complete once a
// finish_reason or [DONE] arrived; usage is zero when the server sent none.
// taken holds the tool call ids the conversation already uses, which a call
// that arrives without one must not be given.
func decode(body io.Reader, taken map[string]bool, emit func(chat.Part) error) (chat.Final, error) {
	events := upstream.NewSSEReader(body, upstream.MaxEventBytes)
	d := decoder{emit: emit, ids: callIDs{taken: taken}}
	var final chat.Final
	finished := false
	for {
		ev, err := events.Next()
		if errors.Is(err, io.EOF) {
			if finished {
				return final, d.endCalls()
			}
			return chat.Final{}, &upstream.Error{Provider: name, Code: upstream.CodeIncomplete, Message: upstream.MsgIncomplete,
				Cause: errors.New("stream ended without finish_reason or [DONE]")}
		}
		if err != nil {
			return chat.Final{}, upstream.ReadError(name, err)
		}
		if string(ev.Data) == "[DONE]" {
			return final, d.endCalls()
		}
		var c chunk
		if ev.Name != "error" {
			if err := json.Unmarshal(ev.Data, &c); err != nil {
				return chat.Final{}, &upstream.Error{Provider: name, Code: chat.CodeProvider, Message: upstream.MsgFailed,
					Cause: fmt.Errorf("decode chunk: %w", err)}
			}
		}
		if ev.Name == "error" || c.Error != nil {
			return chat.Final{}, &upstream.Error{Provider: name, Code: chat.CodeProvider, Message: upstream.MsgFailed,
				Cause: fmt.Errorf("error in stream: %s", ev.Data)}
		}
		if c.Usage != nil {
			final.Usage = chat.Usage{
				InputTokens:  c.Usage.PromptTokens,
				OutputTokens: c.Usage.CompletionTokens,
				TotalTokens:  c.Usage.TotalTokens,
			}
			if final.Usage.TotalTokens == 0 {
				final.Usage.TotalTokens = final.Usage.InputTokens + final.Usage.OutputTokens
			}
			if details := c.Usage.PromptTokensDetails; details != nil {
				final.Usage.CacheReadTokens = details.CachedTokens
			}
			if details := c.Usage.CompletionTokensDetails; details != nil {
				final.Usage.ReasoningTokens = details.ReasoningTokens
			}
		}
		for _, choice := range c.Choices {
			if choice.Index != 0 {
				continue
			}
			reasoning := choice.Delta.ReasoningContent
			if reasoning == "" {
				reasoning = choice.Delta.Reasoning
			}
			if reasoning != "" {
				if err := d.send(chat.Part{Kind: chat.PartReasoning, Text: string(reasoning)}); err != nil {
					return chat.Final{}, err
				}
			}
			if choice.Delta.Content != "" {
				if err := d.send(chat.TextPart(choice.Delta.Content)); err != nil {
					return chat.Final{}, err
				}
			}
			for _, f := range choice.Delta.ToolCalls {
				if err := d.toolCall(f); err != nil {
					return chat.Final{}, err
				}
			}
			if choice.FinishReason != "" {
				final.StopReason = choice.FinishReason
				finished = true
				if err := d.endCalls(); err != nil {
					return chat.Final{}, err
				}
			}
		}
	}
}

// decoder is what decode keeps between chunks: the tool calls still open.
type decoder struct {
	emit func(chat.Part) error
	open []openCall
	ids  callIDs
}

// openCall is a tool call whose arguments are still arriving.
type openCall struct {
	index int
	id    string
}

func (d *decoder) send(p chat.Part) error {
	if err := d.emit(p); err != nil {
		return fmt.Errorf("openai: deliver part: %w", err)
	}
	return nil
}

// toolCall handles one fragment. A fragment belongs to the open call it
// names, or, naming none, to the one open at its index; otherwise it starts
// a call. A new call at an index still open ends the call there: servers
// that send each call whole may put them all at index 0.
func (d *decoder) toolCall(f toolCallDelta) error {
	at := -1
	for i, c := range d.open {
		if (f.ID != "" && c.id == f.ID) || (f.ID == "" && c.index == f.Index) {
			at = i
			break
		}
	}
	if at < 0 {
		if err := d.startCall(f); err != nil {
			return err
		}
		at = len(d.open) - 1
	}
	if f.Function.Arguments == "" {
		return nil
	}
	return d.send(chat.Part{Kind: chat.PartToolDelta, CallID: d.open[at].id, Text: f.Function.Arguments})
}

func (d *decoder) startCall(f toolCallDelta) error {
	for i, c := range d.open {
		if c.index == f.Index {
			d.open = append(d.open[:i], d.open[i+1:]...)
			if err := d.send(chat.Part{Kind: chat.PartToolEnd, CallID: c.id}); err != nil {
				return err
			}
			break
		}
	}
	id := f.ID
	if id == "" {
		id = d.ids.next()
	} else {
		d.ids.use(id)
	}
	d.open = append(d.open, openCall{index: f.Index, id: id})
	return d.send(chat.Part{Kind: chat.PartToolStart, CallID: id, Name: f.Function.Name})
}

// endCalls ends every open call, in the order they started.
func (d *decoder) endCalls() error {
	open := d.open
	d.open = nil
	for _, c := range open {
		if err := d.send(chat.Part{Kind: chat.PartToolEnd, CallID: c.id}); err != nil {
			return err
		}
	}
	return nil
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

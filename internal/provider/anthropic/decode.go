package anthropic

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/provider/upstream"
)

// usage is the token count of message_start's message and of message_delta.
type usage struct {
	InputTokens              int `json:"input_tokens"`
	OutputTokens             int `json:"output_tokens"`
	CacheCreationInputTokens int `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int `json:"cache_read_input_tokens"`
}

// input counts every input token the answer cost, cached or not.
func (u usage) input() int {
	return u.InputTokens + u.CacheCreationInputTokens + u.CacheReadInputTokens
}

// event is any Messages stream event; the fields its type does not use stay
// empty.
type event struct {
	Type  string `json:"type"`
	Index int    `json:"index"`
	// Message is message_start's.
	Message struct {
		Usage usage `json:"usage"`
	} `json:"message"`
	// ContentBlock is content_block_start's: a text, thinking,
	// redacted_thinking or tool_use block, or one this client skips.
	ContentBlock struct {
		Type      string `json:"type"`
		Text      string `json:"text"`
		Thinking  string `json:"thinking"`
		Signature string `json:"signature"`
		Data      string `json:"data"`
		ID        string `json:"id"`
		Name      string `json:"name"`
	} `json:"content_block"`
	// Delta is content_block_delta's (by its type) or message_delta's
	// (StopReason).
	Delta struct {
		Type        string    `json:"type"`
		Text        string    `json:"text"`
		Thinking    string    `json:"thinking"`
		Signature   string    `json:"signature"`
		PartialJSON string    `json:"partial_json"`
		Citation    *citation `json:"citation"`
		StopReason  string    `json:"stop_reason"`
	} `json:"delta"`
	Usage *usage `json:"usage"`
	Error struct {
		Type string `json:"type"`
	} `json:"error"`
}

// citation is a citations_delta's citation, of any location type: documents
// have a title, web search results a title and a URL.
type citation struct {
	CitedText     string `json:"cited_text"`
	DocumentTitle string `json:"document_title"`
	Title         string `json:"title"`
	URL           string `json:"url"`
}

func (c *citation) source() *chat.Source {
	s := &chat.Source{Title: c.Title, URL: c.URL, Text: c.CitedText}
	if s.Title == "" {
		s.Title = c.DocumentTitle
	}
	return s
}

// decoder turns one answer's events into parts.
type decoder struct {
	emit func(chat.Part) error
	// calls are the tool_use blocks still open, by block index: deltas and
	// stops carry only the index.
	calls map[int]string
	final chat.Final
}

// decode reads a Messages event stream, emitting its parts in order. The
// answer is complete only once message_stop arrived; a stream that fails
// returns the usage reported before the failure with its error.
func decode(body io.Reader, emit func(chat.Part) error) (chat.Final, error) {
	events := upstream.NewSSEReader(body, upstream.MaxEventBytes)
	d := decoder{emit: emit, calls: make(map[int]string)}
	for {
		sse, err := events.Next()
		if errors.Is(err, io.EOF) {
			return d.partial(), &upstream.Error{Provider: name, Code: upstream.CodeIncomplete, Message: upstream.MsgIncomplete,
				Cause: errors.New("stream ended without message_stop")}
		}
		if err != nil {
			return d.partial(), upstream.ReadError(name, err)
		}
		var ev event
		if err := json.Unmarshal(sse.Data, &ev); err != nil {
			if sse.Name == "error" {
				return d.partial(), streamError("", sse.Data)
			}
			return d.partial(), &upstream.Error{Provider: name, Code: chat.CodeProvider, Message: upstream.MsgFailed,
				Cause: fmt.Errorf("decode %s event: %w", sse.Name, err)}
		}
		if ev.Type == "" {
			ev.Type = sse.Name
		}
		switch ev.Type {
		case "message_start":
			d.final.Usage.InputTokens = ev.Message.Usage.input()
			d.final.Usage.OutputTokens = ev.Message.Usage.OutputTokens
			d.final.Usage.CacheReadTokens = ev.Message.Usage.CacheReadInputTokens
			d.final.Usage.CacheWriteTokens = ev.Message.Usage.CacheCreationInputTokens
		case "content_block_start":
			err = d.blockStart(&ev)
		case "content_block_delta":
			err = d.blockDelta(&ev)
		case "content_block_stop":
			if id, ok := d.calls[ev.Index]; ok {
				delete(d.calls, ev.Index)
				err = d.send(chat.Part{Kind: chat.PartToolEnd, CallID: id})
			}
		case "message_delta":
			d.messageDelta(&ev)
		case "message_stop":
			d.final.Usage.TotalTokens = d.final.Usage.InputTokens + d.final.Usage.OutputTokens
			return d.final, nil
		case "error":
			return d.partial(), streamError(ev.Error.Type, sse.Data)
		}
		// ping and event types added later carry nothing the answer needs.
		if err != nil {
			return d.partial(), err
		}
	}
}

// partial is the usage reported so far, for a stream that ends in an
// error: message_start's input tokens were spent, and are billed.
func (d *decoder) partial() chat.Final {
	f := d.final
	f.Usage.TotalTokens = f.Usage.InputTokens + f.Usage.OutputTokens
	return f
}

// blockStart opens a content block. Text and thinking blocks usually open
// empty and fill through deltas; a redacted block arrives whole; a tool_use
// block opens its call, whose input follows as deltas (the input it opens
// with is an empty placeholder). Server tool blocks (web search and the
// like) run at the provider and are not ours to call: they are skipped.
func (d *decoder) blockStart(ev *event) error {
	b := &ev.ContentBlock
	switch b.Type {
	case "text":
		return d.text(chat.PartText, b.Text)
	case "thinking":
		if err := d.text(chat.PartReasoning, b.Thinking); err != nil {
			return err
		}
		return d.text(chat.PartSignature, b.Signature)
	case "redacted_thinking":
		if b.Data == "" {
			return nil
		}
		return d.send(chat.Part{Kind: chat.PartRedacted, Data: []byte(b.Data)})
	case "tool_use":
		if b.ID == "" {
			return &upstream.Error{Provider: name, Code: chat.CodeProvider, Message: upstream.MsgFailed,
				Cause: fmt.Errorf("tool_use block %d without an id", ev.Index)}
		}
		d.calls[ev.Index] = b.ID
		return d.send(chat.Part{Kind: chat.PartToolStart, CallID: b.ID, Name: b.Name})
	}
	return nil
}

// blockDelta continues the block at the event's index.
func (d *decoder) blockDelta(ev *event) error {
	delta := &ev.Delta
	switch delta.Type {
	case "text_delta":
		return d.text(chat.PartText, delta.Text)
	case "thinking_delta":
		return d.text(chat.PartReasoning, delta.Thinking)
	case "signature_delta":
		return d.text(chat.PartSignature, delta.Signature)
	case "input_json_delta":
		// A server tool's input has no open call: it is skipped.
		id, ok := d.calls[ev.Index]
		if !ok || delta.PartialJSON == "" {
			return nil
		}
		return d.send(chat.Part{Kind: chat.PartToolDelta, CallID: id, Text: delta.PartialJSON})
	case "citations_delta":
		if delta.Citation == nil {
			return nil
		}
		return d.send(chat.Part{Kind: chat.PartSource, Source: delta.Citation.source()})
	}
	return nil
}

// messageDelta takes the stop reason and the counts so far.
func (d *decoder) messageDelta(ev *event) {
	if ev.Delta.StopReason != "" {
		d.final.StopReason = ev.Delta.StopReason
	}
	u := ev.Usage
	if u == nil {
		return
	}
	// Counts here are cumulative: they replace, never add.
	d.final.Usage.OutputTokens = u.OutputTokens
	if in := u.input(); in > 0 {
		d.final.Usage.InputTokens = in
	}
	if u.CacheReadInputTokens > 0 {
		d.final.Usage.CacheReadTokens = u.CacheReadInputTokens
	}
	if u.CacheCreationInputTokens > 0 {
		d.final.Usage.CacheWriteTokens = u.CacheCreationInputTokens
	}
}

// text emits a text-carrying part, unless it is empty.
func (d *decoder) text(kind chat.PartKind, s string) error {
	if s == "" {
		return nil
	}
	return d.send(chat.Part{Kind: kind, Text: s})
}

func (d *decoder) send(p chat.Part) error {
	if err := d.emit(p); err != nil {
		return fmt.Errorf("anthropic: deliver part: %w", err)
	}
	return nil
}

// streamError maps an error event: a rate limit is throttling, an overload
// or an internal error of the API means try again later, anything else is
// a provider failure.
func streamError(errType string, raw []byte) *upstream.Error {
	e := &upstream.Error{Provider: name, Cause: fmt.Errorf("error event: %s", raw)}
	switch errType {
	case "rate_limit_error":
		e.Code, e.Message = upstream.CodeThrottled, upstream.MsgThrottled
	case "overloaded_error":
		e.Code, e.Message = upstream.CodeUnavailable, upstream.MsgOverloaded
	case "api_error":
		e.Code, e.Message = upstream.CodeUnavailable, upstream.MsgUnavailable
	default:
		e.Code, e.Message = chat.CodeProvider, upstream.MsgFailed
	}
	return e
}

package bedrock

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"

	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/provider/upstream"
)

// decoder turns one answer's ConverseStream events into parts.
type decoder struct {
	emit func(chat.Part) error
	// calls are the tool calls still open, by content block index: deltas
	// and stops carry only the index.
	calls map[int32]string
	// redacted gathers a block's encrypted reasoning until the block ends,
	// so that it goes out whole, as it must come back.
	redacted map[int32][]byte
	final    chat.Final
	// stopped is set by messageStop: only then is the answer complete.
	stopped bool
}

func newDecoder(emit func(chat.Part) error) *decoder {
	return &decoder{emit: emit, calls: make(map[int32]string), redacted: make(map[int32][]byte)}
}

// handle takes one event; event types it does not know carry nothing the
// answer needs.
func (d *decoder) handle(event types.ConverseStreamOutput) error {
	switch e := event.(type) {
	case *types.ConverseStreamOutputMemberContentBlockStart:
		return d.blockStart(aws.ToInt32(e.Value.ContentBlockIndex), e.Value.Start)
	case *types.ConverseStreamOutputMemberContentBlockDelta:
		return d.blockDelta(aws.ToInt32(e.Value.ContentBlockIndex), e.Value.Delta)
	case *types.ConverseStreamOutputMemberContentBlockStop:
		return d.blockStop(aws.ToInt32(e.Value.ContentBlockIndex))
	case *types.ConverseStreamOutputMemberMessageStop:
		d.final.StopReason = string(e.Value.StopReason)
		d.stopped = true
		// A block the stream never closed still goes out.
		for _, index := range slices.Sorted(maps.Keys(d.redacted)) {
			if err := d.blockStop(index); err != nil {
				return err
			}
		}
	case *types.ConverseStreamOutputMemberMetadata:
		// metadata follows messageStop; read on to get it.
		d.final.Usage = usage(e.Value.Usage)
	}
	return nil
}

// blockStart opens a tool call. A server tool (one the provider runs
// itself) is not ours to call: it is skipped, and so are its deltas.
func (d *decoder) blockStart(index int32, start types.ContentBlockStart) error {
	use, ok := start.(*types.ContentBlockStartMemberToolUse)
	if !ok || use.Value.Type == types.ToolUseTypeServerToolUse {
		return nil
	}
	id := aws.ToString(use.Value.ToolUseId)
	if id == "" {
		return &upstream.Error{Provider: name, Code: chat.CodeProvider, Message: upstream.MsgFailed,
			Cause: fmt.Errorf("toolUse block %d without an id", index)}
	}
	d.calls[index] = id
	return d.send(chat.Part{Kind: chat.PartToolStart, CallID: id, Name: aws.ToString(use.Value.Name)})
}

// blockDelta continues the block at index.
func (d *decoder) blockDelta(index int32, delta types.ContentBlockDelta) error {
	switch delta := delta.(type) {
	case *types.ContentBlockDeltaMemberText:
		return d.text(chat.PartText, delta.Value)
	case *types.ContentBlockDeltaMemberReasoningContent:
		switch r := delta.Value.(type) {
		case *types.ReasoningContentBlockDeltaMemberText:
			return d.text(chat.PartReasoning, r.Value)
		case *types.ReasoningContentBlockDeltaMemberSignature:
			return d.text(chat.PartSignature, r.Value)
		case *types.ReasoningContentBlockDeltaMemberRedactedContent:
			d.redacted[index] = append(d.redacted[index], r.Value...)
		}
	case *types.ContentBlockDeltaMemberToolUse:
		id, ok := d.calls[index]
		input := aws.ToString(delta.Value.Input)
		if !ok || input == "" {
			return nil
		}
		return d.send(chat.Part{Kind: chat.PartToolDelta, CallID: id, Text: input})
	case *types.ContentBlockDeltaMemberCitation:
		if s := citationSource(&delta.Value); s != nil {
			return d.send(chat.Part{Kind: chat.PartSource, Source: s})
		}
	}
	return nil
}

// blockStop ends the block at index: a tool call's input is complete, a
// redacted block goes out.
func (d *decoder) blockStop(index int32) error {
	if data, ok := d.redacted[index]; ok {
		delete(d.redacted, index)
		if len(data) > 0 {
			if err := d.send(chat.Part{Kind: chat.PartRedacted, Data: data}); err != nil {
				return err
			}
		}
	}
	if id, ok := d.calls[index]; ok {
		delete(d.calls, index)
		return d.send(chat.Part{Kind: chat.PartToolEnd, CallID: id})
	}
	return nil
}

// citationSource is where a citation points: a web page's URL, a
// document's title, the passage cited. Nil when it names nothing.
func citationSource(c *types.CitationsDelta) *chat.Source {
	s := &chat.Source{Title: aws.ToString(c.Title)}
	if web, ok := c.Location.(*types.CitationLocationMemberWeb); ok {
		s.URL = aws.ToString(web.Value.Url)
	}
	// A search result's source is often its address, else its name.
	if src := aws.ToString(c.Source); src != "" {
		switch {
		case s.URL == "" && (strings.HasPrefix(src, "https://") || strings.HasPrefix(src, "http://")):
			s.URL = src
		case s.Title == "":
			s.Title = src
		}
	}
	var text strings.Builder
	for _, content := range c.SourceContent {
		text.WriteString(aws.ToString(content.Text))
	}
	s.Text = text.String()
	if *s == (chat.Source{}) {
		return nil
	}
	return s
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
		return fmt.Errorf("bedrock: deliver part: %w", err)
	}
	return nil
}

// complete is how the answer ended, or why it is incomplete.
func (d *decoder) complete() (chat.Final, error) {
	if !d.stopped {
		return chat.Final{}, &upstream.Error{Provider: name, Code: upstream.CodeIncomplete, Message: upstream.MsgIncomplete,
			Cause: errors.New("stream ended without messageStop")}
	}
	return d.final, nil
}

// usage converts the metadata's counts. Cached input counts as input, as
// every provider here counts it; the cache counts are also given apart.
func usage(u *types.TokenUsage) chat.Usage {
	if u == nil {
		return chat.Usage{}
	}
	out := chat.Usage{
		InputTokens:      int(aws.ToInt32(u.InputTokens)),
		OutputTokens:     int(aws.ToInt32(u.OutputTokens)),
		TotalTokens:      int(aws.ToInt32(u.TotalTokens)),
		CacheReadTokens:  int(aws.ToInt32(u.CacheReadInputTokens)),
		CacheWriteTokens: int(aws.ToInt32(u.CacheWriteInputTokens)),
	}
	out.InputTokens += out.CacheReadTokens + out.CacheWriteTokens
	if out.TotalTokens == 0 {
		out.TotalTokens = out.InputTokens + out.OutputTokens
	}
	return out
}

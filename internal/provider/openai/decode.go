package openai

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

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
		} `json:"delta"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage *struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
		TotalTokens      int `json:"total_tokens"`
	} `json:"usage"`
	Error *struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
}

// decode reads a chat completions event stream, emitting the first choice's
// text. The answer is complete once a finish_reason or [DONE] arrived; usage
// is zero when the server sent none.
func decode(body io.Reader, emit func(chat.Part) error) (chat.Final, error) {
	events := upstream.NewSSEReader(body, upstream.MaxEventBytes)
	var final chat.Final
	finished := false
	for {
		ev, err := events.Next()
		if errors.Is(err, io.EOF) {
			if finished {
				return final, nil
			}
			return chat.Final{}, &upstream.Error{Provider: name, Code: upstream.CodeIncomplete, Message: upstream.MsgIncomplete,
				Cause: errors.New("stream ended without finish_reason or [DONE]")}
		}
		if err != nil {
			return chat.Final{}, upstream.ReadError(name, err)
		}
		if string(ev.Data) == "[DONE]" {
			return final, nil
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
		}
		for _, choice := range c.Choices {
			if choice.Index != 0 {
				continue
			}
			if choice.Delta.Content != "" {
				if err := emit(chat.TextPart(choice.Delta.Content)); err != nil {
					return chat.Final{}, fmt.Errorf("openai: deliver delta: %w", err)
				}
			}
			if choice.FinishReason != "" {
				final.StopReason = choice.FinishReason
				finished = true
			}
		}
	}
}

package ollama

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/tokencast/tokencast/internal/chat"
	"github.com/tokencast/tokencast/internal/provider/upstream"
)

// line is one NDJSON object of Ollama's stream.
type line struct {
	Message *struct {
		Content string `json:"content"`
	} `json:"message"`
	Done            bool   `json:"done"`
	DoneReason      string `json:"done_reason"`
	PromptEvalCount int    `json:"prompt_eval_count"`
	EvalCount       int    `json:"eval_count"`
	Error           string `json:"error"`
}

// decode reads the NDJSON stream: text in message.content, the last line
// done:true with the token counts, or an "error" line. A stream that ends
// before done is INCOMPLETE.
func decode(body io.Reader, emit func(chat.Part) error) (chat.Final, error) {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 4096), upstream.MaxEventBytes)
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
		if l.Message != nil && l.Message.Content != "" {
			if err := emit(chat.TextPart(l.Message.Content)); err != nil {
				return chat.Final{}, err
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

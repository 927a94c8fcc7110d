package aisdk

import (
	"encoding/json"
	"io"
	"strings"

	"github.com/tokencast/tokencast/internal/chat"
)

// This file owns reading what DefaultChatTransport POSTs: {id, messages,
// trigger, messageId} and whatever the app adds with the transport's body
// option (we read locale and model).

// chatRequest is the body of POST /api/chat.
type chatRequest struct {
	ID        string      `json:"id"`
	Messages  []uiMessage `json:"messages"`
	Trigger   string      `json:"trigger"`
	MessageID string      `json:"messageId"`
	Locale    string      `json:"locale"`
	Model     string      `json:"model"`
}

// uiMessage is a UIMessage as the client holds it. Only the question is
// read of it: the server's stored conversation is the context.
type uiMessage struct {
	ID    string   `json:"id"`
	Role  string   `json:"role"`
	Parts []uiPart `json:"parts"`
}

type uiPart struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// question is what a chat request asks.
type question struct {
	Session string
	Text    string
	Locale  string
	Model   string
}

// decodeChat reads a chat request: the chat id is the session, the text
// parts of the last message, which must be the user's, are the question.
// At most maxMessages messages are accepted. Errors carry a stable code and
// a message safe to show.
func decodeChat(body io.Reader, maxMessages int) (question, error) {
	var req chatRequest
	dec := json.NewDecoder(body)
	if err := dec.Decode(&req); err != nil {
		return question{}, badInput("the body must be the JSON the AI SDK's DefaultChatTransport sends: {id, messages, trigger}")
	}
	if !chat.ValidSessionID(req.ID) {
		return question{}, &chat.Error{Code: chat.CodeBadSessionID, Message: "id (the chat id, our sessionId) must be 1 to 128 letters, digits, '-' or '_'"}
	}
	switch req.Trigger {
	case "", "submit-message", "regenerate-message":
	default:
		return question{}, badInput("trigger must be submit-message or regenerate-message")
	}
	if len(req.Messages) == 0 {
		return question{}, badInput("messages must end with the user's question")
	}
	if len(req.Messages) > maxMessages {
		return question{}, badInput("too many messages: the server keeps the conversation, send the last ones only")
	}
	last := req.Messages[len(req.Messages)-1]
	if last.Role != "user" {
		return question{}, badInput("the last message must be the user's question")
	}
	var text strings.Builder
	for _, p := range last.Parts {
		if p.Type != "text" {
			continue
		}
		if text.Len() > 0 {
			text.WriteByte('\n')
		}
		text.WriteString(p.Text)
	}
	locale := req.Locale
	if locale == "" {
		locale = "en"
	}
	return question{Session: req.ID, Text: text.String(), Locale: locale, Model: req.Model}, nil
}

func badInput(msg string) error { return &chat.Error{Code: chat.CodeBadInput, Message: msg} }

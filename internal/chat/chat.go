// Package chat is the domain of tokencast: requests, the events that stream an
// answer to subscribers, and the conversation they build. It does no I/O and
// imports nothing of ours.
package chat

import (
	"regexp"
	"strings"
	"time"
)

// EventType says what an event means to a subscriber.
type EventType string

// Event types, in the order a subscriber sees them for one answer.
const (
	EventStart     EventType = "START"
	EventDelta     EventType = "DELTA"
	EventEnd       EventType = "END"
	EventError     EventType = "ERROR"
	EventCancelled EventType = "CANCELLED"
	// EventMessage is a free-form event published through sendMessage by a
	// service principal, as the AWS sample's orchestrator does.
	EventMessage EventType = "MESSAGE"
	// EventRestart says an answer starts over (a new attempt after a crash).
	EventRestart EventType = "RESTART"
	// EventResync says the history no longer reaches a resume cursor.
	EventResync EventType = "RESYNC"
)

// Markers the AWS sample's UI looks for in the message text.
const (
	MarkerStart = "#START_STREAM#"
	MarkerEnd   = "#END_STREAM#"
	MarkerError = "#STREAM_ERROR#"
)

// Terminal reports whether no further event of the same answer follows.
func (t EventType) Terminal() bool {
	return t == EventEnd || t == EventError || t == EventCancelled
}

// Usage counts the tokens an answer cost.
type Usage struct {
	InputTokens  int `json:"inputTokens"`
	OutputTokens int `json:"outputTokens"`
	TotalTokens  int `json:"totalTokens"`
	// ReasoningTokens (part of OutputTokens) and the prompt-cache counts
	// (part of InputTokens) are set when the provider reports them.
	ReasoningTokens  int `json:"reasoningTokens,omitempty"`
	CacheReadTokens  int `json:"cacheReadTokens,omitempty"`
	CacheWriteTokens int `json:"cacheWriteTokens,omitempty"`
}

// Add adds u's counts to the sum.
func (sum *Usage) Add(u Usage) {
	sum.InputTokens += u.InputTokens
	sum.OutputTokens += u.OutputTokens
	sum.TotalTokens += u.TotalTokens
	sum.ReasoningTokens += u.ReasoningTokens
	sum.CacheReadTokens += u.CacheReadTokens
	sum.CacheWriteTokens += u.CacheWriteTokens
}

// StreamError is what a subscriber learns about a failure: a stable code and a
// message that is safe to show (never a provider's raw text).
type StreamError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Event is one step of an answer, as stored in the session's event history and
// delivered to every subscriber of the session.
type Event struct {
	Type       EventType    `json:"type"`
	SessionID  string       `json:"sessionId"`
	RequestID  string       `json:"requestId,omitempty"`
	Index      int          `json:"index"`
	Message    string       `json:"message"`
	Locale     string       `json:"locale"`
	TimeStamp  time.Time    `json:"timeStamp"`
	Usage      *Usage       `json:"usage,omitempty"`
	StopReason string       `json:"stopReason,omitempty"`
	Model      string       `json:"model,omitempty"`
	Error      *StreamError `json:"error,omitempty"`
	// TTFTMillis, on END, is how long the model took to its first token,
	// as the server measured it (from the worker taking the request).
	TTFTMillis int64 `json:"ttftMs,omitempty"`
	// StartSeq is the history position of this answer's START event, so a
	// subscriber that joins mid-answer can replay it from the beginning.
	StartSeq uint64 `json:"startSeq,omitempty"`
	// Attempt is the delivery of the request that produced the event. A
	// worker that lost its delivery without knowing (a broker restart, a
	// pause longer than the ack wait) may go on publishing beside the new
	// attempt; its events are stale once a higher attempt has been seen.
	Attempt uint64 `json:"attempt,omitempty"`
	// The agent events' own parts (see agent.go).
	Tool     *ToolEvent    `json:"tool,omitempty"`
	Step     *StepInfo     `json:"step,omitempty"`
	Source   *Source       `json:"source,omitempty"`
	Approval *ApprovalInfo `json:"approval,omitempty"`

	// Seq is the event's position in the session history, set on delivery.
	Seq uint64 `json:"-"`
}

// AnswerStart is the history position of the START of the answer ev belongs
// to, or 0 when it belongs to none (a service's free-standing message).
func (ev *Event) AnswerStart() uint64 {
	if ev.Type == EventStart {
		return ev.Seq
	}
	return ev.StartSeq
}

// AnswerKey names one answer, a request of a session, wherever one is keyed:
// its claim, its cancel mark, its queue and dead-letter message ids, its turn
// records, the worker's answers in flight. Both parts are valid ids, so the
// dot cannot be ambiguous and the key is a valid NATS subject token pair.
func AnswerKey(session, request string) string { return session + "." + request }

// Role says who wrote a turn.
type Role string

// Roles of a conversation turn.
const (
	RoleUser      Role = "user"
	RoleAssistant Role = "assistant"
)

// TurnStatus says how far a turn got.
type TurnStatus string

// Turn statuses.
const (
	StatusComplete   TurnStatus = "COMPLETE"
	StatusIncomplete TurnStatus = "INCOMPLETE"
	StatusCancelled  TurnStatus = "CANCELLED"
	StatusError      TurnStatus = "ERROR"
	StatusInProgress TurnStatus = "IN_PROGRESS"
)

// Turn is one message of a conversation.
type Turn struct {
	RequestID string     `json:"requestId"`
	Role      Role       `json:"role"`
	Text      string     `json:"text"`
	Status    TurnStatus `json:"status"`
	Locale    string     `json:"locale,omitempty"`
	Model     string     `json:"model,omitempty"`
	Usage     *Usage     `json:"usage,omitempty"`
	At        time.Time  `json:"at"`
	// Attempt is the delivery of the request that wrote an answer turn; a
	// record of an older attempt never replaces a newer one.
	Attempt uint64 `json:"attempt,omitempty"`
	// Run is an agent answer's messages in order: the assistant's steps
	// (reasoning, text, tool calls) and the tool results between them. An
	// answer without tools has none; Text is its whole text either way.
	Run []Message `json:"run,omitempty"`
	// Owner, on a question, is the session's owner who asked it: the
	// ownership can be restored from the conversation if its own record
	// is lost (a crash of the store before it wrote it).
	Owner string `json:"owner,omitempty"`
}

// Request is an accepted question waiting for a worker.
type Request struct {
	ID         string    `json:"id"`
	SessionID  string    `json:"sessionId"`
	Message    string    `json:"message"`
	Locale     string    `json:"locale"`
	Model      string    `json:"model,omitempty"`
	Principal  string    `json:"principal,omitempty"`
	AcceptedAt time.Time `json:"acceptedAt"`
	// TraceParent is the W3C trace context of the ask, so the worker's span
	// joins the trace that started at the API; empty when tracing is off.
	TraceParent string `json:"traceparent,omitempty"`
}

// MaxSessionIDLen bounds a session id, which also names a NATS subject token.
const MaxSessionIDLen = 128

var (
	sessionIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	// A BCP 47 shaped tag: language, then subtags (en, en-US, zh-Hant-TW).
	localePattern = regexp.MustCompile(`^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*$`)
)

// ValidSessionID reports whether id may name a session: 1 to 128 characters of
// letters, digits, '-' and '_' (a UUID fits).
func ValidSessionID(id string) bool {
	return len(id) > 0 && len(id) <= MaxSessionIDLen && sessionIDPattern.MatchString(id)
}

// ValidRequestID reports whether id may name a request; same alphabet as sessions.
func ValidRequestID(id string) bool { return ValidSessionID(id) }

// ValidLocale reports whether locale looks like a language tag.
func ValidLocale(locale string) bool {
	return len(locale) <= 35 && localePattern.MatchString(locale)
}

// ValidateAsk checks a question before it is accepted.
func ValidateAsk(sessionID, message, locale string, maxBytes int) error {
	switch {
	case !ValidSessionID(sessionID):
		return &Error{CodeBadSessionID, "sessionId must be 1 to 128 letters, digits, '-' or '_'"}
	case !ValidLocale(locale):
		return &Error{CodeBadLocale, "locale must be a language tag such as en or en-US"}
	case strings.TrimSpace(message) == "":
		return &Error{CodeEmptyMessage, "message must not be empty"}
	case len(message) > maxBytes:
		return &Error{CodeMessageTooLarge, "message is larger than the server accepts"}
	}
	return nil
}

// Conversation is the ordered turns of one session.
type Conversation struct {
	SessionID string
	Turns     []Turn
}

// Apply folds a stored turn record into the conversation: a later record of
// the same request and role replaces the earlier one (an answer in progress
// becomes complete) unless it comes from an older attempt, anything else is
// appended.
func (c *Conversation) Apply(t Turn) {
	for i := range c.Turns {
		if c.Turns[i].RequestID == t.RequestID && c.Turns[i].Role == t.Role {
			if t.Attempt >= c.Turns[i].Attempt {
				c.Turns[i] = t
			}
			return
		}
	}
	c.Turns = append(c.Turns, t)
}

// Stale reports whether an event comes from an attempt older than the newest
// one seen for its request, recording the event's attempt in newest.
func Stale(newest map[string]uint64, ev *Event) bool {
	if ev.RequestID == "" {
		return false
	}
	if ev.Attempt < newest[ev.RequestID] {
		return true
	}
	newest[ev.RequestID] = ev.Attempt
	return false
}

// Before returns the turns that precede the given request's question, and the
// question itself, so a provider sees the conversation as it was when asked.
func (c *Conversation) Before(requestID string) []Turn {
	for i, t := range c.Turns {
		if t.RequestID == requestID && t.Role == RoleUser {
			return c.Turns[:i]
		}
	}
	return c.Turns
}

// Message is one turn as a model sees it.
type Message struct {
	Role Role   `json:"role"`
	Text string `json:"text,omitempty"`
	// Blocks, when set, is the message's content in order and Text is not
	// read: an assistant's reasoning, text and tool calls, or the tool
	// results a user message carries back.
	Blocks []Block `json:"blocks,omitempty"`
	// Usage, on an assistant's step of an agent run, is what that model
	// call cost: a run taken over by another worker still counts it.
	Usage *Usage `json:"usage,omitempty"`
}

// Prompt is what a provider is asked to continue.
type Prompt struct {
	// Model is the provider's own model id (after "provider:").
	Model    string
	System   string
	Locale   string
	Messages []Message
	// Tools are the tools the model may call; none for a plain answer.
	Tools []ToolSpec
}

// Final is how a provider's answer ended.
type Final struct {
	Usage      Usage
	StopReason string
}

// Localized apology texts sent before #STREAM_ERROR#, by locale then by
// language. English, French and Chinese are the AWS sample orchestrator's own
// (translations/common.py, error_response), character for character; the
// others say the same.
var errorTexts = map[string]string{
	"en":    "Sorry, I was not able to answer your question.",
	"fr":    "Désolé, je n’ai pas pu répondre à votre question.",
	"zh":    "抱歉，我无法回答你的问题",
	"zh_hk": "抱歉，我無法回答你的問題",
	"zh_tw": "抱歉，我無法回答你的問題",
	"zh_sg": "抱歉，我無法回答你的問題",
	"de":    "Entschuldigung, ich konnte Ihre Frage nicht beantworten.",
	"es":    "Lo siento, no he podido responder a su pregunta.",
	"it":    "Spiacente, non sono riuscito a rispondere alla tua domanda.",
	"pt":    "Desculpe, não consegui responder à sua pergunta.",
	"ja":    "申し訳ありません。ご質問にお答えできませんでした。",
}

// ErrorText returns the apology shown to a user in their locale's language,
// English when the language is not known.
func ErrorText(locale string) string {
	if t, ok := errorTexts[strings.ReplaceAll(strings.ToLower(locale), "-", "_")]; ok {
		return t
	}
	if t, ok := errorTexts[Language(locale)]; ok {
		return t
	}
	return errorTexts["en"]
}

// Language is a locale's language subtag, lower case: "fr" for "fr_CA" or
// "FR-ca".
func Language(locale string) string {
	lang, _, _ := strings.Cut(strings.ToLower(locale), "-")
	lang, _, _ = strings.Cut(lang, "_")
	return lang
}

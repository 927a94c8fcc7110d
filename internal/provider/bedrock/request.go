package bedrock

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/document"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"
	smithydocument "github.com/aws/smithy-go/document"

	"github.com/tokencast/tokencast/internal/chat"
)

// input is the ConverseStream request for prompt.
func (p *Provider) input(prompt chat.Prompt) (*bedrockruntime.ConverseStreamInput, error) {
	in := &bedrockruntime.ConverseStreamInput{ModelId: aws.String(prompt.Model)}
	if prompt.System != "" {
		in.System = []types.SystemContentBlock{&types.SystemContentBlockMemberText{Value: prompt.System}}
	}
	for _, m := range prompt.Messages {
		content, err := contentBlocks(m)
		if err != nil {
			return nil, err
		}
		in.Messages = append(in.Messages, types.Message{Role: types.ConversationRole(m.Role), Content: content})
	}
	if len(prompt.Tools) > 0 {
		config, err := toolConfig(prompt.Tools)
		if err != nil {
			return nil, err
		}
		in.ToolConfig = config
	}
	if p.maxTokens != nil || p.temperature != nil {
		in.InferenceConfig = &types.InferenceConfiguration{MaxTokens: p.maxTokens, Temperature: p.temperature}
	}
	if p.thinkingBudget > 0 {
		// Converse has no field of its own for Claude's extended thinking:
		// the model's own request field passes through.
		in.AdditionalModelRequestFields = document.NewLazyDocument(map[string]any{
			"thinking": map[string]any{"type": "enabled", "budget_tokens": p.thinkingBudget},
		})
	}
	return in, nil
}

// toolConfig offers the prompt's tools.
func toolConfig(specs []chat.ToolSpec) (*types.ToolConfiguration, error) {
	config := &types.ToolConfiguration{Tools: make([]types.Tool, 0, len(specs))}
	for _, s := range specs {
		schema := s.InputSchema
		if len(schema) == 0 {
			// The API requires a schema, and an object one.
			schema = json.RawMessage(`{"type":"object"}`)
		}
		doc, err := jsonDocument(schema)
		if err != nil {
			return nil, fmt.Errorf("bedrock: tool %s: input schema: %w", s.Name, err)
		}
		spec := types.ToolSpecification{Name: aws.String(s.Name), InputSchema: &types.ToolInputSchemaMemberJson{Value: doc}}
		if s.Description != "" {
			spec.Description = aws.String(s.Description)
		}
		config.Tools = append(config.Tools, &types.ToolMemberToolSpec{Value: spec})
	}
	return config, nil
}

// contentBlocks is a message's content: its text, or its blocks when it has
// any.
func contentBlocks(m chat.Message) ([]types.ContentBlock, error) {
	if len(m.Blocks) == 0 {
		return []types.ContentBlock{&types.ContentBlockMemberText{Value: m.Text}}, nil
	}
	out := make([]types.ContentBlock, 0, len(m.Blocks))
	for _, b := range m.Blocks {
		switch b.Kind {
		case chat.BlockText:
			// The API refuses blank text blocks; an empty one says nothing.
			if b.Text != "" {
				out = append(out, &types.ContentBlockMemberText{Value: b.Text})
			}
		case chat.BlockReasoning:
			text := types.ReasoningTextBlock{Text: aws.String(b.Text)}
			if b.Signature != "" {
				text.Signature = aws.String(b.Signature)
			}
			out = append(out, &types.ContentBlockMemberReasoningContent{
				Value: &types.ReasoningContentBlockMemberReasoningText{Value: text}})
		case chat.BlockRedacted:
			out = append(out, &types.ContentBlockMemberReasoningContent{
				Value: &types.ReasoningContentBlockMemberRedactedContent{Value: b.Data}})
		case chat.BlockToolCall:
			input := b.Input
			if len(input) == 0 {
				input = json.RawMessage(`{}`)
			}
			doc, err := jsonDocument(input)
			if err != nil {
				return nil, fmt.Errorf("bedrock: tool call %s: input: %w", b.CallID, err)
			}
			out = append(out, &types.ContentBlockMemberToolUse{Value: types.ToolUseBlock{
				ToolUseId: aws.String(b.CallID), Name: aws.String(b.Name), Input: doc}})
		case chat.BlockToolResult:
			result := types.ToolResultBlock{
				ToolUseId: aws.String(b.CallID),
				Content:   []types.ToolResultContentBlock{&types.ToolResultContentBlockMemberText{Value: b.Text}},
			}
			if b.IsError {
				result.Status = types.ToolResultStatusError
			}
			out = append(out, &types.ContentBlockMemberToolResult{Value: result})
		default:
			return nil, fmt.Errorf("bedrock: block kind %q has no Converse form", b.Kind)
		}
	}
	return out, nil
}

// jsonDocument makes a document of one JSON value. Numbers keep their
// literal (no detour through float64); object keys go out sorted, which
// JSON does not mind.
func jsonDocument(raw json.RawMessage) (document.Interface, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("not JSON: more than one value")
	}
	return document.NewLazyDocument(literalNumbers(v)), nil
}

// literalNumbers swaps the decoder's json.Number, which the document
// encoder would send as a string, for the document's own number type.
func literalNumbers(v any) any {
	switch v := v.(type) {
	case json.Number:
		return smithydocument.Number(v)
	case map[string]any:
		for k, e := range v {
			v[k] = literalNumbers(e)
		}
	case []any:
		for i, e := range v {
			v[i] = literalNumbers(e)
		}
	}
	return v
}

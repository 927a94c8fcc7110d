// Package bedrock streams answers from Amazon Bedrock's ConverseStream API,
// with the AWS SDK's credential chain or a Bedrock API key (bearer token).
package bedrock

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/schemas"
	"github.com/aws/smithy-go/auth/bearer"
	"github.com/aws/smithy-go/transport/http/protocol/restjson1"

	"github.com/tokencast/tokencast/internal/chat"
)

// name prefixes the log-side text of this provider's errors.
const name = "bedrock"

// Options configure a Provider. Anything left empty comes from the SDK's
// default chain: environment, shared config and credentials files, SSO, web
// identity, container and instance roles.
type Options struct {
	// Region is the AWS region; empty takes it from the default chain.
	Region string
	// BaseEndpoint replaces the regional endpoint URL (a VPC endpoint, a
	// proxy, a test server); empty resolves it from the region.
	BaseEndpoint string
	// BearerToken is a Bedrock API key: requests carry "Authorization:
	// Bearer" instead of a SigV4 signature. The SDK also picks it up from
	// AWS_BEARER_TOKEN_BEDROCK in the process environment by itself.
	BearerToken string
	// Credentials replaces the default credential chain for SigV4.
	Credentials aws.CredentialsProvider
	// HTTPClient sends the requests; nil uses the SDK's. Its Timeout must be
	// zero or longer than any answer: ctx bounds each call instead.
	HTTPClient *http.Client
	// RetryMaxAttempts caps the attempts of a call that fails before its
	// stream starts; 0 keeps the SDK's default. Failures mid-stream are never
	// retried: text has already been emitted.
	RetryMaxAttempts int
	// MaxTokens caps the answer's length, reasoning included; 0 leaves it
	// to the model, or, with thinking on, is ThinkingBudget plus
	// DefaultAnswerTokens.
	MaxTokens int
	// Temperature is sent when set. Claude allows none but 1 with thinking
	// on.
	Temperature *float64
	// ThinkingBudget turns Claude's extended thinking on, passed in the
	// model's own request fields (additionalModelRequestFields): the model
	// may reason for up to this many tokens (at least MinThinkingBudget,
	// less than MaxTokens) before it answers, and its reasoning streams as
	// chat.PartReasoning. 0 leaves thinking off. Models other than Claude
	// refuse it.
	ThinkingBudget int
}

// MinThinkingBudget is the smallest thinking budget Claude accepts.
const MinThinkingBudget = 1024

// DefaultAnswerTokens is the room left for the answer beyond the thinking
// budget when thinking is on and Options.MaxTokens is 0: Claude requires a
// cap above the budget.
const DefaultAnswerTokens = 1024

// FromEnv reads the variables that choose a region and a Bedrock API key:
// AWS_REGION (else AWS_DEFAULT_REGION) and AWS_BEARER_TOKEN_BEDROCK. Keys,
// profiles and endpoint URLs (AWS_ACCESS_KEY_ID, AWS_PROFILE,
// AWS_ENDPOINT_URL_BEDROCK_RUNTIME, ...) are read by New through the SDK's
// default chain. It fails on nothing today; the error keeps it in line with
// the other providers.
func FromEnv(getenv func(string) string) (Options, error) {
	opts := Options{Region: getenv("AWS_REGION"), BearerToken: getenv("AWS_BEARER_TOKEN_BEDROCK")}
	if opts.Region == "" {
		opts.Region = getenv("AWS_DEFAULT_REGION")
	}
	return opts, nil
}

// Provider streams ConverseStream answers. It is safe for concurrent use.
type Provider struct {
	client         *bedrockruntime.Client
	maxTokens      *int32
	temperature    *float32
	thinkingBudget int
}

// New loads the AWS configuration and returns a provider. ctx bounds only
// the loading (which may read files or ask an SSO cache), not later calls.
func New(ctx context.Context, opts Options) (*Provider, error) {
	if opts.ThinkingBudget != 0 && opts.MaxTokens <= 0 {
		opts.MaxTokens = opts.ThinkingBudget + DefaultAnswerTokens
	}
	if err := checkThinking(opts); err != nil {
		return nil, fmt.Errorf("bedrock: %w", err)
	}
	var load []func(*config.LoadOptions) error
	if opts.Region != "" {
		load = append(load, config.WithRegion(opts.Region))
	}
	if opts.Credentials != nil {
		load = append(load, config.WithCredentialsProvider(opts.Credentials))
	}
	if opts.RetryMaxAttempts > 0 {
		load = append(load, config.WithRetryMaxAttempts(opts.RetryMaxAttempts))
	}
	cfg, err := config.LoadDefaultConfig(ctx, load...)
	if err != nil {
		return nil, fmt.Errorf("bedrock: load AWS config: %w", err)
	}
	if cfg.Region == "" {
		return nil, errors.New("bedrock: no AWS region: set AWS_REGION or a profile's region")
	}
	client := bedrockruntime.NewFromConfig(cfg, func(o *bedrockruntime.Options) {
		// The client is Bedrock's alone: the credential chain (SSO, STS)
		// keeps the SDK's, which honours AWS_CA_BUNDLE.
		if opts.HTTPClient != nil {
			o.HTTPClient = opts.HTTPClient
		}
		o.HTTPClient = plainBodies{o.HTTPClient}
		if opts.BaseEndpoint != "" {
			o.BaseEndpoint = aws.String(opts.BaseEndpoint)
		}
		if opts.BearerToken != "" {
			o.BearerAuthTokenProvider = bearer.StaticTokenProvider{Token: bearer.Token{Value: opts.BearerToken}}
			o.AuthSchemePreference = []string{"httpBearerAuth"}
		}
	})
	p := &Provider{client: client, thinkingBudget: opts.ThinkingBudget}
	if opts.MaxTokens > 0 {
		p.maxTokens = aws.Int32(int32(min(opts.MaxTokens, 1<<31-1)))
	}
	if opts.Temperature != nil {
		p.temperature = aws.Float32(float32(*opts.Temperature))
	}
	return p, nil
}

// checkThinking refuses, when the server starts, what Claude would refuse on
// every call.
func checkThinking(opts Options) error {
	switch budget := opts.ThinkingBudget; {
	case budget == 0:
		return nil
	case budget < MinThinkingBudget:
		return fmt.Errorf("thinking budget %d is below the minimum of %d tokens", budget, MinThinkingBudget)
	case opts.MaxTokens <= budget:
		return fmt.Errorf("max tokens %d must be larger than the thinking budget %d", opts.MaxTokens, budget)
	case opts.Temperature != nil && *opts.Temperature != 1:
		return errors.New("a temperature other than 1 cannot be set with thinking on")
	}
	return nil
}

// Stream asks for an answer to p and emits its parts as they arrive.
// Cancelling ctx cancels the upstream request, also before its first byte.
func (p *Provider) Stream(ctx context.Context, prompt chat.Prompt, emit func(chat.Part) error) (chat.Final, error) {
	in, err := p.input(prompt)
	if err != nil {
		return chat.Final{}, err
	}
	out, err := p.client.ConverseStream(ctx, in, ownCodec)
	if err != nil {
		if ctx.Err() != nil {
			return chat.Final{}, fmt.Errorf("bedrock: %w", ctx.Err())
		}
		return chat.Final{}, mapError(err)
	}
	stream := out.GetStream()
	defer stream.Close()

	d := newDecoder(emit)
	for event := range stream.Events() {
		if err := d.handle(event); err != nil {
			return chat.Final{}, err
		}
	}
	if err := stream.Err(); err != nil {
		if ctx.Err() != nil {
			return chat.Final{}, fmt.Errorf("bedrock: %w", ctx.Err())
		}
		return chat.Final{}, mapError(err)
	}
	return d.complete()
}

// ownCodec gives one call a protocol of its own. The SDK's protocol keeps a
// single event stream codec per client, whose scratch state every open
// stream's reader writes without a lock (aws/smithy-go#714): answers
// streamed at once, or one that starts while the reader of an abandoned
// one is still draining, race. A codec per call shares nothing.
func ownCodec(o *bedrockruntime.Options) {
	o.Protocol = restjson1.New(schemas.AmazonBedrockFrontendService)
}

// plainBodies sends requests whose bodies offer only Read and Close.
//
// The SDK closes a request's body as soon as the response headers arrive,
// and its body wrapper then answers WriteTo with io.EOF. net/http may still
// be checking that body for bytes beyond its Content-Length at that moment
// (a server that answers as soon as it has read the request makes that
// likely under load); it takes the io.EOF for a failed write and closes the
// connection under the response, so the stream dies with "use of closed
// network connection" before its first event. Through Read alone, a closed
// body is a plain end of body.
type plainBodies struct {
	next bedrockruntime.HTTPClient
}

// Do sends req through the wrapped client.
func (c plainBodies) Do(req *http.Request) (*http.Response, error) {
	if req.Body != nil && req.Body != http.NoBody {
		req.Body = struct{ io.ReadCloser }{req.Body}
	}
	return c.next.Do(req)
}

package upstream

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/tokencast/tokencast/internal/chat"
)

// Stream sends req with client and hands the body of a 200 answer to decode.
// A transport failure is PROVIDER_UNAVAILABLE, any other status is mapped by
// StatusError, and a failure caused by ctx (the caller hung up) is returned
// as ctx's error, never as the provider's fault.
func Stream(ctx context.Context, provider string, client *http.Client, req *http.Request, decode func(io.Reader) (chat.Final, error)) (chat.Final, error) {
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return chat.Final{}, fmt.Errorf("%s: %w", provider, ctx.Err())
		}
		return chat.Final{}, &Error{Provider: provider, Code: CodeUnavailable, Message: MsgUnavailable, Cause: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		e := StatusError(resp, time.Now())
		e.Provider = provider
		return chat.Final{}, e
	}
	final, err := decode(resp.Body)
	if err != nil && ctx.Err() != nil {
		// What the provider reported before the stop is still billed.
		return final, fmt.Errorf("%s: %w", provider, ctx.Err())
	}
	return final, err
}

// CheckBaseURL accepts an http(s) URL with a host: where a provider's API
// lives.
func CheckBaseURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL", raw)
	}
	return nil
}

// Client is c, or, when c is nil, the client every provider shares.
func Client(c *http.Client) *http.Client {
	if c == nil {
		return shared
	}
	return c
}

// maxIdlePerHost is how many idle connections to one provider are kept
// open. Go's default is 2: with more answers than that streaming from one
// host at once (every answer of a deployment goes to the same API), each
// new call beyond it would dial, and with TLS shake hands, again.
const maxIdlePerHost = 512

// shared is http.DefaultClient's transport with a pool sized for a
// gateway: many calls at once to a few hosts.
var shared = func() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 4 * maxIdlePerHost
	t.MaxIdleConnsPerHost = maxIdlePerHost
	return &http.Client{Transport: t}
}()

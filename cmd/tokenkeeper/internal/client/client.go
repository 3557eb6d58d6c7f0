// Package client talks to a running tokenkeeper agent over its local API
// (docs/agent-api.md), on a Unix socket or on loopback TCP with the bearer
// secret. The command's status and token subcommands and the dev workload
// use it.
package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper/agent"
)

// Client is an agent's API client. It is safe for concurrent use.
type Client struct {
	base   string // "http://127.0.0.1:7878" or "http://agent" for a socket
	secret string
	hc     *http.Client
}

// New returns a client for the agent listening at network ("unix" or "tcp")
// and address. secret is the bearer secret (needed on TCP; ignored if
// empty).
func New(network, address, secret string) *Client {
	tr := &http.Transport{
		MaxIdleConns:        64,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}
	base := "http://" + address
	if network == "unix" {
		path := address
		d := net.Dialer{Timeout: 5 * time.Second}
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", path)
		}
		// Any loopback name: the agent checks Host only on TCP.
		base = "http://localhost"
	} else {
		d := net.Dialer{Timeout: 5 * time.Second}
		tr.DialContext = d.DialContext
	}
	return &Client{base: base, secret: secret, hc: &http.Client{Transport: tr}}
}

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// BaseURL returns the URL requests are sent to (for TCP, the status page's
// address).
func (c *Client) BaseURL() string { return c.base }

// Error is an error answer of the agent.
type Error struct {
	Status     int
	Code       string // such as "unknown_token", "reauth_required"
	Message    string
	RetryAfter string
}

func (e *Error) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("agent answered HTTP %d", e.Status)
	}
	return fmt.Sprintf("agent: %s (HTTP %d, %s)", e.Message, e.Status, e.Code)
}

// Token is the agent's answer to a token request.
type Token struct {
	AccessToken string    `json:"access_token"`
	TokenType   string    `json:"token_type"`
	ExpiresAt   time.Time `json:"expires_at,omitzero"`
	IDToken     string    `json:"id_token,omitempty"`
}

// Status is one token's status as the agent reports it.
type Status = agent.TokenStatus

// Event is one event of the agent's event stream.
type Event = agent.EventJSON

func (c *Client) do(ctx context.Context, method, path string, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.secret != "" {
		req.Header.Set("Authorization", "Bearer "+c.secret)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return unreachable(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("reading the agent's answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		e := &Error{Status: resp.StatusCode, RetryAfter: resp.Header.Get("Retry-After")}
		var eb struct {
			Error string `json:"error"`
			Code  string `json:"code"`
		}
		if json.Unmarshal(b, &eb) == nil {
			e.Message, e.Code = eb.Error, eb.Code
		}
		return e
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("the agent's answer is not what this client expects: %w", err)
	}
	return nil
}

// ErrUnreachable is wrapped by errors that mean no agent answered.
var ErrUnreachable = errors.New("agent not reachable")

func unreachable(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("%w: %v", ErrUnreachable, err)
}

// Token fetches a token; minValid > 0 asks for one valid at least that long.
func (c *Client) Token(ctx context.Context, name string, minValid time.Duration) (*Token, error) {
	p := "/v1/tokens/" + url.PathEscape(name)
	if minValid > 0 {
		p += "?min_valid=" + url.QueryEscape(minValid.String())
	}
	var t Token
	if err := c.do(ctx, "GET", p, nil, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// List returns every token's status.
func (c *Client) List(ctx context.Context) ([]Status, error) {
	var l struct {
		Tokens []Status `json:"tokens"`
	}
	if err := c.do(ctx, "GET", "/v1/tokens", nil, &l); err != nil {
		return nil, err
	}
	return l.Tokens, nil
}

// Refresh refreshes a token now and returns its new status.
func (c *Client) Refresh(ctx context.Context, name string) (*Status, error) {
	var st Status
	if err := c.do(ctx, "POST", "/v1/tokens/"+url.PathEscape(name)+"/refresh", nil, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// Activity reports user activity.
func (c *Client) Activity(ctx context.Context) error {
	return c.do(ctx, "POST", "/v1/activity", nil, nil)
}

// Healthz checks that the agent is alive.
func (c *Client) Healthz(ctx context.Context) error {
	return c.do(ctx, "GET", "/healthz", nil, nil)
}

// Events follows the event stream until ctx ends or the agent closes it,
// calling fn for each event.
func (c *Client) Events(ctx context.Context, fn func(Event)) error {
	req, err := http.NewRequestWithContext(ctx, "GET", c.base+"/v1/events", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	if c.secret != "" {
		req.Header.Set("Authorization", "Bearer "+c.secret)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return unreachable(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return &Error{Status: resp.StatusCode}
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var data strings.Builder
	kind := ""
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if kind == "close" {
				return nil // the agent is shutting down
			}
			if data.Len() > 0 {
				var e Event
				if json.Unmarshal([]byte(data.String()), &e) == nil && e.Kind != "" {
					fn(e)
				}
			}
			data.Reset()
			kind = ""
		case strings.HasPrefix(line, "event:"):
			kind = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "data:"):
			if data.Len() > 0 {
				data.WriteByte('\n')
			}
			data.WriteString(strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return sc.Err()
}

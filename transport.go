package tokenkeeper

import (
	"errors"
	"io"
	"net/http"
	"strings"

	"golang.org/x/oauth2"
)

// Transport is an http.RoundTripper that authorizes each request with a kept
// token: the interceptor between an application and the APIs it calls.
//
// For each request it takes the token from Handle (without waiting while a
// valid token is cached; the fetch also counts as activity for the usage
// model), sets "Authorization: <type> <token>" on a clone of the request and
// sends the clone through Base. The caller's request is never modified.
//
// When the server rejects the token (status 401, or any answer carrying a
// WWW-Authenticate challenge with error="invalid_token"), Transport calls
// [Handle.Invalidate] with the rejected token: if it is still the current
// one, it stops being handed out and an urgent refresh starts; if it was
// already replaced, nothing happens, so many requests rejected together cause
// one refresh at most. The request is then sent once more, with the new
// token, if its body can be replayed (it has none, or GetBody is set, as for
// the bodies http.NewRequest builds from a bytes.Buffer, bytes.Reader or
// strings.Reader). Only the retry waits for the refresh: the token was
// rejected, so no valid token is at hand. There is never a second retry. If
// the body cannot be replayed, the rejection is returned as it is.
//
// If no token can be had, RoundTrip returns the keeper's error (match it with
// errors.Is against [ErrReauthRequired], [ErrCircuitOpen], [ErrClosed]); an
// http.Client wraps it in a *url.Error. As http.RoundTripper requires, the
// request's body is closed on every path.
//
// A Transport is safe for concurrent use. Its zero value is not usable:
// Handle is required.
type Transport struct {
	// Handle supplies the token. Required.
	Handle *Handle
	// Base sends the authorized requests. If nil, http.DefaultTransport.
	Base http.RoundTripper
}

// NewClient returns an *http.Client whose requests are authorized with h's
// token by a [Transport] over base (http.DefaultTransport if nil).
func NewClient(h *Handle, base http.RoundTripper) *http.Client {
	return &http.Client{Transport: &Transport{Handle: h, Base: base}}
}

// errNoHandle is returned by a Transport without a Handle.
var errNoHandle = errors.New("tokenkeeper: Transport has no Handle")

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	// Until the body is handed to Base (which then owns it), closing it is
	// our job.
	bodyOwned := true
	defer func() {
		if bodyOwned && req.Body != nil {
			_ = req.Body.Close()
		}
	}()
	if t.Handle == nil {
		return nil, errNoHandle
	}
	ctx := req.Context()
	tok, err := t.Handle.TokenContext(ctx)
	if err != nil {
		return nil, err
	}
	replayable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil

	bodyOwned = false
	resp, err := t.base().RoundTrip(authorized(req, req.Body, tok))
	if err != nil || !rejected(resp) {
		return resp, err
	}

	t.Handle.Invalidate(tok)
	if !replayable {
		return resp, nil
	}
	body, err := replayBody(req)
	if err != nil {
		// The body cannot be had again after all: the rejection stands.
		return resp, nil
	}
	tok2, err := t.Handle.TokenContext(ctx)
	if err != nil || tok2.AccessToken == tok.AccessToken {
		closeBody(body)
		if err != nil {
			discard(resp)
			return nil, err
		}
		return resp, nil
	}
	discard(resp)
	return t.base().RoundTrip(authorized(req, body, tok2))
}

func (t *Transport) base() http.RoundTripper {
	if t.Base != nil {
		return t.Base
	}
	return http.DefaultTransport
}

// authorized returns a clone of req with body and tok's Authorization header.
func authorized(req *http.Request, body io.ReadCloser, tok *oauth2.Token) *http.Request {
	r := req.Clone(req.Context())
	r.Body = body
	tok.SetAuthHeader(r)
	return r
}

// replayBody returns a fresh copy of req's body for a retry.
func replayBody(req *http.Request) (io.ReadCloser, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return req.Body, nil
	}
	return req.GetBody()
}

func closeBody(b io.ReadCloser) {
	if b != nil {
		_ = b.Close()
	}
}

// discard drains a little of resp's body, so the connection can be reused,
// and closes it.
func discard(resp *http.Response) {
	if resp == nil || resp.Body == nil {
		return
	}
	_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
	_ = resp.Body.Close()
}

// rejected reports whether resp says the token was not accepted: status 401,
// or a challenge with error="invalid_token" (RFC 6750, section 3.1).
func rejected(resp *http.Response) bool {
	if resp.StatusCode == http.StatusUnauthorized {
		return true
	}
	for _, v := range resp.Header.Values("WWW-Authenticate") {
		if challengeError(v) == "invalid_token" {
			return true
		}
	}
	return false
}

// challengeError returns the value of the first error auth-param in a
// WWW-Authenticate header value (RFC 9110, section 11.6.1), quoted or not.
// It is lenient: it looks for `error=` at the start of a parameter.
func challengeError(v string) string {
	for i := 0; i < len(v); {
		j := strings.Index(strings.ToLower(v[i:]), "error")
		if j < 0 {
			return ""
		}
		p := i + j
		i = p + len("error")
		if p > 0 {
			if c := v[p-1]; c != ' ' && c != ',' && c != '\t' {
				continue // part of a longer name, such as error_description
			}
		}
		k := i
		for k < len(v) && (v[k] == ' ' || v[k] == '\t') {
			k++
		}
		if k >= len(v) || v[k] != '=' {
			continue
		}
		k++
		for k < len(v) && (v[k] == ' ' || v[k] == '\t') {
			k++
		}
		if k < len(v) && v[k] == '"' {
			end := strings.IndexByte(v[k+1:], '"')
			if end < 0 {
				return v[k+1:]
			}
			return v[k+1 : k+1+end]
		}
		end := k
		for end < len(v) && v[end] != ',' && v[end] != ' ' && v[end] != '\t' {
			end++
		}
		return v[k:end]
	}
	return ""
}

package oidc

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"golang.org/x/oauth2"
)

// Grant names the OAuth2 grant a Source uses.
type Grant string

const (
	// GrantRefreshToken renews a token with its refresh token (RFC 6749,
	// section 6). It is the default.
	GrantRefreshToken Grant = "refresh_token"
	// GrantClientCredentials obtains a token for the client itself (RFC
	// 6749, section 4.4). It needs no current token.
	GrantClientCredentials Grant = "client_credentials"
)

const (
	// DefaultMaxResponseBytes is Config.MaxResponseBytes when zero.
	DefaultMaxResponseBytes = 1 << 20
	// MaxLifetime is the longest lifetime a Source believes: an expires_in
	// or exp claim further away is clamped to it, with a warning.
	MaxLifetime = 365 * 24 * time.Hour
	// ReuseAlways, as Config.ReuseGrace, says the server accepts a refresh
	// token any number of times: it does not rotate refresh tokens, or does
	// not detect their reuse.
	ReuseAlways time.Duration = math.MaxInt64
)

// Config configures a Source. ClientID and one of Endpoint.TokenURL and
// Issuer are required; every other zero field has the meaning its comment
// gives.
type Config struct {
	// ClientID identifies the client. Required.
	ClientID string
	// ClientSecret authenticates a confidential client. If empty, the
	// client is public: client_id is sent in the request body and no
	// secret at all.
	ClientSecret string

	// Endpoint is the token endpoint. Endpoint.AuthStyle says how the
	// client authenticates: oauth2.AuthStyleInHeader (client_secret_basic),
	// oauth2.AuthStyleInParams (client_secret_post), or
	// oauth2.AuthStyleAutoDetect (the zero value): the style the issuer's
	// metadata advertises, else Basic first, then the body if the server
	// refuses Basic with invalid_client (the server has then not looked at
	// the grant, so nothing is spent), remembered from then on.
	// Endpoint.AuthURL is not used.
	Endpoint oauth2.Endpoint
	// Issuer is the OpenID Provider's issuer URL. If Endpoint.TokenURL is
	// empty, the token endpoint is discovered from
	// Issuer + "/.well-known/openid-configuration" at the first refresh
	// (see [Discover]), and cached once found.
	Issuer string

	// Grant is the grant to use. If empty, GrantRefreshToken.
	Grant Grant
	// Scopes are sent as the scope parameter when not empty. (With
	// GrantRefreshToken they may only narrow the original grant.)
	Scopes []string
	// EndpointParams are extra parameters for the token request, such as
	// audience or resource.
	EndpointParams url.Values

	// HTTPClient sends the requests. If nil, the *http.Client in the ctx
	// under oauth2.HTTPClient, else http.DefaultClient. Redirects from the
	// token endpoint are never followed. The client must not retry requests
	// on its own: a refresh token must not be sent twice.
	HTTPClient *http.Client

	// DefaultLifetime is the lifetime of a token whose answer has neither
	// expires_in nor a JWT access token with an exp claim. If zero, such a
	// token has no expiry (the keeper's Policy.DefaultLifetime then
	// applies).
	DefaultLifetime time.Duration

	// ReuseGrace is how long after the server has rotated a refresh token
	// it still accepts the old one (the reuse interval or grace period of
	// Hydra, Okta, Auth0 and others), or ReuseAlways for a server that does
	// not rotate refresh tokens. It matters when a refresh request's
	// outcome is unknown: the request was sent but the answer was lost,
	// truncated or unusable, so the server may have rotated the token.
	// Within ReuseGrace of the first sending, the Source sends the same
	// refresh token again (once at once, then at the keeper's retries);
	// after it, or if ReuseGrace is zero, it never does: the attempt fails
	// permanently with ErrOutcomeUnknown and the keeper asks for
	// re-authentication, rather than trip the server's reuse detection,
	// which would revoke the whole grant. A Source that has seen the server
	// answer a refresh without a new refresh token treats it as
	// ReuseAlways.
	ReuseGrace time.Duration

	// MaxResponseBytes bounds the answers read. If zero,
	// DefaultMaxResponseBytes.
	MaxResponseBytes int64

	// Logger receives warnings about dubious answers (an absurd expires_in,
	// an exp claim in the past). Token values are never logged. If nil,
	// slog.Default().
	Logger *slog.Logger
}

// String describes the configuration without the client secret.
func (c Config) String() string {
	secret := ""
	if c.ClientSecret != "" {
		secret = " secret:[redacted]"
	}
	return fmt.Sprintf("oidc.Config{client %q%s, token URL %q, issuer %q, grant %q}",
		c.ClientID, secret, c.Endpoint.TokenURL, c.Issuer, string(c.Grant))
}

// GoString is String, so that %#v shows no secret either.
func (c Config) GoString() string { return c.String() }

// Source obtains tokens from an OAuth2 or OpenID Connect token endpoint. It
// implements tokenkeeper.Source; add it to a Keeper with
// tokenkeeper.TokenConfig.
//
// Its errors are *tokenkeeper.RefreshError values with the server's RFC 6749
// code, a redacted body, Retry-After, and whether retrying can help:
// invalid_grant, invalid_client, unauthorized_client (and the other codes
// [tokenkeeper.IsPermanentCode] lists) are permanent, as is a bare 401; 5xx,
// 429, other error codes, network errors and timeouts are transient, except
// that a refresh request whose outcome is unknown is never blindly repeated
// (see Config.ReuseGrace). The cause is one of this package's Err values
// where one applies.
//
// The new token the server returns, with its rotated refresh token, goes back
// to the keeper, which saves it in its Store before handing out its access
// token; an answer without a refresh token keeps the current one. A Source
// remembers the refresh tokens it has seen exchanged and refuses to send them
// again.
//
// A Source is safe for concurrent use and may serve many tokens.
type Source struct {
	cfg     Config
	log     *slog.Logger
	maxBody int64

	mu        sync.Mutex
	endpoint  oauth2.Endpoint // resolved token endpoint
	resolved  bool
	style     oauth2.AuthStyle // learned, when auto-detecting
	sent      map[[32]byte]*sentRecord
	sentOrder [][32]byte
	noRotate  bool // the server answered a refresh without a new refresh token
}

// sentRecord is what the Source knows of a refresh token it sent.
type sentRecord struct {
	spent   bool      // exchanged for a new one
	unknown time.Time // first sending with an unknown outcome (zero: none)
}

// maxSentRecords bounds the memory of sent refresh tokens.
const maxSentRecords = 1024

// New returns a Source for cfg. It does no I/O: discovery, if needed,
// happens at the first refresh.
func New(cfg Config) (*Source, error) {
	if cfg.ClientID == "" {
		return nil, errors.New("oidc: Config.ClientID is empty")
	}
	switch cfg.Grant {
	case "":
		cfg.Grant = GrantRefreshToken
	case GrantRefreshToken, GrantClientCredentials:
	default:
		return nil, fmt.Errorf("oidc: unsupported grant %q", string(cfg.Grant))
	}
	if cfg.Endpoint.TokenURL == "" && cfg.Issuer == "" {
		return nil, errors.New("oidc: neither Config.Endpoint.TokenURL nor Config.Issuer is set")
	}
	for _, u := range []string{cfg.Endpoint.TokenURL, cfg.Issuer} {
		if u == "" {
			continue
		}
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
			return nil, fmt.Errorf("oidc: %q is not an absolute http(s) URL", u)
		}
	}
	switch cfg.Endpoint.AuthStyle {
	case oauth2.AuthStyleAutoDetect, oauth2.AuthStyleInHeader, oauth2.AuthStyleInParams:
	default:
		return nil, fmt.Errorf("oidc: unknown AuthStyle %d", cfg.Endpoint.AuthStyle)
	}
	if cfg.DefaultLifetime < 0 || cfg.DefaultLifetime > MaxLifetime {
		return nil, fmt.Errorf("oidc: Config.DefaultLifetime %v is outside [0, %v]", cfg.DefaultLifetime, MaxLifetime)
	}
	if cfg.ReuseGrace < 0 {
		return nil, fmt.Errorf("oidc: Config.ReuseGrace %v is negative", cfg.ReuseGrace)
	}
	if cfg.MaxResponseBytes < 0 {
		return nil, fmt.Errorf("oidc: Config.MaxResponseBytes %d is negative", cfg.MaxResponseBytes)
	}
	cfg.Scopes = append([]string(nil), cfg.Scopes...)
	if cfg.EndpointParams != nil {
		p := make(url.Values, len(cfg.EndpointParams))
		for k, v := range cfg.EndpointParams {
			p[k] = append([]string(nil), v...)
		}
		cfg.EndpointParams = p
	}
	s := &Source{cfg: cfg, log: cfg.Logger, maxBody: cfg.MaxResponseBytes, sent: make(map[[32]byte]*sentRecord)}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.maxBody == 0 {
		s.maxBody = DefaultMaxResponseBytes
	}
	if cfg.Endpoint.TokenURL != "" {
		s.endpoint, s.resolved = cfg.Endpoint, true
	}
	return s, nil
}

// String describes the Source without its secret.
func (s *Source) String() string {
	return fmt.Sprintf("oidc.Source(client %q, grant %s)", s.cfg.ClientID, s.cfg.Grant)
}

// GoString is String, so that %#v shows no secret either.
func (s *Source) GoString() string { return s.String() }

// Refresh obtains a new token: with GrantRefreshToken it exchanges
// current's refresh token, with GrantClientCredentials it ignores current.
func (s *Source) Refresh(ctx context.Context, current *oauth2.Token) (*oauth2.Token, error) {
	ep, err := s.resolve(ctx)
	if err != nil {
		return nil, err
	}
	if s.cfg.Grant == GrantClientCredentials {
		return s.clientCredentials(ctx, ep)
	}
	return s.refresh(ctx, ep, current)
}

func (s *Source) clientCredentials(ctx context.Context, ep oauth2.Endpoint) (*oauth2.Token, error) {
	form := s.form("client_credentials")
	r := s.exchange(ctx, ep, form, nil)
	if r.out == outcomeOK {
		return r.tok, nil
	}
	// No refresh token is at stake: whatever the outcome, asking again is
	// safe, so only the server's verdict makes a failure permanent.
	if r.out != outcomeRejected && !errors.Is(r.err, ErrUnsupportedTokenType) {
		r.err.Permanent = false
	}
	return nil, r.err
}

func (s *Source) refresh(ctx context.Context, ep oauth2.Endpoint, cur *oauth2.Token) (*oauth2.Token, error) {
	if cur == nil || cur.RefreshToken == "" {
		return nil, &tokenkeeper.RefreshError{Permanent: true, Err: ErrNoRefreshToken}
	}
	rt := cur.RefreshToken
	key := sha256.Sum256([]byte(rt))
	form := s.form("refresh_token")
	form.Set("refresh_token", rt)
	for try := 0; ; try++ {
		if err := s.admit(key, time.Now()); err != nil {
			return nil, err
		}
		r := s.exchange(ctx, ep, form, []string{rt})
		switch r.out {
		case outcomeOK:
			s.settle(key, rt, r.tok)
			return r.tok, nil
		case outcomeRejected, outcomeNotSent:
			// The server did not use the refresh token (or never saw it):
			// the keeper may try again with it.
			return nil, r.err
		}
		// Unknown outcome: the server may have rotated the token.
		now := time.Now()
		s.markUnknown(key, r.sentAt)
		if r.err.Permanent {
			return nil, r.err // an answer no retry can improve (token_type)
		}
		if !s.resendAllowed(key, now) {
			r.err.Permanent = true
			r.err.Err = fmt.Errorf("%w: %w", ErrOutcomeUnknown, r.err.Err)
			return nil, r.err
		}
		if try == 0 && ctx.Err() == nil {
			continue // resend at once, within the grace period
		}
		r.err.Permanent = false
		return nil, r.err
	}
}

// form returns the parameters common to every request of grant.
func (s *Source) form(grant string) url.Values {
	v := url.Values{"grant_type": {grant}}
	if len(s.cfg.Scopes) > 0 {
		v.Set("scope", strings.Join(s.cfg.Scopes, " "))
	}
	for k, vs := range s.cfg.EndpointParams {
		if k == "grant_type" || k == "refresh_token" || k == "client_id" || k == "client_secret" {
			continue // never let a parameter override the grant or the client
		}
		v[k] = append([]string(nil), vs...)
	}
	return v
}

// admit refuses to send a refresh token that was exchanged already, or whose
// earlier sending had an unknown outcome when resending is not allowed.
func (s *Source) admit(key [32]byte, now time.Time) error {
	s.mu.Lock()
	rec := s.sent[key]
	s.mu.Unlock()
	switch {
	case rec == nil:
		return nil
	case rec.spent:
		return &tokenkeeper.RefreshError{Permanent: true, Err: ErrRefreshTokenSpent}
	case !rec.unknown.IsZero() && !s.resendAllowed(key, now):
		return &tokenkeeper.RefreshError{Permanent: true,
			Err: withDetail(ErrOutcomeUnknown, "an earlier request with this refresh token got no usable answer", nil)}
	}
	return nil
}

// resendAllowed reports whether a refresh token whose earlier sending had an
// unknown outcome may be sent again now.
func (s *Source) resendAllowed(key [32]byte, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.noRotate || s.cfg.ReuseGrace == ReuseAlways {
		return true
	}
	rec := s.sent[key]
	if rec == nil || rec.unknown.IsZero() {
		return true
	}
	return s.cfg.ReuseGrace > 0 && now.Sub(rec.unknown) < s.cfg.ReuseGrace
}

// markUnknown records that key was sent at t with an unknown outcome (the
// first such sending counts).
func (s *Source) markUnknown(key [32]byte, t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.record(key)
	if rec.unknown.IsZero() {
		rec.unknown = t
	}
}

// settle records a successful exchange of rt.
func (s *Source) settle(key [32]byte, rt string, tok *oauth2.Token) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if tok.RefreshToken == "" || tok.RefreshToken == rt {
		// The server does not rotate: rt stays good.
		s.noRotate = true
		delete(s.sent, key)
		return
	}
	rec := s.record(key)
	rec.spent = true
	rec.unknown = time.Time{}
}

// record returns key's record, creating it (and forgetting the oldest if
// there are too many); s.mu held.
func (s *Source) record(key [32]byte) *sentRecord {
	if rec := s.sent[key]; rec != nil {
		return rec
	}
	for len(s.sentOrder) >= maxSentRecords {
		delete(s.sent, s.sentOrder[0])
		s.sentOrder = s.sentOrder[1:]
	}
	rec := &sentRecord{}
	s.sent[key] = rec
	s.sentOrder = append(s.sentOrder, key)
	return rec
}

// exchangeResult is a tokenResult with the moment the request was sent.
type exchangeResult struct {
	tokenResult
	sentAt time.Time
}

// exchange posts form to the token endpoint with client authentication,
// falling back from Basic to the body when auto-detecting.
func (s *Source) exchange(ctx context.Context, ep oauth2.Endpoint, form url.Values, secrets []string) exchangeResult {
	secrets = append(secrets, s.cfg.ClientSecret)
	style, auto := s.authStyle(ep)
	r := s.post(ctx, ep.TokenURL, form, style, secrets)
	if auto && s.cfg.ClientSecret != "" && style == oauth2.AuthStyleInHeader && refusedClient(r) {
		// The server refused the client before looking at the grant: the
		// same grant may be sent again with the other style.
		style = oauth2.AuthStyleInParams
		r = s.post(ctx, ep.TokenURL, form, style, secrets)
	}
	if auto && (r.out == outcomeOK || r.out == outcomeRejected && !refusedClient(r)) {
		s.mu.Lock()
		s.style = style
		s.mu.Unlock()
	}
	return r
}

func refusedClient(r exchangeResult) bool {
	return r.out == outcomeRejected && (r.err.Code == "invalid_client" || r.err.Code == "" && r.err.Status == http.StatusUnauthorized)
}

// authStyle returns the style to use and whether it is still being
// detected.
func (s *Source) authStyle(ep oauth2.Endpoint) (oauth2.AuthStyle, bool) {
	if ep.AuthStyle != oauth2.AuthStyleAutoDetect {
		return ep.AuthStyle, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.style != oauth2.AuthStyleAutoDetect {
		return s.style, false
	}
	return oauth2.AuthStyleInHeader, true
}

// errTooLarge ends a read that exceeded the size limit.
var errTooLarge = errors.New("oidc: answer exceeds the size limit")

// post sends one token request and interprets the answer.
func (s *Source) post(ctx context.Context, tokenURL string, form url.Values, style oauth2.AuthStyle, secrets []string) exchangeResult {
	v := make(url.Values, len(form)+2)
	for k, vs := range form {
		v[k] = vs
	}
	if s.cfg.ClientSecret == "" || style == oauth2.AuthStyleInParams {
		v.Set("client_id", s.cfg.ClientID)
		if s.cfg.ClientSecret != "" {
			v.Set("client_secret", s.cfg.ClientSecret)
		}
	}
	// Whether the request left the client decides whether it may be
	// repeated. A transport that reports nothing (not an *http.Transport)
	// counts as having sent it.
	var traced, wrote atomic.Bool
	trace := &httptrace.ClientTrace{
		GetConn: func(string) { traced.Store(true) },
		WroteRequest: func(i httptrace.WroteRequestInfo) {
			if i.Err == nil {
				wrote.Store(true)
			}
		},
	}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodPost, tokenURL, strings.NewReader(v.Encode()))
	if err != nil {
		return exchangeResult{tokenResult: tokenResult{
			err: &tokenkeeper.RefreshError{Permanent: true, Err: withDetail(ErrTokenEndpoint, "bad token URL", nil)},
			out: outcomeRejected}}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if s.cfg.ClientSecret != "" && style != oauth2.AuthStyleInParams {
		req.SetBasicAuth(url.QueryEscape(s.cfg.ClientID), url.QueryEscape(s.cfg.ClientSecret))
	}
	sentAt := time.Now()
	resp, err := s.tokenClient(ctx).Do(req)
	if err != nil {
		out := outcomeUnknown
		if traced.Load() && !wrote.Load() {
			out = outcomeNotSent
		}
		return exchangeResult{
			tokenResult: tokenResult{err: &tokenkeeper.RefreshError{Err: scrubURLError(err, secrets)}, out: out},
			sentAt:      sentAt,
		}
	}
	defer resp.Body.Close()
	body, readErr := readLimited(resp.Body, s.maxBody)
	return exchangeResult{tokenResult: s.interpret(resp.StatusCode, resp.Header, body, readErr, time.Now(), secrets), sentAt: sentAt}
}

// scrubURLError removes secrets from a transport error's text. The errors
// net/http returns carry the URL and the cause, never the body, but a custom
// transport may say anything.
func scrubURLError(err error, secrets []string) error {
	msg := err.Error()
	if r := redact(msg, secrets); r != msg {
		return &scrubbed{msg: r, err: err}
	}
	return err
}

// scrubbed is an error whose text had secrets removed; it still matches
// its cause with errors.Is and errors.As.
type scrubbed struct {
	msg string
	err error
}

func (e *scrubbed) Error() string { return e.msg }
func (e *scrubbed) Unwrap() error { return e.err }

// readLimited reads at most n bytes of r; it returns errTooLarge if there
// was more.
func readLimited(r io.Reader, n int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, n+1))
	if int64(len(b)) > n {
		return b[:n], errTooLarge
	}
	return b, err
}

// httpClient returns the client for discovery.
func (s *Source) httpClient(ctx context.Context) *http.Client {
	if s.cfg.HTTPClient != nil {
		return s.cfg.HTTPClient
	}
	if c, ok := ctx.Value(oauth2.HTTPClient).(*http.Client); ok && c != nil {
		return c
	}
	return http.DefaultClient
}

// tokenClient returns the client for token requests: redirects are not
// followed (a redirected POST would lose or, worse, carry the grant
// elsewhere).
func (s *Source) tokenClient(ctx context.Context) *http.Client {
	c := *s.httpClient(ctx)
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

func (s *Source) warn(msg string) {
	s.log.LogAttrs(context.Background(), slog.LevelWarn, "oidc: token response: "+msg,
		slog.String("client_id", s.cfg.ClientID))
}

// resolve returns the token endpoint, discovering it if needed. Concurrent
// first calls may each discover; the first answer stored wins.
func (s *Source) resolve(ctx context.Context) (oauth2.Endpoint, error) {
	s.mu.Lock()
	ep, ok := s.endpoint, s.resolved
	s.mu.Unlock()
	if ok {
		return ep, nil
	}
	p, err := Discover(ctx, s.httpClient(ctx), s.cfg.Issuer)
	if err != nil {
		var re *tokenkeeper.RefreshError
		if errors.As(err, &re) {
			return oauth2.Endpoint{}, re
		}
		return oauth2.Endpoint{}, &tokenkeeper.RefreshError{Err: err}
	}
	ep = p.Endpoint()
	if s.cfg.Endpoint.AuthStyle != oauth2.AuthStyleAutoDetect {
		ep.AuthStyle = s.cfg.Endpoint.AuthStyle
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.resolved {
		s.endpoint, s.resolved = ep, true
	}
	return s.endpoint, nil
}

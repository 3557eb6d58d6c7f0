// Package devissuer is a small OAuth 2.0 / OpenID Connect issuer for demos
// and for tests that need a server in the same process: `tokenkeeper dev`
// runs one, and the command's restart test kills agents against one.
//
// It implements what keeping tokens fresh needs and nothing else: the token
// endpoint with the refresh_token and client_credentials grants (client
// authentication by HTTP Basic or in the form), issuer discovery, a JWKS
// for the ES256-signed ID tokens, token introspection (RFC 7662),
// revocation (RFC 7009) and a protected demo resource. There is no
// authorization endpoint: a grant, what a user's login would create, is
// made with [Issuer.Issue], which returns its first refresh token.
//
// Refresh tokens rotate: each refresh answers with a new refresh token and
// spends the one presented. Presenting a spent refresh token again is reuse:
// the issuer revokes the whole grant (every refresh and access token it
// issued) and answers invalid_grant, as production servers with reuse
// detection do. [Issuer.Stats] counts every such event, so a test can show
// that a client never reused a refresh token and never needed a new grant.
//
// [Issuer.Hold] stops token requests just before the issuer commits them,
// so a test can kill a client while its refresh is in flight: a held request
// whose client goes away is abandoned without spending its refresh token.
//
// It is a demonstration server: state lives in memory, secrets are compared
// in constant time but nothing else is hardened. Correctness tests of the
// OIDC source run against a real authorization server elsewhere.
package devissuer

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Config configures an Issuer. The zero value has no clients (add grants'
// clients before use) and the defaults below.
type Config struct {
	// URL is the issuer identifier (the base URL of its endpoints). If
	// empty, it is taken from each request's Host header; Start sets it.
	URL string
	// Clients are the registered clients.
	Clients []Client
	// AccessTTL is the lifetime of access tokens for clients and grants
	// that set none. If zero, 2 minutes. Lifetimes are whole seconds
	// (expires_in is), rounded down, at least one.
	AccessTTL time.Duration
	// RefreshTTL is how long an unused refresh token stays valid. If zero,
	// 24 hours.
	RefreshTTL time.Duration
	// Latency delays every token response, like a remote identity provider.
	// If zero, none.
	Latency time.Duration
	// Logger receives one record per token request (never a token value).
	// If nil, nothing is logged.
	Logger *slog.Logger
}

// Client is a registered client.
type Client struct {
	ID string
	// Secret authenticates the client. If empty, the client is public: it
	// sends only its client_id (refresh_token grant only).
	Secret string
	// AccessTTL overrides Config.AccessTTL for this client's tokens.
	AccessTTL time.Duration
}

// Defaults for zero Config fields.
const (
	DefaultAccessTTL  = 2 * time.Minute
	DefaultRefreshTTL = 24 * time.Hour
)

// Stats counts what the issuer did.
type Stats struct {
	Grants            int // grants created by Issue
	Refreshes         int // refresh_token grants answered with new tokens
	ClientCredentials int // client_credentials grants answered
	ReuseDetected     int // spent refresh tokens presented again
	GrantsRevoked     int // grants revoked (by reuse detection or /revoke)
	Rejected          int // token requests refused with an error
	Abandoned         int // held requests whose client went away; nothing was spent
	APICalls          int // calls to the protected resource
	APIRejected       int // of which refused (401)
}

// GrantStats describes one grant.
type GrantStats struct {
	ID        string
	ClientID  string
	Subject   string
	Refreshes int // successful refreshes of this grant
	Revoked   bool
	AccessTTL time.Duration
}

// Issuer is the server. Create it with New or Start.
type Issuer struct {
	cfg     Config
	clients map[string]Client
	key     *ecdsa.PrivateKey
	kid     string
	mux     *http.ServeMux

	mu      sync.Mutex
	grants  map[string]*grant
	refresh map[string]*refreshRec // by hash of the refresh token
	access  map[string]*accessRec  // by hash of the access token
	stats   Stats
	held    int
	gate    chan struct{} // nil: open; else closed when released
	url     string

	srv       *http.Server
	ln        net.Listener
	done      chan struct{}
	closeOnce sync.Once
}

type grant struct {
	id        string
	client    string
	subject   string
	scopes    []string
	accessTTL time.Duration
	refreshes int
	revoked   bool
	tokens    []string // hashes of every token issued under it
}

type refreshRec struct {
	g       *grant
	spent   bool
	expires time.Time
}

type accessRec struct {
	g       *grant // nil for client_credentials
	client  string
	subject string
	scopes  []string
	expires time.Time
}

// New returns an issuer; serve its Handler, or use Start.
func New(cfg Config) (*Issuer, error) {
	if cfg.AccessTTL < 0 || cfg.RefreshTTL < 0 || cfg.Latency < 0 {
		return nil, errors.New("devissuer: negative duration in Config")
	}
	if cfg.AccessTTL == 0 {
		cfg.AccessTTL = DefaultAccessTTL
	}
	if cfg.RefreshTTL == 0 {
		cfg.RefreshTTL = DefaultRefreshTTL
	}
	i := &Issuer{
		cfg:     cfg,
		clients: make(map[string]Client),
		grants:  make(map[string]*grant),
		refresh: make(map[string]*refreshRec),
		access:  make(map[string]*accessRec),
		url:     strings.TrimSuffix(cfg.URL, "/"),
	}
	for _, c := range cfg.Clients {
		if c.ID == "" {
			return nil, errors.New("devissuer: client with an empty ID")
		}
		if _, dup := i.clients[c.ID]; dup {
			return nil, fmt.Errorf("devissuer: duplicate client %q", c.ID)
		}
		if c.AccessTTL < 0 {
			return nil, fmt.Errorf("devissuer: client %q: negative AccessTTL", c.ID)
		}
		i.clients[c.ID] = c
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	i.key = key
	i.kid = randomString(6)
	i.routes()
	return i, nil
}

// Start listens on addr (such as "127.0.0.1:0"), serves the issuer in the
// background and sets its URL. Close stops it.
func Start(cfg Config, addr string) (*Issuer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("devissuer: %w", err)
	}
	if cfg.URL == "" {
		cfg.URL = "http://" + ln.Addr().String()
	}
	i, err := New(cfg)
	if err != nil {
		ln.Close()
		return nil, err
	}
	i.ln = ln
	i.srv = &http.Server{Handler: i.mux, ReadHeaderTimeout: 10 * time.Second}
	i.done = make(chan struct{})
	go func() {
		defer close(i.done)
		_ = i.srv.Serve(ln)
	}()
	return i, nil
}

// URL returns the issuer's URL ("" until known: set Config.URL or use Start).
func (i *Issuer) URL() string {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.url
}

// Handler returns the issuer's HTTP handler.
func (i *Issuer) Handler() http.Handler { return i.mux }

// Close stops a started issuer and releases held requests. It is
// idempotent.
func (i *Issuer) Close() error {
	i.Release()
	if i.srv == nil {
		return nil
	}
	i.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := i.srv.Shutdown(ctx); err != nil {
			// Requests still running (a client holding a connection open)
			// are cut off.
			i.srv.Close()
		}
		<-i.done
	})
	return nil
}

// GrantOptions describes a grant made with Issue.
type GrantOptions struct {
	ClientID string
	// Subject is the user the grant is for. If empty, "demo-user".
	Subject string
	// Scopes granted; "openid" adds an ID token to every answer.
	Scopes []string
	// AccessTTL overrides the client's access token lifetime for this grant.
	AccessTTL time.Duration
}

// Issue creates a grant, as a user's login would, and returns its first
// refresh token and the grant's ID.
func (i *Issuer) Issue(o GrantOptions) (refreshToken, grantID string, err error) {
	c, ok := i.clients[o.ClientID]
	if !ok {
		return "", "", fmt.Errorf("devissuer: unknown client %q", o.ClientID)
	}
	if o.AccessTTL < 0 {
		return "", "", errors.New("devissuer: negative AccessTTL")
	}
	ttl := o.AccessTTL
	if ttl == 0 {
		ttl = c.AccessTTL
	}
	if ttl == 0 {
		ttl = i.cfg.AccessTTL
	}
	if o.Subject == "" {
		o.Subject = "demo-user"
	}
	g := &grant{id: "grant-" + randomString(6), client: c.ID, subject: o.Subject,
		scopes: slices.Clone(o.Scopes), accessTTL: ttl}
	i.mu.Lock()
	defer i.mu.Unlock()
	i.grants[g.id] = g
	i.stats.Grants++
	return i.newRefreshLocked(g, time.Now()), g.id, nil
}

// Revoke revokes a grant, as an administrator would.
func (i *Issuer) Revoke(grantID string) bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	g := i.grants[grantID]
	if g == nil || g.revoked {
		return false
	}
	i.revokeLocked(g)
	return true
}

// Stats returns the counters.
func (i *Issuer) Stats() Stats {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.stats
}

// Grant returns a grant's counters.
func (i *Issuer) Grant(id string) (GrantStats, bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	g := i.grants[id]
	if g == nil {
		return GrantStats{}, false
	}
	return GrantStats{ID: g.id, ClientID: g.client, Subject: g.subject, Refreshes: g.refreshes,
		Revoked: g.revoked, AccessTTL: g.accessTTL}, true
}

// Hold makes token requests wait, after they are read and their client is
// authenticated but before anything is spent or issued, until Release. A
// held request whose client disconnects is abandoned (Stats.Abandoned):
// its refresh token stays valid.
func (i *Issuer) Hold() {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.gate == nil {
		i.gate = make(chan struct{})
	}
}

// Release lets held token requests proceed.
func (i *Issuer) Release() {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.gate != nil {
		close(i.gate)
		i.gate = nil
	}
}

// Held returns the number of token requests waiting at the gate.
func (i *Issuer) Held() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.held
}

// Introspection is what the issuer knows about a token.
type Introspection struct {
	Active   bool
	ClientID string
	Subject  string
	Scopes   []string
	Expiry   time.Time
	GrantID  string
}

// Introspect looks up an access token.
func (i *Issuer) Introspect(accessToken string) Introspection {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.introspectLocked(accessToken, time.Now())
}

func (i *Issuer) introspectLocked(tok string, now time.Time) Introspection {
	a := i.access[hashToken(tok)]
	if a == nil || !now.Before(a.expires) || (a.g != nil && a.g.revoked) {
		return Introspection{}
	}
	in := Introspection{Active: true, ClientID: a.client, Subject: a.subject, Scopes: a.scopes, Expiry: a.expires}
	if a.g != nil {
		in.GrantID = a.g.id
	}
	return in
}

// newRefreshLocked mints a refresh token for g.
func (i *Issuer) newRefreshLocked(g *grant, now time.Time) string {
	rt := "tkdev_rt_" + randomString(24)
	h := hashToken(rt)
	i.refresh[h] = &refreshRec{g: g, expires: now.Add(i.cfg.RefreshTTL)}
	g.tokens = append(g.tokens, h)
	return rt
}

func (i *Issuer) revokeLocked(g *grant) {
	g.revoked = true
	i.stats.GrantsRevoked++
	for _, h := range g.tokens {
		delete(i.access, h)
		if r := i.refresh[h]; r != nil {
			r.spent = true
		}
	}
}

// gc drops expired records; called with mu held, now and then.
func (i *Issuer) gcLocked(now time.Time) {
	for h, a := range i.access {
		if now.After(a.expires.Add(time.Minute)) {
			delete(i.access, h)
		}
	}
}

func hashToken(t string) string {
	s := sha256.Sum256([]byte(t))
	return hex.EncodeToString(s[:])
}

func randomString(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func secretEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

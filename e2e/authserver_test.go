package e2e

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/storage"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/oauth2"
)

// The authorization server is Ory fosite, embedded: the refresh_token
// handler rotates refresh tokens at every use (and, with fosite's
// MemoryStore, revokes the previous access token at the same time); a
// rotated refresh token presented again is reuse, after which fosite revokes
// the whole token family. countingStore counts those detections.

const (
	clientID     = "kept-client"
	clientSecret = "kept-client-secret-7f3a" // the client that authenticates with Basic
	postClientID = "post-client"             // a client that must use client_secret_post
	userName     = "peter"                   // fosite's example user
	userPassword = "secret"
)

var (
	keyOnce sync.Once
	rsaKey  *rsa.PrivateKey
)

func signingKey(t *testing.T) *rsa.PrivateKey {
	keyOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		rsaKey = k
	})
	return rsaKey
}

// countingStore is fosite's MemoryStore, counting refresh-token reuse: a
// lookup of a refresh token that is no longer active.
type countingStore struct {
	*storage.MemoryStore
	reuses atomic.Int32
}

func (s *countingStore) GetRefreshTokenSession(ctx context.Context, signature string, session fosite.Session) (fosite.Requester, error) {
	r, err := s.MemoryStore.GetRefreshTokenSession(ctx, signature, session)
	if errors.Is(err, fosite.ErrInactiveToken) {
		s.reuses.Add(1)
	}
	return r, err
}

// tokenCall is one request to the token endpoint, as seen by the server.
type tokenCall struct {
	at     time.Time
	grant  string
	status int
}

// authServer is fosite behind an HTTP mux: discovery, token, revocation,
// and a protected API that introspects the access tokens it receives.
type authServer struct {
	t        *testing.T
	srv      *httptest.Server
	provider fosite.OAuth2Provider
	store    *countingStore

	mu    sync.Mutex
	calls []tokenCall
	// fault, if set, sees every token request first; returning true means
	// it answered (fosite never sees the request).
	fault func(w http.ResponseWriter, r *http.Request, grant string) bool
	// refreshDelay holds every refresh_token request this long before
	// fosite processes it.
	refreshDelay time.Duration

	apiCalls, api401 atomic.Int32
}

// newAuthServer starts fosite with access tokens living lifespan.
func newAuthServer(t *testing.T, lifespan time.Duration) *authServer {
	t.Helper()
	cfg := &fosite.Config{
		AccessTokenLifespan:  lifespan,
		RefreshTokenLifespan: time.Hour,
		GlobalSecret:         []byte("e2e-global-secret-of-32-bytes!!!"),
		HashCost:             bcrypt.MinCost,
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(clientSecret), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	store := &countingStore{MemoryStore: storage.NewExampleStore()}
	store.Clients[clientID] = &fosite.DefaultClient{
		ID: clientID, Secret: hash,
		GrantTypes: []string{"password", "refresh_token", "client_credentials"},
		Scopes:     []string{"offline", "api"},
	}
	store.Clients[postClientID] = &fosite.DefaultOpenIDConnectClient{
		DefaultClient: &fosite.DefaultClient{
			ID: postClientID, Secret: hash,
			GrantTypes: []string{"client_credentials"},
			Scopes:     []string{"api"},
		},
		TokenEndpointAuthMethod: "client_secret_post",
	}
	a := &authServer{t: t, store: store, provider: compose.ComposeAllEnabled(cfg, store, signingKey(t))}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", a.discovery)
	mux.HandleFunc("POST /oauth2/token", a.token)
	mux.HandleFunc("POST /oauth2/revoke", a.revoke)
	mux.HandleFunc("/api/", a.api)
	a.srv = httptest.NewServer(mux)
	t.Cleanup(a.srv.Close)
	return a
}

func (a *authServer) URL() string { return a.srv.URL }

func (a *authServer) discovery(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"issuer":                                a.srv.URL,
		"token_endpoint":                        a.srv.URL + "/oauth2/token",
		"revocation_endpoint":                   a.srv.URL + "/oauth2/revoke",
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
		"grant_types_supported":                 []string{"refresh_token", "client_credentials", "password"},
	})
}

// statusRecorder remembers the status written.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (a *authServer) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	grant := r.PostForm.Get("grant_type")
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	defer func() {
		a.mu.Lock()
		a.calls = append(a.calls, tokenCall{at: time.Now(), grant: grant, status: rec.status})
		a.mu.Unlock()
	}()
	a.mu.Lock()
	fault, delay := a.fault, a.refreshDelay
	a.mu.Unlock()
	if fault != nil && fault(rec, r, grant) {
		return
	}
	if grant == "refresh_token" && delay > 0 {
		time.Sleep(delay) // a slow identity provider
	}
	ctx := r.Context()
	ar, err := a.provider.NewAccessRequest(ctx, r, &fosite.DefaultSession{Subject: userName})
	if err != nil {
		a.provider.WriteAccessError(ctx, rec, ar, err)
		return
	}
	if grant == "password" || grant == "client_credentials" {
		for _, s := range ar.GetRequestedScopes() {
			ar.GrantScope(s)
		}
	}
	resp, err := a.provider.NewAccessResponse(ctx, ar)
	if err != nil {
		a.provider.WriteAccessError(ctx, rec, ar, err)
		return
	}
	a.provider.WriteAccessResponse(ctx, rec, ar, resp)
}

func (a *authServer) revoke(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	a.provider.WriteRevocationResponse(ctx, w, a.provider.NewRevocationRequest(ctx, r))
}

// api answers 200 to a request with an active access token and 401 with an
// invalid_token challenge otherwise.
func (a *authServer) api(w http.ResponseWriter, r *http.Request) {
	a.apiCalls.Add(1)
	ctx := r.Context()
	if _, _, err := a.provider.IntrospectToken(ctx, fosite.AccessTokenFromRequest(r), fosite.AccessToken, &fosite.DefaultSession{}); err != nil {
		a.api401.Add(1)
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	_, _ = w.Write([]byte("ok"))
}

// tokenCalls returns the token requests of the given grant ("" = all).
func (a *authServer) tokenCalls(grant string) []tokenCall {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []tokenCall
	for _, c := range a.calls {
		if grant == "" || c.grant == grant {
			out = append(out, c)
		}
	}
	return out
}

func (a *authServer) setFault(f func(w http.ResponseWriter, r *http.Request, grant string) bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.fault = f
}

func (a *authServer) setRefreshDelay(d time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.refreshDelay = d
}

// signIn obtains the user's first token (with a refresh token) through the
// password grant, the shortest way to a refresh token in a test.
func (a *authServer) signIn(t *testing.T) *oauth2.Token {
	t.Helper()
	cfg := &oauth2.Config{ClientID: clientID, ClientSecret: clientSecret, Scopes: []string{"offline", "api"},
		Endpoint: oauth2.Endpoint{TokenURL: a.srv.URL + "/oauth2/token", AuthStyle: oauth2.AuthStyleInHeader}}
	tok, err := cfg.PasswordCredentialsToken(context.Background(), userName, userPassword)
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken == "" {
		t.Fatal("sign-in returned no refresh token")
	}
	return tok
}

// revokeRefreshToken revokes rt (and with it the grant's access tokens)
// through the RFC 7009 endpoint.
func (a *authServer) revokeRefreshToken(t *testing.T, rt string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, a.srv.URL+"/oauth2/revoke",
		strings.NewReader(url.Values{"token": {rt}, "token_type_hint": {"refresh_token"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(clientID, clientSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revocation: %s", resp.Status)
	}
}

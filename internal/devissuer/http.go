package devissuer

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Endpoint paths, relative to the issuer's URL.
const (
	PathDiscovery  = "/.well-known/openid-configuration"
	PathToken      = "/token"
	PathJWKS       = "/jwks"
	PathIntrospect = "/introspect"
	PathRevoke     = "/revoke"
	PathAuthorize  = "/authorize"
	// PathResource is a protected demo resource: it answers 200 with the
	// caller's subject for a valid bearer token and 401 otherwise.
	PathResource = "/api/whoami"
)

const maxForm = 64 << 10

func (i *Issuer) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET "+PathDiscovery, i.serveDiscovery)
	m.HandleFunc("GET "+PathJWKS, i.serveJWKS)
	m.HandleFunc("POST "+PathToken, i.serveToken)
	m.HandleFunc("POST "+PathIntrospect, i.serveIntrospect)
	m.HandleFunc("POST "+PathRevoke, i.serveRevoke)
	m.HandleFunc(PathAuthorize, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "devissuer has no interactive login: grants are made by the program that runs it (Issuer.Issue)", http.StatusNotImplemented)
	})
	m.HandleFunc(PathResource, i.serveResource)
	i.mux = m
}

// base returns the issuer URL for r.
func (i *Issuer) base(r *http.Request) string {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.url != "" {
		return i.url
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (i *Issuer) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	b := i.base(r)
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                b,
		"authorization_endpoint":                b + PathAuthorize,
		"token_endpoint":                        b + PathToken,
		"jwks_uri":                              b + PathJWKS,
		"introspection_endpoint":                b + PathIntrospect,
		"revocation_endpoint":                   b + PathRevoke,
		"grant_types_supported":                 []string{"refresh_token", "client_credentials"},
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"ES256"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post", "none"},
		"scopes_supported":                      []string{"openid", "offline_access", "profile", "api"},
	})
}

func (i *Issuer) serveJWKS(w http.ResponseWriter, r *http.Request) {
	pub := i.key.PublicKey
	writeJSON(w, http.StatusOK, map[string]any{"keys": []map[string]string{{
		"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": i.kid,
		"x": b64(pad32(pub.X)), "y": b64(pad32(pub.Y)),
	}}})
}

// oauthError is an RFC 6749 section 5.2 error answer.
type oauthError struct {
	status      int
	code        string
	description string
	retryAfter  time.Duration
	basic       bool // the client tried HTTP Basic: add WWW-Authenticate
}

func (e *oauthError) write(w http.ResponseWriter) {
	if e.basic && e.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="devissuer"`)
	}
	if e.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(e.retryAfter/time.Second)))
	}
	writeJSON(w, e.status, map[string]string{"error": e.code, "error_description": e.description})
}

func badRequest(code, desc string) *oauthError {
	return &oauthError{status: http.StatusBadRequest, code: code, description: desc}
}

// authenticate reads the form and identifies the client.
func (i *Issuer) authenticate(w http.ResponseWriter, r *http.Request) (Client, url.Values, *oauthError) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		return Client{}, nil, badRequest("invalid_request", "the body must be an application/x-www-form-urlencoded form")
	}
	form := r.PostForm
	id, secret, basic := r.BasicAuth()
	if basic {
		// RFC 6749 section 2.3.1: the values are form-encoded first.
		if v, err := url.QueryUnescape(id); err == nil {
			id = v
		}
		if v, err := url.QueryUnescape(secret); err == nil {
			secret = v
		}
		if form.Get("client_secret") != "" {
			return Client{}, nil, badRequest("invalid_request", "client authenticated twice (Basic and client_secret)")
		}
	} else {
		id, secret = form.Get("client_id"), form.Get("client_secret")
	}
	if fid := form.Get("client_id"); basic && fid != "" && fid != id {
		return Client{}, nil, badRequest("invalid_request", "client_id does not match the authenticated client")
	}
	c, ok := i.clients[id]
	switch {
	case id == "":
		return Client{}, nil, &oauthError{status: http.StatusUnauthorized, code: "invalid_client", description: "no client authentication"}
	case !ok:
		return Client{}, nil, &oauthError{status: http.StatusUnauthorized, code: "invalid_client", description: "unknown client", basic: basic}
	case c.Secret == "" && secret != "":
		return Client{}, nil, &oauthError{status: http.StatusUnauthorized, code: "invalid_client", description: "public client sent a secret", basic: basic}
	case c.Secret != "" && !secretEqual(secret, c.Secret):
		return Client{}, nil, &oauthError{status: http.StatusUnauthorized, code: "invalid_client", description: "client authentication failed", basic: basic}
	}
	return c, form, nil
}

// wait holds a request at the gate, if it is closed. It reports false if
// the client went away meanwhile.
func (i *Issuer) wait(r *http.Request) bool {
	i.mu.Lock()
	gate := i.gate
	if gate != nil {
		i.held++
	}
	i.mu.Unlock()
	if gate != nil {
		defer func() {
			i.mu.Lock()
			i.held--
			i.mu.Unlock()
		}()
		select {
		case <-gate:
		case <-r.Context().Done():
		}
	}
	if i.cfg.Latency > 0 {
		t := time.NewTimer(i.cfg.Latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
		}
	}
	return r.Context().Err() == nil
}

func (i *Issuer) serveToken(w http.ResponseWriter, r *http.Request) {
	c, form, oerr := i.authenticate(w, r)
	grantType := form.Get("grant_type")
	if oerr == nil {
		switch grantType {
		case "refresh_token":
			if form.Get("refresh_token") == "" {
				oerr = badRequest("invalid_request", "missing refresh_token")
			}
		case "client_credentials":
			if c.Secret == "" {
				oerr = &oauthError{status: http.StatusBadRequest, code: "unauthorized_client", description: "a public client cannot use client_credentials"}
			}
		case "":
			oerr = badRequest("invalid_request", "missing grant_type")
		default:
			oerr = badRequest("unsupported_grant_type", "grant_type "+grantType+" is not supported")
		}
	}
	if oerr != nil {
		i.reject(w, grantType, oerr)
		return
	}
	if !i.wait(r) {
		i.mu.Lock()
		i.stats.Abandoned++
		i.mu.Unlock()
		i.log("abandoned", grantType, c.ID, "")
		return
	}
	var resp map[string]any
	if grantType == "refresh_token" {
		resp, oerr = i.refreshGrant(r, c, form)
	} else {
		resp, oerr = i.clientCredentials(r, c, form)
	}
	if oerr != nil {
		i.reject(w, grantType, oerr)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (i *Issuer) reject(w http.ResponseWriter, grantType string, e *oauthError) {
	i.mu.Lock()
	i.stats.Rejected++
	i.mu.Unlock()
	i.log("rejected", grantType, "", e.code+": "+e.description)
	e.write(w)
}

func (i *Issuer) log(what, grantType, client, detail string) {
	if i.cfg.Logger == nil {
		return
	}
	i.cfg.Logger.Info("devissuer "+what, "grant_type", grantType, "client", client, "detail", detail)
}

func (i *Issuer) refreshGrant(r *http.Request, c Client, form url.Values) (map[string]any, *oauthError) {
	now := time.Now()
	i.mu.Lock()
	defer i.mu.Unlock()
	rec := i.refresh[hashToken(form.Get("refresh_token"))]
	switch {
	case rec == nil:
		return nil, badRequest("invalid_grant", "unknown refresh token")
	case rec.g.client != c.ID:
		return nil, badRequest("invalid_grant", "refresh token was issued to another client")
	case rec.g.revoked:
		return nil, badRequest("invalid_grant", "the grant was revoked")
	case rec.spent:
		i.stats.ReuseDetected++
		i.revokeLocked(rec.g)
		return nil, badRequest("invalid_grant", "refresh token reuse detected; the grant was revoked")
	case !now.Before(rec.expires):
		return nil, badRequest("invalid_grant", "refresh token expired")
	}
	scopes := rec.g.scopes
	if s := form.Get("scope"); s != "" {
		asked := strings.Fields(s)
		for _, sc := range asked {
			if !slices.Contains(rec.g.scopes, sc) {
				return nil, badRequest("invalid_scope", "scope "+sc+" was not granted")
			}
		}
		scopes = asked
	}
	// Commit: spend the presented token, mint the new pair.
	rec.spent = true
	g := rec.g
	g.refreshes++
	i.stats.Refreshes++
	if i.stats.Refreshes%64 == 0 {
		i.gcLocked(now)
	}
	resp := i.accessLocked(r, g, c.ID, g.subject, scopes, g.accessTTL, now)
	resp["refresh_token"] = i.newRefreshLocked(g, now)
	return resp, nil
}

func (i *Issuer) clientCredentials(r *http.Request, c Client, form url.Values) (map[string]any, *oauthError) {
	now := time.Now()
	ttl := c.AccessTTL
	if ttl == 0 {
		ttl = i.cfg.AccessTTL
	}
	scopes := strings.Fields(form.Get("scope"))
	i.mu.Lock()
	defer i.mu.Unlock()
	i.stats.ClientCredentials++
	return i.accessLocked(r, nil, c.ID, c.ID, scopes, ttl, now), nil
}

// accessLocked mints an access token (and an ID token for openid).
func (i *Issuer) accessLocked(r *http.Request, g *grant, client, subject string, scopes []string, ttl time.Duration, now time.Time) map[string]any {
	// expires_in is whole seconds: the token lives exactly what it says,
	// never longer than a client believes.
	secs := max(int64(ttl/time.Second), 1)
	ttl = time.Duration(secs) * time.Second
	at := "tkdev_at_" + randomString(24)
	h := hashToken(at)
	i.access[h] = &accessRec{g: g, client: client, subject: subject, scopes: scopes, expires: now.Add(ttl)}
	if g != nil {
		g.tokens = append(g.tokens, h)
	}
	resp := map[string]any{
		"access_token": at,
		"token_type":   "Bearer",
		"expires_in":   secs,
	}
	if len(scopes) > 0 {
		resp["scope"] = strings.Join(scopes, " ")
	}
	if slices.Contains(scopes, "openid") {
		iss := i.url
		if iss == "" {
			scheme := "http"
			if r.TLS != nil {
				scheme = "https"
			}
			iss = scheme + "://" + r.Host
		}
		resp["id_token"] = i.signLocked(map[string]any{
			"iss": iss, "sub": subject, "aud": client,
			"iat": now.Unix(), "exp": now.Add(ttl).Unix(),
		})
	}
	return resp
}

// signLocked returns an ES256 JWT of claims.
func (i *Issuer) signLocked(claims map[string]any) string {
	hdr, _ := json.Marshal(map[string]string{"alg": "ES256", "typ": "JWT", "kid": i.kid})
	body, _ := json.Marshal(claims)
	signing := b64(hdr) + "." + b64(body)
	sum := sha256.Sum256([]byte(signing))
	rr, ss, err := ecdsa.Sign(rand.Reader, i.key, sum[:])
	if err != nil {
		panic(err)
	}
	sig := append(pad32(rr), pad32(ss)...)
	return signing + "." + b64(sig)
}

func pad32(n *big.Int) []byte {
	b := make([]byte, 32)
	return n.FillBytes(b)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func (i *Issuer) serveIntrospect(w http.ResponseWriter, r *http.Request) {
	if _, form, oerr := i.authenticate(w, r); oerr != nil {
		oerr.write(w)
	} else {
		in := i.Introspect(form.Get("token"))
		if !in.Active {
			writeJSON(w, http.StatusOK, map[string]any{"active": false})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"active": true, "client_id": in.ClientID, "sub": in.Subject,
			"scope": strings.Join(in.Scopes, " "), "exp": in.Expiry.Unix(), "token_type": "Bearer",
		})
	}
}

// serveRevoke implements RFC 7009: revoking a refresh token revokes its
// grant; revoking an access token ends that token.
func (i *Issuer) serveRevoke(w http.ResponseWriter, r *http.Request) {
	c, form, oerr := i.authenticate(w, r)
	if oerr != nil {
		oerr.write(w)
		return
	}
	h := hashToken(form.Get("token"))
	i.mu.Lock()
	if rec := i.refresh[h]; rec != nil && rec.g.client == c.ID && !rec.g.revoked {
		i.revokeLocked(rec.g)
	} else if a := i.access[h]; a != nil && a.client == c.ID {
		delete(i.access, h)
	}
	i.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func (i *Issuer) serveResource(w http.ResponseWriter, r *http.Request) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	i.mu.Lock()
	i.stats.APICalls++
	in := i.introspectLocked(strings.TrimSpace(tok), time.Now())
	if !ok || !in.Active {
		i.stats.APIRejected++
		i.mu.Unlock()
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token"})
		return
	}
	i.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"sub": in.Subject, "client_id": in.ClientID,
		"expires_in": int(time.Until(in.Expiry) / time.Second)})
}

package oidc_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/oidc"
	"golang.org/x/oauth2"
)

// tokenEndpoint is a minimal token endpoint for the examples: it issues
// at-1, at-2, ... and rotates refresh tokens rt-1, rt-2, ...
func tokenEndpoint() *httptest.Server {
	var n atomic.Int32
	mux := http.NewServeMux()
	var srv *httptest.Server
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                srv.URL,
			"token_endpoint":                        srv.URL + "/token",
			"token_endpoint_auth_methods_supported": []string{"client_secret_basic"},
		})
	})
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		if id, secret, ok := r.BasicAuth(); !ok || id != "my-app" || secret != "my-secret" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":"invalid_client"}`)
			return
		}
		i := n.Add(1)
		resp := map[string]any{"access_token": fmt.Sprintf("at-%d", i), "token_type": "Bearer", "expires_in": 3600}
		if r.FormValue("grant_type") == "refresh_token" {
			resp["refresh_token"] = fmt.Sprintf("rt-%d", i)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(resp)
	})
	srv = httptest.NewServer(mux)
	return srv
}

// ExampleNew keeps a user's token fresh with the refresh_token grant. The
// refresh token comes from the application's sign-in (an authorization code
// exchange, say).
func ExampleNew() {
	idp := tokenEndpoint()
	defer idp.Close()

	src, err := oidc.New(oidc.Config{
		ClientID:     "my-app",
		ClientSecret: "my-secret",
		Endpoint:     oauth2.Endpoint{TokenURL: idp.URL + "/token", AuthStyle: oauth2.AuthStyleInHeader},
	})
	if err != nil {
		panic(err)
	}
	k, err := tokenkeeper.New(tokenkeeper.Config{})
	if err != nil {
		panic(err)
	}
	defer k.Close()
	h, err := k.Add(tokenkeeper.TokenConfig{
		Name:   "user",
		Source: src,
		Token:  &oauth2.Token{RefreshToken: "rt-from-sign-in"},
	})
	if err != nil {
		panic(err)
	}
	tok, err := h.TokenContext(context.Background())
	if err != nil {
		panic(err)
	}
	fmt.Println(tok.AccessToken, tok.RefreshToken)
	// Output: at-1 rt-1
}

// ExampleNew_clientCredentials keeps a service's own token, discovering the
// token endpoint from the issuer.
func ExampleNew_clientCredentials() {
	idp := tokenEndpoint()
	defer idp.Close()

	src, err := oidc.New(oidc.Config{
		Grant:        oidc.GrantClientCredentials,
		ClientID:     "my-app",
		ClientSecret: "my-secret",
		Issuer:       idp.URL,
		Scopes:       []string{"api.read"},
	})
	if err != nil {
		panic(err)
	}
	k, err := tokenkeeper.New(tokenkeeper.Config{})
	if err != nil {
		panic(err)
	}
	defer k.Close()
	h, err := k.Add(tokenkeeper.TokenConfig{Name: "service", Source: src})
	if err != nil {
		panic(err)
	}
	tok, err := h.TokenContext(context.Background())
	if err != nil {
		panic(err)
	}
	fmt.Println(tok.Type(), tok.AccessToken)
	// Output: Bearer at-1
}

// ExampleDiscover reads an issuer's metadata.
func ExampleDiscover() {
	idp := tokenEndpoint()
	defer idp.Close()

	p, err := oidc.Discover(context.Background(), nil, idp.URL)
	if err != nil {
		panic(err)
	}
	ep := p.Endpoint()
	fmt.Println(ep.TokenURL == idp.URL+"/token", ep.AuthStyle == oauth2.AuthStyleInHeader)
	// Output: true true
}

// ExampleSource_Refresh shows the typed error of a refused client.
func ExampleSource_Refresh() {
	idp := tokenEndpoint()
	defer idp.Close()

	src, err := oidc.New(oidc.Config{
		Grant:        oidc.GrantClientCredentials,
		ClientID:     "my-app",
		ClientSecret: "wrong",
		Endpoint:     oauth2.Endpoint{TokenURL: idp.URL + "/token", AuthStyle: oauth2.AuthStyleInHeader},
	})
	if err != nil {
		panic(err)
	}
	_, err = src.Refresh(context.Background(), nil)
	re := tokenkeeper.Classify(err)
	fmt.Println(re.Code, re.Status, re.Permanent)
	fmt.Println(err)
	// Output:
	// invalid_client 401 true
	// tokenkeeper: refresh failed: HTTP 401: invalid_client [permanent]
}

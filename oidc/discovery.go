package oidc

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"golang.org/x/oauth2"
)

// Provider is the part of an OpenID Provider's metadata (OpenID Connect
// Discovery 1.0, RFC 8414) that a Source uses.
type Provider struct {
	Issuer                   string   `json:"issuer"`
	AuthorizationEndpoint    string   `json:"authorization_endpoint"`
	TokenEndpoint            string   `json:"token_endpoint"`
	RevocationEndpoint       string   `json:"revocation_endpoint"`
	JWKSURI                  string   `json:"jwks_uri"`
	TokenEndpointAuthMethods []string `json:"token_endpoint_auth_methods_supported"`
	GrantTypes               []string `json:"grant_types_supported"`
}

// maxMetadataBytes bounds the metadata document read.
const maxMetadataBytes = 1 << 20

// Discover fetches issuer's metadata from
// issuer + "/.well-known/openid-configuration" with client
// (http.DefaultClient if nil). The document's issuer must equal issuer (a
// trailing slash aside) and it must name a token endpoint.
//
// A failure is a *tokenkeeper.RefreshError wrapping ErrDiscovery: transient
// for network errors, timeouts, 5xx and 429, permanent for anything else (a
// 404, an issuer mismatch, a document without a token endpoint), since
// retrying cannot mend a misconfiguration.
func Discover(ctx context.Context, client *http.Client, issuer string) (*Provider, error) {
	if client == nil {
		client = http.DefaultClient
	}
	base := strings.TrimSuffix(issuer, "/")
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, discoveryError(true, 0, "the issuer is not an absolute http(s) URL")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/.well-known/openid-configuration", nil)
	if err != nil {
		return nil, discoveryError(true, 0, "cannot build the request")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, &tokenkeeper.RefreshError{Err: fmt.Errorf("%w: %w", ErrDiscovery, err)}
	}
	defer resp.Body.Close()
	body, err := readLimited(resp.Body, maxMetadataBytes)
	if resp.StatusCode != http.StatusOK {
		re := discoveryError(!transientStatus(resp.StatusCode), resp.StatusCode, "HTTP "+resp.Status)
		re.RetryAfter, _ = tokenkeeper.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		return nil, re
	}
	if err == errTooLarge {
		return nil, discoveryError(true, resp.StatusCode, "metadata too large")
	}
	if err != nil {
		return nil, &tokenkeeper.RefreshError{Status: resp.StatusCode, Err: fmt.Errorf("%w: reading metadata: %w", ErrDiscovery, err)}
	}
	var p Provider
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, discoveryError(true, resp.StatusCode, "metadata is not a JSON object of the expected shape")
	}
	if strings.TrimSuffix(p.Issuer, "/") != base {
		return nil, discoveryError(true, resp.StatusCode, fmt.Sprintf("metadata names issuer %q, want %q", clean(p.Issuer, 200, nil), base))
	}
	if t, err := url.Parse(p.TokenEndpoint); p.TokenEndpoint == "" || err != nil || (t.Scheme != "https" && t.Scheme != "http") || t.Host == "" {
		return nil, discoveryError(true, resp.StatusCode, "metadata has no usable token_endpoint")
	}
	return &p, nil
}

func transientStatus(status int) bool {
	return status >= 500 || status == http.StatusTooManyRequests || status == http.StatusRequestTimeout
}

func discoveryError(permanent bool, status int, detail string) *tokenkeeper.RefreshError {
	return &tokenkeeper.RefreshError{Permanent: permanent, Status: status, Err: withDetail(ErrDiscovery, detail, nil)}
}

// Endpoint returns the provider's token endpoint with the client
// authentication style it advertises: Basic (client_secret_basic) when
// listed or when the list is empty (the default the specifications set),
// else the body (client_secret_post) when listed, else auto-detection.
func (p *Provider) Endpoint() oauth2.Endpoint {
	ep := oauth2.Endpoint{AuthURL: p.AuthorizationEndpoint, TokenURL: p.TokenEndpoint}
	switch m := p.TokenEndpointAuthMethods; {
	case len(m) == 0 || slices.Contains(m, "client_secret_basic"):
		ep.AuthStyle = oauth2.AuthStyleInHeader
	case slices.Contains(m, "client_secret_post"):
		ep.AuthStyle = oauth2.AuthStyleInParams
	}
	return ep
}

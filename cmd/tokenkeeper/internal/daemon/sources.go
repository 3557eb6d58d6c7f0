package daemon

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"sync"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/cmd/tokenkeeper/internal/execsource"
	"github.com/tokenkeeper/tokenkeeper/cognito"
	"github.com/tokenkeeper/tokenkeeper/internal/config"
	"github.com/tokenkeeper/tokenkeeper/oidc"
	"golang.org/x/oauth2"
)

// newSource builds the Source of a configured token. It does no I/O.
func (d *Daemon) newSource(t config.Token) (tokenkeeper.Source, error) {
	s := t.Source
	switch s.Type {
	case config.SourceOIDC, config.SourceClientCredentials:
		oc := oidc.Config{
			ClientID:     s.ClientID,
			ClientSecret: s.ClientSecret,
			Endpoint:     oauth2.Endpoint{TokenURL: s.TokenURL},
			Issuer:       s.Issuer,
			Grant:        oidc.GrantRefreshToken,
			Scopes:       s.Scopes,
			ReuseGrace:   s.ReuseGrace,
			HTTPClient:   d.opts.HTTPClient,
			Logger:       d.log,
		}
		if s.Type == config.SourceClientCredentials {
			oc.Grant = oidc.GrantClientCredentials
		}
		switch s.AuthStyle {
		case "basic":
			oc.Endpoint.AuthStyle = oauth2.AuthStyleInHeader
		case "post":
			oc.Endpoint.AuthStyle = oauth2.AuthStyleInParams
		}
		if len(s.Params) > 0 {
			oc.EndpointParams = make(url.Values, len(s.Params))
			for _, k := range sortedKeys(s.Params) {
				oc.EndpointParams.Set(k, s.Params[k])
			}
		}
		return oidc.New(oc)
	case config.SourceCognito:
		cc := cognito.Config{
			Region:       s.Region,
			ClientID:     s.ClientID,
			ClientSecret: s.ClientSecret,
			UserPoolID:   s.UserPoolID,
			Endpoint:     s.Endpoint,
			Rotation:     s.Rotation,
		}
		if d.opts.HTTPClient != nil {
			cc.HTTPClient = d.opts.HTTPClient // not a typed nil in the interface
		}
		return cognito.New(cc)
	case config.SourceCommand:
		return execsource.New(execsource.Config{
			Name: t.Name, Command: s.Command, Env: s.Env, Dir: s.Dir, Timeout: s.Timeout,
		})
	}
	return nil, fmt.Errorf("source type %q is not available", s.Type)
}

func sortedKeys(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}

// memoryStore is the store of a configuration with store.type memory.
type memoryStore struct {
	mu sync.Mutex
	m  map[string]*oauth2.Token
}

func newMemoryStore() *memoryStore { return &memoryStore{m: make(map[string]*oauth2.Token)} }

func (s *memoryStore) Load(_ context.Context, name string) (*oauth2.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.m[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", tokenkeeper.ErrNotFound, name)
	}
	return t, nil
}

func (s *memoryStore) Save(_ context.Context, name string, tok *oauth2.Token) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[name] = tok
	return nil
}

func (s *memoryStore) Delete(_ context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, name)
	return nil
}

// Check builds every source of cfg, without starting anything, and reports
// the first problem: what check-config adds to the file's validation.
func Check(cfg *config.Config) error {
	d := &Daemon{}
	for _, t := range cfg.Tokens {
		if _, err := d.newSource(t); err != nil {
			return fmt.Errorf("token %q: %w", t.Name, err)
		}
	}
	return nil
}

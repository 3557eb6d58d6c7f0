package cognito

import (
	"context"
	"errors"
	"fmt"

	"github.com/tokenkeeper/tokenkeeper"
	"golang.org/x/oauth2"
)

// SessionConfig describes what [Keep] puts in a keeper. Client is required.
type SessionConfig struct {
	// Name is the user-pool tokens' name in the keeper; the AWS credentials
	// are kept as Name + "/aws". If empty, "cognito".
	Name string
	// Client refreshes the user-pool tokens.
	Client *Client
	// Token is the session to keep, as SignIn returned it. If nil, the
	// keeper loads it from its Store.
	Token *oauth2.Token
	// Policy overrides the keeper's default policy for both tokens.
	Policy *tokenkeeper.Policy
	// Identity, if not nil, also keeps AWS credentials from this identity
	// pool.
	Identity *IdentityConfig
}

// Session is a whole Amplify-style auth session kept fresh by a keeper: the
// user-pool tokens and, optionally, AWS credentials from an identity pool,
// each refreshed in the background before it expires.
type Session struct {
	// UserPool hands out the user-pool tokens: the access token, with the
	// ID token as the "id_token" extra (see [IDToken]).
	UserPool *tokenkeeper.Handle
	// AWS hands out the identity pool's credentials as a token (see
	// [CredentialsFromToken]); nil without SessionConfig.Identity.
	AWS *tokenkeeper.Handle

	k     *tokenkeeper.Keeper
	ids   *IdentitySource
	creds *CredentialsProvider
}

// Keep adds a session to k: the user-pool tokens, refreshed by cfg.Client,
// and, with cfg.Identity, AWS credentials whose source takes the ID token
// from the user-pool handle. On error nothing stays in k.
func Keep(k *tokenkeeper.Keeper, cfg SessionConfig) (*Session, error) {
	if k == nil || cfg.Client == nil {
		return nil, fmt.Errorf("%w: Keep needs a keeper and a Client", ErrBadConfig)
	}
	name := cfg.Name
	if name == "" {
		name = "cognito"
	}
	up, err := k.Add(tokenkeeper.TokenConfig{
		Name:   name,
		Source: cfg.Client,
		Token:  cfg.Token,
		Policy: cfg.Policy,
		Group:  cfg.Client.Group(),
	})
	if err != nil {
		return nil, err
	}
	s := &Session{UserPool: up, k: k}
	if cfg.Identity == nil {
		return s, nil
	}
	ids, err := NewIdentitySource(*cfg.Identity, up)
	if err == nil {
		s.AWS, err = k.Add(tokenkeeper.TokenConfig{
			Name:   name + "/aws",
			Source: ids,
			Policy: cfg.Policy,
			Group:  ids.Group(),
		})
	}
	if err != nil {
		_ = k.Remove(name)
		return nil, err
	}
	s.ids = ids
	s.creds = NewCredentialsProvider(s.AWS)
	return s, nil
}

// Credentials returns the provider of the session's AWS credentials, or nil
// for a session without an identity pool.
func (s *Session) Credentials() *CredentialsProvider { return s.creds }

// IdentityID returns the identity pool's id for the user, once known.
func (s *Session) IdentityID() string {
	if s.ids == nil {
		return ""
	}
	return s.ids.IdentityID()
}

// Adopt installs the tokens of a new sign-in (after the old session needed
// re-authentication, or for another user) and, for a session with an
// identity pool, fetches credentials for them at once. Neither is written to
// the keeper's Store by Adopt; the next refresh writes them.
func (s *Session) Adopt(ctx context.Context, tok *oauth2.Token) error {
	if err := s.UserPool.Adopt(tok); err != nil {
		return err
	}
	if s.AWS == nil {
		return nil
	}
	creds, err := s.ids.Refresh(ctx, nil)
	if err != nil {
		return fmt.Errorf("cognito: AWS credentials for the new sign-in: %w", err)
	}
	return s.AWS.Adopt(creds)
}

// Remove removes the session's tokens from the keeper.
func (s *Session) Remove() error {
	var errs []error
	if s.AWS != nil {
		errs = append(errs, s.k.Remove(s.AWS.Name()))
	}
	errs = append(errs, s.k.Remove(s.UserPool.Name()))
	return errors.Join(errs...)
}

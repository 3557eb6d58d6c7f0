package tokenkeeper

import (
	"context"
	"errors"

	"golang.org/x/oauth2"
)

// A Source obtains a new token from an identity provider.
//
// Refresh is given the current token, which carries the refresh token (nil
// when the keeper holds none yet, for example at first use of a client
// credentials source). It returns the new token. If the answer has no refresh
// token, the keeper keeps the current one. Refresh must honour ctx: the keeper
// bounds every attempt with a timeout and cancels attempts when it closes.
//
// A Source should return errors that say whether retrying can help: a
// *RefreshError, an *oauth2.RetrieveError, or an error wrapped with
// [Permanent] or [RetryAfter]; anything else is treated as transient (see
// [Classify]). The keeper never calls Refresh concurrently for the same token,
// but may call it concurrently for different tokens that share a Source.
type Source interface {
	Refresh(ctx context.Context, current *oauth2.Token) (*oauth2.Token, error)
}

// SourceFunc adapts a function to the Source interface.
type SourceFunc func(ctx context.Context, current *oauth2.Token) (*oauth2.Token, error)

// Refresh calls f(ctx, current).
func (f SourceFunc) Refresh(ctx context.Context, current *oauth2.Token) (*oauth2.Token, error) {
	return f(ctx, current)
}

// FromTokenSource turns an oauth2.TokenSource (google.DefaultTokenSource,
// clientcredentials.Config.TokenSource, ...) into a Source. Each Refresh calls
// ts.Token(); the ctx and the current token are not passed on, because the
// oauth2.TokenSource interface has no room for them. Wrap ts with neither
// oauth2.ReuseTokenSource nor any other cache, or Refresh would return the
// cached token instead of a new one.
func FromTokenSource(ts oauth2.TokenSource) Source {
	return tokenSourceAdapter{ts}
}

type tokenSourceAdapter struct{ ts oauth2.TokenSource }

func (a tokenSourceAdapter) Refresh(ctx context.Context, _ *oauth2.Token) (*oauth2.Token, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if a.ts == nil {
		return nil, Permanent(errors.New("tokenkeeper: nil oauth2.TokenSource"))
	}
	return a.ts.Token()
}

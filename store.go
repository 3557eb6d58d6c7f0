package tokenkeeper

import (
	"context"

	"golang.org/x/oauth2"
)

// A Store keeps tokens between refreshes and across restarts. The keeper
// saves every new token before it hands it out (so a rotated refresh token is
// durable before the access token that came with it is used) and loads a
// token when one is added without an initial value.
//
// Implementations must be safe for concurrent use. Load returns an error
// wrapping ErrNotFound for a name the store does not hold.
type Store interface {
	Load(ctx context.Context, name string) (*oauth2.Token, error)
	Save(ctx context.Context, name string, tok *oauth2.Token) error
	Delete(ctx context.Context, name string) error
}

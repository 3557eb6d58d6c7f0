package tokenkeeper

import (
	"context"
	"time"

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

// A SavedAtLoader is a Store that also remembers when it saved each token.
// The keeper saves a token the moment it receives it, so that time is the
// token's issue time: when a token is loaded at Add, the keeper uses it to
// place the refresh window as it was before the restart. With a Store that
// lacks it, a loaded token counts as issued at load time, and its window is
// computed from the lifetime it has left.
type SavedAtLoader interface {
	LoadSavedAt(ctx context.Context, name string) (tok *oauth2.Token, savedAt time.Time, err error)
}

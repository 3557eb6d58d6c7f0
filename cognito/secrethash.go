package cognito

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"

	"golang.org/x/oauth2"
)

// SecretHash returns the SECRET_HASH that Cognito asks of app clients with a
// client secret: base64(HMAC-SHA256(key = clientSecret, message = username +
// clientID)).
//
// Which user name goes in depends on the call, and this is where clients go
// wrong:
//
//   - For a sign-in (USER_PASSWORD_AUTH), it is the USERNAME sent, as the
//     user typed it: an e-mail alias, say.
//   - For REFRESH_TOKEN_AUTH it must be the user's internal user name, the
//     "cognito:username" claim of the ID token ("username" of the access
//     token). With e-mail as the pool's user name attribute that is the
//     user's sub, a UUID, not the e-mail the user signed in with; a hash over
//     the e-mail fails with NotAuthorizedException ("Unable to verify secret
//     hash for client"). [Client.Refresh] does this for you, see
//     [InternalUsername].
//
// GetTokensFromRefreshToken takes the client secret itself, not a hash.
func SecretHash(username, clientID, clientSecret string) string {
	m := hmac.New(sha256.New, []byte(clientSecret))
	m.Write([]byte(username))
	m.Write([]byte(clientID))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// ErrNoUsername is returned by [InternalUsername] when a token carries no
// user name: the app client has a secret and the token holds neither a
// decodable ID or access token nor a user name set with [WithUsername].
// Refreshing such a token cannot succeed, so Client.Refresh reports it as
// permanent.
var ErrNoUsername = errors.New("cognito: no internal user name in the token (needed for SECRET_HASH)")

// usernameExtra is the token extra that carries the internal user name.
const usernameExtra = "cognito:username"

// InternalUsername returns the user's internal user name, the one
// REFRESH_TOKEN_AUTH's SECRET_HASH is computed over. It looks, in order, at
// the "cognito:username" claim of the ID token (the "id_token" extra), the
// "username" claim of the access token, a name set with [WithUsername], and
// the sub of either token. It fails with an error wrapping ErrNoUsername.
func InternalUsername(tok *oauth2.Token) (string, error) {
	if tok == nil {
		return "", ErrNoUsername
	}
	var subs []string
	var firstErr error
	for _, jwt := range []string{IDToken(tok), tok.AccessToken} {
		if jwt == "" {
			continue
		}
		c, err := DecodeClaims(jwt)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		if c.Username != "" {
			return c.Username, nil
		}
		if c.Subject != "" {
			subs = append(subs, c.Subject)
		}
	}
	if s, ok := tok.Extra(usernameExtra).(string); ok && s != "" {
		return s, nil
	}
	if len(subs) > 0 {
		return subs[0], nil
	}
	if firstErr != nil {
		return "", fmt.Errorf("%w: %w", ErrNoUsername, firstErr)
	}
	return "", ErrNoUsername
}

// WithUsername returns a copy of tok that carries the internal user name
// (see [InternalUsername]) as the "cognito:username" extra. Of tok's extras
// those this package uses (ExtraKeys) are kept. Use it to start from a refresh token alone for an app client
// with a secret:
//
//	tok := cognito.WithUsername(&oauth2.Token{RefreshToken: rt}, sub)
func WithUsername(tok *oauth2.Token, username string) *oauth2.Token {
	return withExtras(tok, map[string]any{usernameExtra: username})
}

package cognito

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/cognitoidentityprovider"
	"github.com/aws/aws-sdk-go-v2/service/cognitoidentityprovider/types"
	"github.com/aws/smithy-go/middleware"
	"github.com/tokenkeeper/tokenkeeper"
	"golang.org/x/oauth2"
)

// idTokenExtra is the oauth2 extra the ID token travels in, as with any
// OpenID Connect provider.
const idTokenExtra = "id_token"

// deviceKeyExtra carries the device key Cognito issued at sign-in when the
// pool tracks devices; refreshes must send it back.
const deviceKeyExtra = "device_key"

// DeviceKey returns the device key a token carries (its "device_key"
// extra): the key Cognito issued at sign-in in a pool that remembers
// devices, or "".
func DeviceKey(tok *oauth2.Token) string {
	if tok == nil {
		return ""
	}
	s, _ := tok.Extra(deviceKeyExtra).(string)
	return s
}

// Errors of Refresh and SignIn, wrapped with details.
var (
	// ErrNoRefreshToken: Refresh was given no token or one without a
	// refresh token. Permanent: the user must sign in.
	ErrNoRefreshToken = errors.New("cognito: no refresh token")
	// ErrNoTokens: Cognito's answer held no access token. Transient.
	ErrNoTokens = errors.New("cognito: answer holds no access token")
	// ErrNoExpiry: the answer had no ExpiresIn and the access token's
	// expiry could not be read (malformed JWT, no exp claim, or an exp in
	// the past and no iat). Transient.
	ErrNoExpiry = errors.New("cognito: cannot tell when the access token expires")
)

// IDToken returns the ID token a token carries (its "id_token" extra), or "".
func IDToken(tok *oauth2.Token) string {
	if tok == nil {
		return ""
	}
	s, _ := tok.Extra(idTokenExtra).(string)
	return s
}

// Refresh renews the user-pool tokens: the access token, the ID token (the
// "id_token" extra) and, with rotation, the refresh token. It implements
// [tokenkeeper.Source].
//
// Without Config.Rotation it calls InitiateAuth with REFRESH_TOKEN_AUTH;
// for an app client with a secret it adds the SECRET_HASH over the user's
// internal user name taken from current (see [InternalUsername]), not over
// the name the user signed in with. With Config.Rotation it calls
// GetTokensFromRefreshToken, whose answer carries a new refresh token: the
// keeper saves the new token in its Store before it hands the access token
// out, and never sends one refresh token twice. If an answer with a rotated
// refresh token is lost (a timeout after Cognito answered), the next
// attempt sends the old refresh token again: within the app client's
// RetryGracePeriodSeconds Cognito accepts it, after that it answers
// RefreshTokenReuseException and the user must sign in again.
//
// In a pool that tracks devices, current's device key ([DeviceKey]) is
// sent along, as Cognito requires, and kept in the returned token. When the
// answer has no refresh token (REFRESH_TOKEN_AUTH never returns one), the
// returned token keeps current's. See [TokenFromResult] for how the expiry
// is set, [Client.SignIn] for the errors.
func (c *Client) Refresh(ctx context.Context, current *oauth2.Token) (*oauth2.Token, error) {
	if current == nil || current.RefreshToken == "" {
		return nil, tokenkeeper.Permanent(ErrNoRefreshToken)
	}
	start := time.Now()
	var (
		res  *types.AuthenticationResultType
		meta middleware.Metadata
	)
	device := DeviceKey(current)
	if c.cfg.Rotation {
		in := &cognitoidentityprovider.GetTokensFromRefreshTokenInput{
			ClientId:       aws.String(c.cfg.ClientID),
			RefreshToken:   aws.String(current.RefreshToken),
			ClientMetadata: c.cfg.ClientMetadata,
		}
		if c.cfg.ClientSecret != "" {
			in.ClientSecret = aws.String(c.cfg.ClientSecret)
		}
		if device != "" {
			in.DeviceKey = aws.String(device)
		}
		out, err := c.idp.GetTokensFromRefreshToken(ctx, in)
		if err != nil {
			return nil, classify(err)
		}
		res, meta = out.AuthenticationResult, out.ResultMetadata
	} else {
		params := map[string]string{"REFRESH_TOKEN": current.RefreshToken}
		if c.cfg.ClientSecret != "" {
			user, err := InternalUsername(current)
			if err != nil {
				return nil, tokenkeeper.Permanent(err)
			}
			params["SECRET_HASH"] = SecretHash(user, c.cfg.ClientID, c.cfg.ClientSecret)
		}
		if device != "" {
			params["DEVICE_KEY"] = device
		}
		out, err := c.idp.InitiateAuth(ctx, &cognitoidentityprovider.InitiateAuthInput{
			AuthFlow:       types.AuthFlowTypeRefreshTokenAuth,
			ClientId:       aws.String(c.cfg.ClientID),
			AuthParameters: params,
			ClientMetadata: c.cfg.ClientMetadata,
		})
		if err != nil {
			return nil, classify(err)
		}
		if out.ChallengeName != "" {
			// Nobody is there to answer a challenge in the background.
			return nil, tokenkeeper.Permanent(c.challenge(out.ChallengeName, out.ChallengeParameters, out.Session, ""))
		}
		res, meta = out.AuthenticationResult, out.ResultMetadata
	}
	tok, err := tokenFromResult(res, start, skewOf(meta))
	if err != nil {
		return nil, err
	}
	if tok.RefreshToken == "" {
		tok.RefreshToken = current.RefreshToken
	}
	// Carry along what the answer does not repeat: the device key, and a
	// name set with WithUsername for tokens whose JWTs do not name the user.
	extras := map[string]any{}
	if DeviceKey(tok) == "" && device != "" {
		extras[deviceKeyExtra] = device
	}
	if u, ok := current.Extra(usernameExtra).(string); ok && u != "" {
		if _, err := InternalUsername(tok); err != nil {
			extras[usernameExtra] = u
		}
	}
	if len(extras) > 0 {
		tok = withExtras(tok, extras)
	}
	return tok, nil
}

// skewOf returns the server's clock minus ours, as the SDK measured it from
// the answer's Date header, or 0.
func skewOf(meta middleware.Metadata) time.Duration {
	d, _ := awsmiddleware.GetAttemptSkew(meta)
	return d
}

// minSkew is the smallest clock skew worth correcting: the Date header has
// a resolution of one second, and the keeper's expiry margin covers the rest.
const minSkew = 5 * time.Second

// TokenFromResult turns an AuthenticationResult into an *oauth2.Token, for
// a program that signs in by a flow of its own (SRP, custom auth) and then
// hands the session to a keeper: AccessToken, RefreshToken (if the answer
// has one), TokenType ("Bearer" if absent) and the ID token as the
// "id_token" extra and, in a pool that tracks devices, the new device key as
// the "device_key" extra (see [DeviceKey]).
//
// Expiry is the earliest of what ExpiresIn and the two JWTs say, because
// both tokens are handed out together and must both be valid. ExpiresIn
// counts from sent, the local time the request was sent. A JWT's expiry is
// its own lifetime, exp - iat, less one second (iat is truncated to the
// second), also counted from sent; an answer without ExpiresIn
// (cognito-local's, for one) relies on it alone. So an expiry never depends
// on how far the local clock is from Cognito's. Only a JWT without iat is
// read by its absolute exp (corrected, inside Refresh and SignIn, by the
// difference between the server's clock and ours that the SDK measured from
// the answer's Date header, when that exceeds a few seconds). The claims are
// decoded without verifying the signature: the answer came straight from
// Cognito over TLS (see [DecodeClaims]). An ID token whose expiry cannot be
// read is kept but does not shorten the expiry.
//
// It fails with ErrNoTokens, or ErrNoExpiry when the access token's expiry
// cannot be determined; both are transient (the server's next answer may be
// better), and the keeper keeps serving the current token meanwhile.
func TokenFromResult(res *types.AuthenticationResultType, sent time.Time) (*oauth2.Token, error) {
	return tokenFromResult(res, sent, 0)
}

func tokenFromResult(res *types.AuthenticationResultType, sent time.Time, skew time.Duration) (*oauth2.Token, error) {
	if res == nil || aws.ToString(res.AccessToken) == "" {
		return nil, ErrNoTokens
	}
	tok := &oauth2.Token{
		AccessToken:  aws.ToString(res.AccessToken),
		RefreshToken: aws.ToString(res.RefreshToken),
		TokenType:    aws.ToString(res.TokenType),
	}
	if tok.TokenType == "" {
		tok.TokenType = "Bearer"
	}
	accessExp, accessErr := jwtExpiry(tok.AccessToken, sent, skew)
	switch {
	case res.ExpiresIn > 0:
		tok.Expiry = sent.Add(time.Duration(res.ExpiresIn) * time.Second)
		tok.ExpiresIn = int64(res.ExpiresIn)
		if accessErr == nil && accessExp.Before(tok.Expiry) {
			tok.Expiry = accessExp
		}
	case accessErr != nil:
		return nil, fmt.Errorf("%w: no ExpiresIn, and the access token: %w", ErrNoExpiry, accessErr)
	default:
		tok.Expiry = accessExp
	}
	extras := map[string]any{}
	if id := aws.ToString(res.IdToken); id != "" {
		if exp, err := jwtExpiry(id, sent, skew); err == nil && exp.Before(tok.Expiry) {
			tok.Expiry = exp
		}
		extras[idTokenExtra] = id
	}
	if d := res.NewDeviceMetadata; d != nil && aws.ToString(d.DeviceKey) != "" {
		extras[deviceKeyExtra] = aws.ToString(d.DeviceKey)
	}
	if len(extras) > 0 {
		tok = tok.WithExtra(extras)
	}
	return tok, nil
}

// knownExtras are the extras withExtras keeps.
var knownExtras = []string{idTokenExtra, usernameExtra, deviceKeyExtra}

// withExtras returns a copy of tok with extras added to the ones this
// package uses that tok already has.
func withExtras(tok *oauth2.Token, extras map[string]any) *oauth2.Token {
	all := make(map[string]any, len(knownExtras)+len(extras))
	for _, k := range knownExtras {
		if v := tok.Extra(k); v != nil {
			all[k] = v
		}
	}
	for k, v := range extras {
		all[k] = v
	}
	t := *tok
	return t.WithExtra(all)
}

// jwtExpiry returns the local time at which a JWT received at sent expires.
func jwtExpiry(jwt string, sent time.Time, skew time.Duration) (time.Time, error) {
	cl, err := DecodeClaims(jwt)
	if err != nil {
		return time.Time{}, err
	}
	if life, ok := cl.Lifetime(); ok {
		// iat is truncated to the second: the server issued the token up
		// to a second after iat, and exp - iat overstates what is left by
		// as much. Counting one second less keeps the keeper from handing
		// out a token the server already considers expired.
		if life > 2*time.Second {
			life -= time.Second
		} else {
			life /= 2
		}
		return sent.Add(life), nil
	}
	if cl.Expiry.IsZero() {
		return time.Time{}, errors.New("no exp claim")
	}
	exp := cl.Expiry
	if skew > minSkew || skew < -minSkew {
		exp = exp.Add(-skew)
	}
	if !exp.After(sent) {
		return time.Time{}, fmt.Errorf("expired at %s, before it was received", exp.UTC().Format(time.RFC3339))
	}
	return exp, nil
}

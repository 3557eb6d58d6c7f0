package cognito

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cognitoidentityprovider"
	"github.com/aws/aws-sdk-go-v2/service/cognitoidentityprovider/types"
	"golang.org/x/oauth2"
)

// ErrChallenge is matched (errors.Is) by every *ChallengeError.
var ErrChallenge = errors.New("cognito: challenge")

// ChallengeError is returned by SignIn and RespondToChallenge when Cognito
// asks for another step before it issues tokens: NEW_PASSWORD_REQUIRED for a
// user created with a temporary password, SMS_MFA or SOFTWARE_TOKEN_MFA for a
// second factor, MFA_SETUP, SELECT_MFA_TYPE, CUSTOM_CHALLENGE. Answer it with
// [Client.RespondToChallenge].
//
// Refresh returns one, wrapped as permanent, in the unlikely case that
// Cognito answers a refresh with a challenge: nobody can answer it in the
// background, so the user must sign in again.
type ChallengeError struct {
	// Name is the challenge's name, such as "NEW_PASSWORD_REQUIRED".
	Name string
	// Username is the user name to answer with: the internal user name
	// (USER_ID_FOR_SRP) if Cognito sent one, else the one signed in with.
	Username string
	// Parameters are Cognito's ChallengeParameters (for
	// NEW_PASSWORD_REQUIRED: userAttributes and requiredAttributes, as
	// JSON). They may hold personal data; Error does not show them.
	Parameters map[string]string

	session string // proves the steps already taken; never shown
}

func (e *ChallengeError) Error() string {
	return fmt.Sprintf("cognito: sign-in needs an answer to the %s challenge", e.Name)
}

// Is reports whether target is ErrChallenge.
func (e *ChallengeError) Is(target error) bool { return target == ErrChallenge }

func (c *Client) challenge(name types.ChallengeNameType, params map[string]string, session *string, username string) *ChallengeError {
	if u := params["USER_ID_FOR_SRP"]; u != "" {
		username = u
	} else if u := params["USERNAME"]; u != "" {
		username = u
	}
	return &ChallengeError{Name: string(name), Username: username, Parameters: params, session: aws.ToString(session)}
}

// SignIn signs a user in with a user name (or alias: an e-mail address, a
// phone number) and password through USER_PASSWORD_AUTH, which the app
// client must allow (ALLOW_USER_PASSWORD_AUTH), and returns the tokens: the
// access token, the refresh token and the ID token as the "id_token" extra,
// with the expiry described at [TokenFromResult]. Hand the token to a keeper
// as the initial token of a [Client] source, or to [Keep].
//
// If Cognito asks for another step, SignIn returns a *ChallengeError. Other
// failures are *tokenkeeper.RefreshError values whose Code is the Cognito
// exception: NotAuthorizedException for a wrong user name or password (or a
// disabled user, or a SECRET_HASH Cognito cannot verify),
// UserNotConfirmedException, PasswordResetRequiredException,
// ResourceNotFoundException for an app client id unknown in the region; they
// are Permanent. Throttling and server errors are not. Neither the password
// nor the client secret ever appears in an error.
func (c *Client) SignIn(ctx context.Context, username, password string) (*oauth2.Token, error) {
	params := map[string]string{"USERNAME": username, "PASSWORD": password}
	if c.cfg.ClientSecret != "" {
		// For a sign-in the hash is over the name as sent, alias or not.
		params["SECRET_HASH"] = SecretHash(username, c.cfg.ClientID, c.cfg.ClientSecret)
	}
	sent := time.Now()
	out, err := c.idp.InitiateAuth(ctx, &cognitoidentityprovider.InitiateAuthInput{
		AuthFlow:       types.AuthFlowTypeUserPasswordAuth,
		ClientId:       aws.String(c.cfg.ClientID),
		AuthParameters: params,
		ClientMetadata: c.cfg.ClientMetadata,
	})
	if err != nil {
		return nil, classify(err)
	}
	if out.ChallengeName != "" {
		return nil, c.challenge(out.ChallengeName, out.ChallengeParameters, out.Session, username)
	}
	return tokenFromResult(out.AuthenticationResult, sent, skewOf(out.ResultMetadata))
}

// RespondToChallenge answers a challenge SignIn (or a previous
// RespondToChallenge) returned. answers holds the challenge's responses,
// such as {"NEW_PASSWORD": "..."} for NEW_PASSWORD_REQUIRED or
// {"SOFTWARE_TOKEN_MFA_CODE": "123456"}; USERNAME and, for an app client with
// a secret, SECRET_HASH are added unless present. It returns the tokens, a
// further *ChallengeError, or an error as SignIn does.
func (c *Client) RespondToChallenge(ctx context.Context, ch *ChallengeError, answers map[string]string) (*oauth2.Token, error) {
	if ch == nil {
		return nil, fmt.Errorf("%w: nil *ChallengeError", ErrBadConfig)
	}
	resp := make(map[string]string, len(answers)+2)
	for k, v := range answers {
		resp[k] = v
	}
	if _, ok := resp["USERNAME"]; !ok {
		resp["USERNAME"] = ch.Username
	}
	if _, ok := resp["SECRET_HASH"]; !ok && c.cfg.ClientSecret != "" {
		resp["SECRET_HASH"] = SecretHash(resp["USERNAME"], c.cfg.ClientID, c.cfg.ClientSecret)
	}
	in := &cognitoidentityprovider.RespondToAuthChallengeInput{
		ChallengeName:      types.ChallengeNameType(ch.Name),
		ClientId:           aws.String(c.cfg.ClientID),
		ChallengeResponses: resp,
		ClientMetadata:     c.cfg.ClientMetadata,
	}
	if ch.session != "" {
		in.Session = aws.String(ch.session)
	}
	sent := time.Now()
	out, err := c.idp.RespondToAuthChallenge(ctx, in)
	if err != nil {
		return nil, classify(err)
	}
	if out.ChallengeName != "" {
		return nil, c.challenge(out.ChallengeName, out.ChallengeParameters, out.Session, ch.Username)
	}
	return tokenFromResult(out.AuthenticationResult, sent, skewOf(out.ResultMetadata))
}

// Revoke revokes a refresh token (RevokeToken) and the access and ID tokens
// issued from it: sign-out. The app client must allow token revocation
// (the default for clients created since 2021). Errors are classified as for
// SignIn.
func (c *Client) Revoke(ctx context.Context, refreshToken string) error {
	in := &cognitoidentityprovider.RevokeTokenInput{
		ClientId: aws.String(c.cfg.ClientID),
		Token:    aws.String(refreshToken),
	}
	if c.cfg.ClientSecret != "" {
		in.ClientSecret = aws.String(c.cfg.ClientSecret)
	}
	_, err := c.idp.RevokeToken(ctx, in)
	return classify(err)
}

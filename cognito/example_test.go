package cognito_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/aws/aws-sdk-go-v2/service/cognitoidentityprovider"
	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/cognito"
)

func ExampleSecretHash() {
	// For a sign-in, over the name the user typed; for REFRESH_TOKEN_AUTH,
	// over the internal user name (Client.Refresh does that by itself).
	fmt.Println(cognito.SecretHash("user", "client", "secret"))
	// Output: wvW87lzZoI+qQCVGmWVBJLlucdJ65huAVP1z+0MgA6E=
}

func ExampleDecodeClaims() {
	// The payload of an ID token, as Cognito issues it (the signature is
	// not checked: see DecodeClaims).
	idToken := "eyJhbGciOiJSUzI1NiJ9." +
		"eyJzdWIiOiI3ZDRjIiwiY29nbml0bzp1c2VybmFtZSI6IjdkNGMiLCJlbWFpbCI6ImFkYUBleGFtcGxlLmNvbSIsImlhdCI6MTcwMDAwMDAwMCwiZXhwIjoxNzAwMDAzNjAwfQ." +
		"c2ln"
	c, err := cognito.DecodeClaims(idToken)
	if err != nil {
		log.Fatal(err)
	}
	life, _ := c.Lifetime()
	fmt.Println(c.Email, c.Username, life)
	// Output: ada@example.com 7d4c 1h0m0s
}

// Sign in once, keep the session (user-pool tokens and identity-pool AWS
// credentials) fresh in the background, and use it from HTTP and AWS SDK
// clients without ever waiting for a refresh.
func ExampleKeep() {
	ctx := context.Background()
	client, err := cognito.New(cognito.Config{Region: "eu-west-1", ClientID: "1example23456789"})
	if err != nil {
		log.Fatal(err)
	}
	tok, err := client.SignIn(ctx, "ada@example.com", "password from the user")
	var ch *cognito.ChallengeError
	if errors.As(err, &ch) && ch.Name == "NEW_PASSWORD_REQUIRED" {
		tok, err = client.RespondToChallenge(ctx, ch, map[string]string{"NEW_PASSWORD": "a new password"})
	}
	if err != nil {
		log.Fatal(err)
	}

	k, err := tokenkeeper.New(tokenkeeper.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer k.Close()
	session, err := cognito.Keep(k, cognito.SessionConfig{
		Client:   client,
		Token:    tok,
		Identity: &cognito.IdentityConfig{IdentityPoolID: "eu-west-1:0f1e2d3c-0000-4000-8000-000000000000"},
	})
	if err != nil {
		log.Fatal(err)
	}

	// An API behind the user pool: the interceptor adds the access token.
	api := tokenkeeper.NewClient(session.UserPool, nil)
	resp, err := api.Get("https://api.example.com/me")
	if errors.Is(err, tokenkeeper.ErrReauthRequired) {
		// The refresh token expired or was revoked: sign in again, then
		// session.Adopt(ctx, newTokens).
		return
	}
	if err == nil {
		resp.Body.Close()
	}

	// Any AWS SDK client, with the identity pool's credentials.
	svc := cognitoidentityprovider.New(cognitoidentityprovider.Options{
		Region:      "eu-west-1",
		Credentials: session.Credentials(),
	})
	_ = svc
}

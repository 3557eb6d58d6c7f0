package tokenkeeper_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"golang.org/x/oauth2"
)

// A keeper holding one token from a custom source. The first fetch waits for
// the source; afterwards fetches return the cached token at once while the
// keeper refreshes it in the background, inside its refresh window.
func Example() {
	k, err := tokenkeeper.New(tokenkeeper.Config{})
	if err != nil {
		panic(err)
	}
	defer k.Close()

	calls := 0
	src := tokenkeeper.SourceFunc(func(ctx context.Context, cur *oauth2.Token) (*oauth2.Token, error) {
		calls++ // a real source calls the identity provider here
		return &oauth2.Token{AccessToken: fmt.Sprint("token-", calls), TokenType: "Bearer",
			RefreshToken: "refresh", Expiry: time.Now().Add(time.Hour)}, nil
	})
	h, err := k.Add(tokenkeeper.TokenConfig{Name: "api", Source: src})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	for range 3 {
		tok, err := h.TokenContext(ctx)
		if err != nil {
			panic(err)
		}
		fmt.Println(tok.AccessToken)
	}
	fmt.Println("source calls:", calls)
	// Output:
	// token-1
	// token-1
	// token-1
	// source calls: 1
}

// A Handle is an oauth2.TokenSource, so it plugs into oauth2.NewClient and
// every library that takes a TokenSource.
func ExampleHandle_Token() {
	k, _ := tokenkeeper.New(tokenkeeper.Config{})
	defer k.Close()
	h, _ := k.Add(tokenkeeper.TokenConfig{
		Name:   "static",
		Source: tokenkeeper.FromTokenSource(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "abc", Expiry: time.Now().Add(time.Hour)})),
	})
	var ts oauth2.TokenSource = h
	tok, _ := ts.Token()
	fmt.Println(tok.AccessToken)
	// Output: abc
}

// Policies move the refresh window and tune idle detection. Here a token is
// refreshed between 10 and 5 minutes before it expires, at the first moment
// without activity for 10 seconds.
func ExamplePolicy() {
	planned := make(chan tokenkeeper.Event, 16)
	k, _ := tokenkeeper.New(tokenkeeper.Config{OnEvent: func(e tokenkeeper.Event) {
		if e.Kind == tokenkeeper.EventScheduled {
			planned <- e
		}
	}})
	defer k.Close()
	start := time.Now()
	h, _ := k.Add(tokenkeeper.TokenConfig{
		Name: "short-window",
		Source: tokenkeeper.SourceFunc(func(ctx context.Context, _ *oauth2.Token) (*oauth2.Token, error) {
			return &oauth2.Token{AccessToken: "x", Expiry: start.Add(time.Hour)}, nil
		}),
		Policy: &tokenkeeper.Policy{StartLead: 10 * time.Minute, EndLead: 5 * time.Minute, IdleGap: 10 * time.Second, NoJitter: true},
	})
	h.TokenContext(context.Background())
	for e := range planned {
		if e.Reason == "window-opens" {
			st := h.Status()
			fmt.Println("window opens", st.WindowStart.Sub(start).Round(time.Minute), "after the token arrived")
			fmt.Println("window ends", st.WindowEnd.Sub(start).Round(time.Minute), "after")
			break
		}
	}
	// Output:
	// window opens 50m0s after the token arrived
	// window ends 55m0s after
}

// Classify tells permanent failures (the user must sign in again) from
// transient ones (retry later).
func ExampleClassify() {
	revoked := &oauth2.RetrieveError{Response: &http.Response{StatusCode: 400}, ErrorCode: "invalid_grant"}
	busy := tokenkeeper.RetryAfter(errors.New("503 from the token endpoint"), 30*time.Second)
	for _, err := range []error{revoked, busy, errors.New("connection reset")} {
		re := tokenkeeper.Classify(err)
		fmt.Printf("permanent=%v retry-after=%v\n", re.Permanent, re.RetryAfter)
	}
	// Output:
	// permanent=true retry-after=0s
	// permanent=false retry-after=30s
	// permanent=false retry-after=0s
}

// A caller with no valid token gets a typed error it can branch on.
func ExampleErrReauthRequired() {
	k, _ := tokenkeeper.New(tokenkeeper.Config{})
	defer k.Close()
	h, _ := k.Add(tokenkeeper.TokenConfig{
		Name: "revoked",
		Source: tokenkeeper.SourceFunc(func(ctx context.Context, _ *oauth2.Token) (*oauth2.Token, error) {
			return nil, tokenkeeper.Permanent(errors.New("refresh token revoked"))
		}),
	})
	_, err := h.TokenContext(context.Background())
	switch {
	case errors.Is(err, tokenkeeper.ErrReauthRequired):
		fmt.Println("sign in again")
	case errors.Is(err, tokenkeeper.ErrCircuitOpen):
		fmt.Println("identity provider unavailable, try later")
	}
	// Output: sign in again
}

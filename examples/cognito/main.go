// Command cognito signs a user in to an AWS Cognito user pool once, then
// calls an API through tokenkeeper's interceptor for as long as the session
// lives, while a keeper renews the tokens in the background: the Go version
// of an app that calls Amplify's fetchAuthSession before every request, with
// the refresh taken off the request path.
//
// Against AWS (the app client must allow ALLOW_USER_PASSWORD_AUTH):
//
//	COGNITO_PASSWORD=... go run ./examples/cognito \
//	    -region eu-west-1 -pool eu-west-1_AbCdEf -client 1example23456789 \
//	    -user ada@example.com -api https://api.example.com/me -every 1m
//
// Against cognito-local (see cognito/testdata/cognito-local), with a pool,
// an app client and a user created there:
//
//	COGNITO_PASSWORD=... go run ./examples/cognito -endpoint http://127.0.0.1:9229 \
//	    -region local -pool local_AbC -client abc123 -user ada@example.com
//
// Without -api the example starts a small API on loopback that accepts a
// Cognito access token until it expires (it decodes the token without
// verifying it: a demo, not a resource server) and answers 401 otherwise.
//
// The password comes from COGNITO_PASSWORD (else one line of standard
// input), the client secret, if the app client has one, from
// COGNITO_CLIENT_SECRET, and a new password for a user created with a
// temporary one from COGNITO_NEW_PASSWORD: flags are visible to other users
// of the machine. Tokens are never printed. With -identity-pool it also keeps
// AWS credentials from a Cognito identity pool and prints their access key
// id and expiry.
//
// The command stops after -for (0: never), on Ctrl-C, or when the session
// needs a new sign-in (refresh token expired or revoked), with exit status 2.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/cognito"
)

type options struct {
	region, pool, client, user, endpoint string
	identityPool                         string
	api                                  string
	every, duration                      time.Duration
	signOut                              bool
	verbose                              bool
	password, newPassword, clientSecret  string
	logs                                 io.Writer // keeper events; nil: none
}

func main() {
	var o options
	flag.StringVar(&o.region, "region", "", "AWS region of the user pool (\"local\" for cognito-local)")
	flag.StringVar(&o.pool, "pool", "", "user pool id (optional; checked against -region)")
	flag.StringVar(&o.client, "client", "", "app client id")
	flag.StringVar(&o.user, "user", "", "user name or e-mail address")
	flag.StringVar(&o.endpoint, "endpoint", "", "Cognito endpoint for an emulator, such as http://127.0.0.1:9229")
	flag.StringVar(&o.identityPool, "identity-pool", "", "identity pool id, to also keep AWS credentials")
	flag.StringVar(&o.api, "api", "", "URL to GET with the access token (default: a demo API on loopback)")
	flag.DurationVar(&o.every, "every", 10*time.Second, "time between API calls")
	flag.DurationVar(&o.duration, "for", 0, "stop after this long (0: until the session ends or Ctrl-C)")
	flag.BoolVar(&o.signOut, "signout", false, "revoke the refresh token when stopping")
	flag.BoolVar(&o.verbose, "v", false, "log every keeper event (never a token)")
	flag.Parse()
	o.clientSecret = os.Getenv("COGNITO_CLIENT_SECRET")
	o.newPassword = os.Getenv("COGNITO_NEW_PASSWORD")
	o.password = os.Getenv("COGNITO_PASSWORD")
	if o.password == "" && o.user != "" {
		fmt.Fprint(os.Stderr, "password (echoed; set COGNITO_PASSWORD to avoid): ")
		line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
		o.password = strings.TrimRight(line, "\r\n")
	}

	o.logs = os.Stderr
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	err := run(ctx, os.Stdout, o)
	switch {
	case errors.Is(err, tokenkeeper.ErrReauthRequired):
		fmt.Fprintln(os.Stderr, "session ended: sign in again:", err)
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, w io.Writer, o options) error {
	if o.region == "" || o.client == "" || o.user == "" {
		return errors.New("-region, -client and -user are required")
	}
	if o.every <= 0 {
		return errors.New("-every must be positive")
	}
	if o.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	client, err := cognito.New(cognito.Config{
		Region: o.region, UserPoolID: o.pool, ClientID: o.client,
		ClientSecret: o.clientSecret, Endpoint: o.endpoint,
	})
	if err != nil {
		return err
	}

	// Sign in once.
	tok, err := client.SignIn(ctx, o.user, o.password)
	var ch *cognito.ChallengeError
	if errors.As(err, &ch) && ch.Name == "NEW_PASSWORD_REQUIRED" && o.newPassword != "" {
		tok, err = client.RespondToChallenge(ctx, ch, map[string]string{"NEW_PASSWORD": o.newPassword})
	}
	if errors.As(err, &ch) {
		return fmt.Errorf("sign-in needs the %s challenge answered, which this example does not do (for NEW_PASSWORD_REQUIRED set COGNITO_NEW_PASSWORD)", ch.Name)
	}
	if err != nil {
		return fmt.Errorf("sign-in: %w", err)
	}
	claims, err := cognito.DecodeClaims(cognito.IDToken(tok))
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "signed in as %s (user %s); tokens valid until %s\n",
		claims.Email, claims.Username, tok.Expiry.Format(time.TimeOnly))

	// Keep the session fresh in the background.
	level := slog.LevelInfo
	if o.verbose {
		level = slog.LevelDebug
	}
	var cfg tokenkeeper.Config
	if o.logs != nil {
		cfg.Logger = slog.New(slog.NewTextHandler(o.logs, &slog.HandlerOptions{Level: level}))
	}
	k, err := tokenkeeper.New(cfg)
	if err != nil {
		return err
	}
	defer k.Close()
	sc := cognito.SessionConfig{Client: client, Token: tok}
	if o.identityPool != "" {
		sc.Identity = &cognito.IdentityConfig{IdentityPoolID: o.identityPool}
	}
	session, err := cognito.Keep(k, sc)
	if err != nil {
		return err
	}
	if o.signOut {
		defer func() {
			t, err := session.UserPool.TokenContext(context.Background())
			if err == nil {
				err = client.Revoke(context.Background(), t.RefreshToken)
			}
			fmt.Fprintln(w, "signed out:", errString(err))
		}()
	}

	api := o.api
	if api == "" {
		url, closeAPI, err := startDemoAPI()
		if err != nil {
			return err
		}
		defer closeAPI()
		api = url
	}

	// The interceptor: every request gets the current access token, taken
	// from the keeper without waiting, and a 401 makes the keeper refresh
	// at once (and the request is sent once more).
	httpClient := tokenkeeper.NewClient(session.UserPool, nil)
	tick := time.NewTicker(o.every)
	defer tick.Stop()
	for n := 1; ; n++ {
		if err := callAPI(ctx, w, httpClient, api, n); err != nil {
			if errors.Is(err, tokenkeeper.ErrReauthRequired) {
				return err
			}
			fmt.Fprintf(w, "call %d: %v\n", n, err)
		}
		if p := session.Credentials(); p != nil {
			if creds, err := p.Retrieve(ctx); err == nil {
				fmt.Fprintf(w, "  AWS credentials %s (identity %s) valid until %s\n",
					creds.AccessKeyID, session.IdentityID(), creds.Expires.Format(time.TimeOnly))
			} else if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				fmt.Fprintf(w, "  AWS credentials: %v\n", err)
			}
		}
		select {
		case <-ctx.Done():
			fmt.Fprintf(w, "stopping after %d calls\n", n)
			return nil
		case <-tick.C:
		}
	}
}

func callAPI(ctx context.Context, w io.Writer, c *http.Client, url string, n int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	fmt.Fprintf(w, "call %d: %s in %v: %s\n", n, resp.Status, time.Since(start).Round(time.Millisecond), strings.TrimSpace(string(body)))
	return nil
}

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// startDemoAPI serves GET / on loopback: 200 with the caller's user name
// while the bearer token is an unexpired Cognito access token, else 401.
func startDemoAPI() (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		jwt, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		// Demo only: a real API verifies the signature against the pool's
		// JWKS and checks iss, client_id and token_use.
		c, err := cognito.DecodeClaims(jwt)
		if !ok || err != nil || c.TokenUse != "access" || !time.Now().Before(c.Expiry) {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			http.Error(w, "invalid or expired token", http.StatusUnauthorized)
			return
		}
		fmt.Fprintf(w, "hello %s, your token expires in %v\n", c.Username, time.Until(c.Expiry).Round(time.Second))
	})}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String() + "/", func() { srv.Close() }, nil
}

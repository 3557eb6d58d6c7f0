package cognito

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	cip "github.com/aws/aws-sdk-go-v2/service/cognitoidentityprovider"
	"github.com/aws/aws-sdk-go-v2/service/cognitoidentityprovider/types"
	"github.com/tokenkeeper/tokenkeeper"
)

// The tests in this file run against cognito-local, a Cognito user-pool
// emulator from npm, pinned in testdata/cognito-local/package.json and
// installed by testdata/cognito-local/install.sh. Without it they skip,
// unless TOKENKEEPER_REQUIRE_COGNITO=1 (as in CI), when they fail.
//
// One cognito-local process serves the whole test binary: it listens on a
// free loopback port and keeps its data in a temporary directory; TestMain
// stops it.

const requireEnv = "TOKENKEEPER_REQUIRE_COGNITO"

func TestMain(m *testing.M) {
	code := m.Run()
	local.stop()
	os.Exit(code)
}

type cognitoLocal struct {
	once     sync.Once
	endpoint string
	err      error // why it is not running
	skip     bool  // not installed (as opposed to broken)
	cmd      *exec.Cmd
	dir      string
	out      *syncBuffer
	exited   chan struct{} // closed when the process has exited
	pools    atomic.Int64
}

var local cognitoLocal

// syncBuffer collects the emulator's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// cognitoLocalEndpoint returns the URL of the running emulator, starting it
// on first use, or skips (fails, under TOKENKEEPER_REQUIRE_COGNITO=1) the test.
func cognitoLocalEndpoint(t *testing.T) string {
	t.Helper()
	local.once.Do(local.start)
	if local.err != nil {
		if local.skip && os.Getenv(requireEnv) != "1" {
			t.Skip(local.err)
		}
		t.Fatal(local.err)
	}
	return local.endpoint
}

func (l *cognitoLocal) start() {
	pkgDir, err := filepath.Abs(filepath.Join("testdata", "cognito-local"))
	if err != nil {
		l.err = err
		return
	}
	bin := filepath.Join(pkgDir, "node_modules", ".bin", "cognito-local")
	if _, err := os.Stat(bin); err != nil {
		l.skip = true
		l.err = fmt.Errorf("cognito-local is not installed: run %s (needs Node 20 and npm)", filepath.Join(pkgDir, "install.sh"))
		return
	}
	if _, err := exec.LookPath("node"); err != nil {
		l.skip = true
		l.err = errors.New("node is not on PATH: cognito-local needs Node 20")
		return
	}
	port, err := freePort()
	if err != nil {
		l.err = err
		return
	}
	l.dir, err = os.MkdirTemp("", "cognito-local-")
	if err != nil {
		l.err = err
		return
	}
	l.out = &syncBuffer{}
	l.cmd = exec.Command(bin)
	l.cmd.Dir = l.dir // its data goes to ./.cognito
	l.cmd.Env = append(os.Environ(), "PORT="+port, "HOST=127.0.0.1")
	l.cmd.Stdout, l.cmd.Stderr = l.out, l.out
	dieWithParent(l.cmd)
	if err := l.cmd.Start(); err != nil {
		l.err = fmt.Errorf("starting cognito-local: %w", err)
		return
	}
	l.endpoint = "http://127.0.0.1:" + port
	l.exited = make(chan struct{})
	go func() { l.cmd.Wait(); close(l.exited) }()
	// Wait for its health endpoint (an external process: polling it is the
	// only way to know).
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
	client := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-l.exited:
			l.err = fmt.Errorf("cognito-local exited at start:\n%s", l.out)
			return
		case <-deadline:
			l.err = fmt.Errorf("cognito-local did not become healthy in 30 s:\n%s", l.out)
			return
		case <-tick.C:
		}
		resp, err := client.Get(l.endpoint + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
	}
}

func (l *cognitoLocal) stop() {
	if l.exited != nil {
		l.cmd.Process.Signal(os.Interrupt)
		select {
		case <-l.exited:
		case <-time.After(5 * time.Second):
			l.cmd.Process.Kill()
			<-l.exited
		}
	}
	if l.dir != "" {
		os.RemoveAll(l.dir)
	}
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	_, port, err := net.SplitHostPort(ln.Addr().String())
	return port, err
}

// localPool is a user pool, an app client and a user in cognito-local.
type localPool struct {
	endpoint string
	admin    *cip.Client
	poolID   string
	clientID string
	secret   string
	email    string
	password string
}

type poolOptions struct {
	lifetime time.Duration // access and ID tokens (whole seconds)
	secret   bool
}

// newLocalPool creates a pool, an app client with short token lifetimes
// and a confirmed user, through cognito-local's API.
func newLocalPool(t *testing.T, opt poolOptions) *localPool {
	t.Helper()
	endpoint := cognitoLocalEndpoint(t)
	ctx := context.Background()
	// cognito-local checks no signature; the admin calls are signed with
	// dummy credentials all the same, as they would be against AWS.
	admin := cip.New(cip.Options{
		Region:       "local",
		BaseEndpoint: aws.String(endpoint),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "local", SecretAccessKey: "local"}, nil
		}),
		Retryer: aws.NopRetryer{},
	})
	n := local.pools.Add(1)
	pool, err := admin.CreateUserPool(ctx, &cip.CreateUserPoolInput{PoolName: aws.String(fmt.Sprintf("pool-%d", n))})
	if err != nil {
		t.Fatalf("CreateUserPool: %v\n%s", err, local.out)
	}
	secs := int32(opt.lifetime / time.Second)
	cl, err := admin.CreateUserPoolClient(ctx, &cip.CreateUserPoolClientInput{
		UserPoolId:          pool.UserPool.Id,
		ClientName:          aws.String("app"),
		ExplicitAuthFlows:   []types.ExplicitAuthFlowsType{types.ExplicitAuthFlowsTypeAllowUserPasswordAuth, types.ExplicitAuthFlowsTypeAllowRefreshTokenAuth},
		AccessTokenValidity: aws.Int32(secs),
		IdTokenValidity:     aws.Int32(secs),
		TokenValidityUnits:  &types.TokenValidityUnitsType{AccessToken: types.TimeUnitsTypeSeconds, IdToken: types.TimeUnitsTypeSeconds},
		GenerateSecret:      opt.secret,
	})
	if err != nil {
		t.Fatalf("CreateUserPoolClient: %v", err)
	}
	p := &localPool{
		endpoint: endpoint, admin: admin, poolID: aws.ToString(pool.UserPool.Id),
		clientID: aws.ToString(cl.UserPoolClient.ClientId), secret: aws.ToString(cl.UserPoolClient.ClientSecret),
		email: fmt.Sprintf("user%d@example.com", n), password: "Str0ng-Passw0rd!",
	}
	if opt.secret && p.secret == "" {
		t.Fatalf("cognito-local generated no client secret")
	}
	p.createUser(t, p.email, true)
	return p
}

// createUser adds a user; with permanent, its password is set for good,
// else it must choose a new one at first sign-in.
func (p *localPool) createUser(t *testing.T, email string, permanent bool) {
	t.Helper()
	ctx := context.Background()
	if _, err := p.admin.AdminCreateUser(ctx, &cip.AdminCreateUserInput{
		UserPoolId: aws.String(p.poolID), Username: aws.String(email),
		TemporaryPassword: aws.String("Temp-Passw0rd!"), MessageAction: types.MessageActionTypeSuppress,
		UserAttributes: []types.AttributeType{{Name: aws.String("email"), Value: aws.String(email)}, {Name: aws.String("email_verified"), Value: aws.String("true")}},
	}); err != nil {
		t.Fatalf("AdminCreateUser: %v", err)
	}
	if !permanent {
		return
	}
	if _, err := p.admin.AdminSetUserPassword(ctx, &cip.AdminSetUserPasswordInput{
		UserPoolId: aws.String(p.poolID), Username: aws.String(email), Password: aws.String(p.password), Permanent: true,
	}); err != nil {
		t.Fatalf("AdminSetUserPassword: %v", err)
	}
}

func (p *localPool) client(t *testing.T, endpoint string) *Client {
	t.Helper()
	if endpoint == "" {
		endpoint = p.endpoint
	}
	c, err := New(Config{Region: "local", UserPoolID: p.poolID, ClientID: p.clientID, ClientSecret: p.secret, Endpoint: endpoint})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestLocalKeeper signs in against cognito-local and keeps the session
// through a real keeper while tokens that live three seconds are renewed with
// REFRESH_TOKEN_AUTH.
func TestLocalKeeper(t *testing.T) {
	tests := []struct {
		name   string
		secret bool
	}{
		{"public client", false},
		{"client with secret", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			const life = 3 * time.Second
			p := newLocalPool(t, poolOptions{lifetime: life, secret: tt.secret})
			c := p.client(t, "")
			sent := time.Now()
			tok, err := c.SignIn(context.Background(), p.email, p.password)
			if err != nil {
				t.Fatalf("SignIn: %v\n%s", err, local.out)
			}
			// cognito-local sends no ExpiresIn: the expiry comes from the JWT.
			if tok.ExpiresIn != 0 {
				t.Errorf("ExpiresIn = %d; cognito-local was expected to send none", tok.ExpiresIn)
			}
			if d := tok.Expiry.Sub(sent); d < life-2*time.Second || d > life {
				t.Errorf("sign-in token expires in %v, want %v", d, life)
			}
			claims, err := DecodeClaims(IDToken(tok))
			if err != nil {
				t.Fatal(err)
			}
			if claims.Email != p.email || claims.PoolID() != p.poolID || claims.Username == "" {
				t.Errorf("ID token claims %+v", claims)
			}

			k, events := testKeeper(t, tokenkeeper.Config{Policy: fastPolicy})
			s, err := Keep(k, SessionConfig{Client: c, Token: tok})
			if err != nil {
				t.Fatal(err)
			}
			prev := tok
			for i := 1; i <= 2; i++ {
				e := waitEvent(t, events, 4*life, is(tokenkeeper.EventSucceeded, "cognito"), func(e tokenkeeper.Event) {
					if e.Kind == tokenkeeper.EventFailed || e.Kind == tokenkeeper.EventReauthRequired {
						t.Errorf("%s: %v", e.Kind, e.Err)
					}
				})
				start := time.Now()
				cur, err := s.UserPool.TokenContext(context.Background())
				wait := time.Since(start)
				if err != nil {
					t.Fatalf("TokenContext: %v", err)
				}
				t.Logf("refresh %d: latency %v, hand-out %v, valid for %v", i, e.Latency, wait, time.Until(cur.Expiry).Round(time.Millisecond))
				if cur.AccessToken == prev.AccessToken || IDToken(cur) == "" || cur.RefreshToken != tok.RefreshToken {
					t.Errorf("refresh %d: unexpected token (new access %v, ID %v, same refresh %v)", i,
						cur.AccessToken != prev.AccessToken, IDToken(cur) != "", cur.RefreshToken == tok.RefreshToken)
				}
				// The new access token is accepted by the user pool.
				if _, err := p.admin.GetUser(context.Background(), &cip.GetUserInput{AccessToken: aws.String(cur.AccessToken)}); err != nil {
					t.Errorf("GetUser with the refreshed access token: %v", err)
				}
				prev = cur
			}
		})
	}
}

// faultProxy sits in front of cognito-local and answers the first refresh
// requests with faults.
type faultProxy struct {
	proxy  *httputil.ReverseProxy
	mu     sync.Mutex
	faults []fakeFault
	served int
}

func (fp *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	isRefresh := strings.HasSuffix(r.Header.Get("X-Amz-Target"), ".InitiateAuth") && bytes.Contains(body, []byte("REFRESH_TOKEN_AUTH"))
	fp.mu.Lock()
	var ft *fakeFault
	if isRefresh && len(fp.faults) > 0 {
		ft = &fp.faults[0]
		fp.faults = fp.faults[1:]
		fp.served++
	}
	fp.mu.Unlock()
	switch {
	case ft == nil:
		fp.proxy.ServeHTTP(w, r)
	case ft.drop:
		if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
			conn.Close()
		}
	case ft.typ == "":
		w.WriteHeader(ft.status)
		io.WriteString(w, ft.body)
	default:
		writeErr(w, apiError{ft.status, ft.typ, ft.msg})
	}
}

// TestLocalSurvivesFaults puts a proxy that fails the first refreshes in
// front of cognito-local: the session outlives throttling, 5xx answers and
// a dropped connection, and is renewed once they pass.
func TestLocalSurvivesFaults(t *testing.T) {
	t.Parallel()
	const life = 3 * time.Second
	p := newLocalPool(t, poolOptions{lifetime: life})
	target, _ := url.Parse(p.endpoint)
	fp := &faultProxy{proxy: httputil.NewSingleHostReverseProxy(target), faults: []fakeFault{
		{status: 400, typ: "TooManyRequestsException", msg: "Rate exceeded"},
		{status: 500, typ: "InternalErrorException", msg: "internal"},
		{status: 502, body: "<html>Bad Gateway</html>"},
		{drop: true},
	}}
	proxy := httptest.NewServer(fp)
	t.Cleanup(proxy.Close)
	c := p.client(t, proxy.URL)
	tok, err := c.SignIn(context.Background(), p.email, p.password)
	if err != nil {
		t.Fatal(err)
	}
	k, events := testKeeper(t, tokenkeeper.Config{Policy: faultPolicy, Breaker: tokenkeeper.BreakerSettings{Failures: 20}})
	s, err := Keep(k, SessionConfig{Client: c, Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	failed := 0
	waitEvent(t, events, 4*life, is(tokenkeeper.EventSucceeded, "cognito"), func(e tokenkeeper.Event) {
		switch e.Kind {
		case tokenkeeper.EventFailed:
			failed++
			if tokenkeeper.Classify(e.Err).Permanent {
				t.Errorf("fault classified as permanent: %v", e.Err)
			}
			if got, err := s.UserPool.TokenContext(context.Background()); err != nil || !got.Expiry.After(time.Now()) {
				t.Errorf("during faults, TokenContext = %v", err)
			}
		case tokenkeeper.EventReauthRequired:
			t.Errorf("session dropped: %v", e.Err)
		}
	})
	if failed != 4 {
		t.Errorf("%d failed attempts, want 4", failed)
	}
	cur, err := s.UserPool.TokenContext(context.Background())
	if err != nil || cur.AccessToken == tok.AccessToken {
		t.Fatalf("after the faults: %v", err)
	}
}

// TestLocalErrors checks the errors cognito-local gives for bad input.
func TestLocalErrors(t *testing.T) {
	t.Parallel()
	p := newLocalPool(t, poolOptions{lifetime: time.Minute})
	ctx := context.Background()
	c := p.client(t, "")

	t.Run("wrong password", func(t *testing.T) {
		_, err := c.SignIn(ctx, p.email, "Wr0ng-Passw0rd!")
		// Cognito says NotAuthorizedException, cognito-local
		// InvalidPasswordException: both permanent.
		if re := asRefreshError(t, err); !re.Permanent || (re.Code != "InvalidPasswordException" && re.Code != "NotAuthorizedException") {
			t.Errorf("got %+v", re)
		}
		assertNoSecrets(t, err, "Wr0ng-Passw0rd!")
	})
	t.Run("unknown client id", func(t *testing.T) {
		bad, err := New(Config{Region: "local", ClientID: "no-such-client", Endpoint: p.endpoint})
		if err != nil {
			t.Fatal(err)
		}
		_, err = bad.SignIn(ctx, p.email, p.password)
		if re := asRefreshError(t, err); !re.Permanent || re.Code != "ResourceNotFoundException" {
			t.Errorf("got %+v", re)
		}
	})
	t.Run("new password required", func(t *testing.T) {
		email := "newpass-" + p.email
		p.createUser(t, email, false)
		_, err := c.SignIn(ctx, email, "Temp-Passw0rd!")
		var ch *ChallengeError
		if !errors.As(err, &ch) || ch.Name != "NEW_PASSWORD_REQUIRED" {
			t.Fatalf("SignIn = %v, want NEW_PASSWORD_REQUIRED", err)
		}
		tok, err := c.RespondToChallenge(ctx, ch, map[string]string{"NEW_PASSWORD": p.password})
		if err != nil {
			t.Fatalf("RespondToChallenge: %v", err)
		}
		if tok.RefreshToken == "" || IDToken(tok) == "" {
			t.Errorf("incomplete tokens")
		}
	})
	t.Run("unconfirmed user", func(t *testing.T) {
		email := "unconfirmed-" + p.email
		if _, err := p.admin.SignUp(ctx, &cip.SignUpInput{ClientId: aws.String(p.clientID), Username: aws.String(email), Password: aws.String(p.password)}); err != nil {
			t.Fatalf("SignUp: %v", err)
		}
		_, err := c.SignIn(ctx, email, p.password)
		if re := asRefreshError(t, err); !re.Permanent || re.Code != "UserNotConfirmedException" {
			t.Errorf("got %+v", re)
		}
	})
	t.Run("revoked refresh token", func(t *testing.T) {
		tok, err := c.SignIn(ctx, p.email, p.password)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Revoke(ctx, tok.RefreshToken); err != nil {
			t.Fatalf("Revoke: %v", err)
		}
		_, err = c.Refresh(ctx, tok)
		if re := asRefreshError(t, err); !re.Permanent || re.Code != "NotAuthorizedException" {
			t.Errorf("got %+v", re)
		}
		assertNoSecrets(t, err, tok.RefreshToken, tok.AccessToken)
	})
	t.Run("deleted user", func(t *testing.T) {
		email := "deleted-" + p.email
		p.createUser(t, email, true)
		tok, err := c.SignIn(ctx, email, p.password)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.admin.AdminDeleteUser(ctx, &cip.AdminDeleteUserInput{UserPoolId: aws.String(p.poolID), Username: aws.String(email)}); err != nil {
			t.Fatal(err)
		}
		_, err = c.Refresh(ctx, tok)
		if re := asRefreshError(t, err); !re.Permanent {
			t.Errorf("got %+v", re)
		}
	})
	t.Run("pool and region disagree", func(t *testing.T) {
		_, err := New(Config{Region: "us-east-1", UserPoolID: "eu-west-1_X", ClientID: p.clientID, Endpoint: p.endpoint})
		if !errors.Is(err, ErrRegionMismatch) {
			t.Errorf("New = %v", err)
		}
	})
}

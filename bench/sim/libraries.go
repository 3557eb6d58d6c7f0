package sim

import (
	"context"
	"fmt"
	"sync"
	"time"

	"cloud.google.com/go/auth"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/smithy-go/auth/bearer"
	"github.com/tokenkeeper/tokenkeeper"
	"golang.org/x/oauth2"
)

// Early is the early-expiry lead given to every rival that has one: the end
// of tokenkeeper's default window for a one-hour token (15 minutes).
const Early = 15 * time.Minute

// Contenders returns every library under comparison, tokenkeeper first.
func Contenders() []Contender {
	return []Contender{
		TokenKeeper(""),
		OAuth2Reuse(0),
		OAuth2Reuse(Early),
		GoogleCached(0),
		GoogleCached(Early),
		AWSCredentialsCache(Early),
		SmithyTokenCache(Early),
		FixedTimer(Early),
	}
}

// TokenKeeper is tokenkeeper with its default Config and Policy (the usage
// model's time zone set to UTC, the simulation's). A non-empty group puts
// every token of a run in that TokenConfig.Group.
func TokenKeeper(group string) Contender {
	c := TokenKeeperWith("tokenkeeper", "", tokenkeeper.Config{}, nil)
	c.Config = "tokenkeeper.New(tokenkeeper.Config{Location: time.UTC}); k.Add(tokenkeeper.TokenConfig{Name, Source, Token})"
	if group != "" {
		c = TokenKeeperWith("tokenkeeper (Group)", group, tokenkeeper.Config{}, nil)
		c.Config = "as tokenkeeper, with TokenConfig.Group = \"" + group + "\" for every token"
	}
	return c
}

// TokenKeeperWith is tokenkeeper with cfg (its Location set to UTC) and,
// for every token, pol (nil: the keeper's default) and group.
func TokenKeeperWith(name, group string, cfg tokenkeeper.Config, pol *tokenkeeper.Policy) Contender {
	cfg.Location = time.UTC
	return Contender{
		Name:   name,
		Module: "github.com/tokenkeeper/tokenkeeper",
		Config: fmt.Sprintf("Config %+v, Policy %+v", cfg, pol),
		New: func(env *Env) (Kit, error) {
			k, err := tokenkeeper.New(cfg)
			if err != nil {
				return nil, err
			}
			return &tkKit{k: k, group: group, pol: pol}, nil
		},
	}
}

// TokenKeeperVariants is tokenkeeper with settings other than its defaults,
// for the what-if table; each Config field says what changed.
func TokenKeeperVariants() []Contender {
	const m = time.Minute
	v := []Contender{
		TokenKeeperWith("Breaker.MaxOpen 30s", "", tokenkeeper.Config{Breaker: tokenkeeper.BreakerSettings{MaxOpen: 30 * time.Second}}, nil),
		TokenKeeperWith("window 30 to 15 min", "", tokenkeeper.Config{}, &tokenkeeper.Policy{StartLead: 30 * m, EndLead: 15 * m}),
		TokenKeeperWith("window 45 to 30 min", "", tokenkeeper.Config{}, &tokenkeeper.Policy{StartLead: 45 * m, EndLead: 30 * m}),
		TokenKeeperWith("window 45 to 30 min, MaxOpen 30s", "", tokenkeeper.Config{Breaker: tokenkeeper.BreakerSettings{MaxOpen: 30 * time.Second}},
			&tokenkeeper.Policy{StartLead: 45 * m, EndLead: 30 * m}),
	}
	v[0].Config = "Config.Breaker.MaxOpen = 30s (default 5m)"
	v[1].Config = "Policy{StartLead: 30m, EndLead: 15m} (default 20m to 15m)"
	v[2].Config = "Policy{StartLead: 45m, EndLead: 30m}"
	v[3].Config = "both of the above"
	return v
}

type tkKit struct {
	k     *tokenkeeper.Keeper
	group string
	pol   *tokenkeeper.Policy
}

func toOAuth2(t Token) *oauth2.Token {
	return &oauth2.Token{AccessToken: t.Value, TokenType: "Bearer", RefreshToken: "refresh", Expiry: t.Expiry}
}

func (k *tkKit) Add(name string, src *Source) (Instance, error) {
	tc := tokenkeeper.TokenConfig{
		Name:   name,
		Group:  k.group,
		Policy: k.pol,
		Source: tokenkeeper.SourceFunc(func(ctx context.Context, _ *oauth2.Token) (*oauth2.Token, error) {
			t, err := src.Fetch(ctx)
			if err != nil {
				return nil, err
			}
			return toOAuth2(t), nil
		}),
	}
	if t, ok := src.Initial(); ok {
		tc.Token = toOAuth2(t)
	}
	h, err := k.k.Add(tc)
	if err != nil {
		return nil, err
	}
	return tkInstance{h}, nil
}

func (k *tkKit) Close() { k.k.Close() }

type tkInstance struct{ h *tokenkeeper.Handle }

func (i tkInstance) Token(ctx context.Context) (string, error) {
	t, err := i.h.TokenContext(ctx)
	if err != nil {
		return "", err
	}
	return t.AccessToken, nil
}

// OAuth2Reuse is golang.org/x/oauth2's ReuseTokenSource (early == 0) or
// ReuseTokenSourceWithExpiry(tok, src, early).
func OAuth2Reuse(early time.Duration) Contender {
	c := Contender{
		Name:   "oauth2.ReuseTokenSource",
		Module: "golang.org/x/oauth2",
		Config: "oauth2.ReuseTokenSource(tok, src)",
	}
	if early > 0 {
		c.Name = "oauth2.ReuseTokenSourceWithExpiry"
		c.Config = fmt.Sprintf("oauth2.ReuseTokenSourceWithExpiry(tok, src, %v)", early)
	}
	c.New = func(env *Env) (Kit, error) {
		return &kit{add: func(_ string, src *Source) (Instance, func(), error) {
			ts := tokenSourceFunc(func() (*oauth2.Token, error) {
				// oauth2.TokenSource has no ctx: the client timeout bounds the call.
				t, err := src.Fetch(context.Background())
				if err != nil {
					return nil, err
				}
				return toOAuth2(t), nil
			})
			var init *oauth2.Token
			if t, ok := src.Initial(); ok {
				init = toOAuth2(t)
			}
			var rts oauth2.TokenSource
			if early > 0 {
				rts = oauth2.ReuseTokenSourceWithExpiry(init, ts, early)
			} else {
				rts = oauth2.ReuseTokenSource(init, ts)
			}
			return oauth2Instance{ts: rts, gate: newGate(env)}, nil, nil
		}}, nil
	}
	return c
}

type tokenSourceFunc func() (*oauth2.Token, error)

func (f tokenSourceFunc) Token() (*oauth2.Token, error) { return f() }

type oauth2Instance struct {
	ts   oauth2.TokenSource
	gate gate
}

func (i oauth2Instance) Token(context.Context) (string, error) {
	defer i.gate.enter()()
	t, err := i.ts.Token()
	if err != nil {
		return "", err
	}
	return t.AccessToken, nil
}

// GoogleCached is cloud.google.com/go/auth's NewCachedTokenProvider with
// asynchronous refresh on (its default) and ExpireEarly = early (zero: the
// library's default, 3m45s).
func GoogleCached(early time.Duration) Contender {
	c := Contender{
		Name:   "auth.CachedTokenProvider",
		Module: "cloud.google.com/go/auth",
		Config: "auth.NewCachedTokenProvider(tp, nil) (async refresh, ExpireEarly default 3m45s)",
	}
	if early > 0 {
		c.Name = fmt.Sprintf("auth.CachedTokenProvider (%v)", shortDur(early))
		c.Config = fmt.Sprintf("auth.NewCachedTokenProvider(tp, &auth.CachedTokenProviderOptions{ExpireEarly: %v}) (async refresh)", early)
	}
	c.New = func(env *Env) (Kit, error) {
		return &kit{add: func(_ string, src *Source) (Instance, func(), error) {
			g := &googleInstance{env: env, gate: newGate(env)}
			g.cond = sync.NewCond(&g.mu)
			tp := googleProviderFunc(func(ctx context.Context) (*auth.Token, error) {
				t, err := src.Fetch(ctx)
				if env.Virtual && ctx.Value(googleCaller{}) == nil {
					g.asyncDone()
				}
				if err != nil {
					return nil, err
				}
				return &auth.Token{Value: t.Value, Type: "Bearer", Expiry: t.Expiry}, nil
			})
			var opts *auth.CachedTokenProviderOptions
			if early > 0 {
				opts = &auth.CachedTokenProviderOptions{ExpireEarly: early}
			}
			g.tp = auth.NewCachedTokenProvider(tp, opts)
			return g, nil, nil
		}}, nil
	}
	return c
}

// gate stands in, inside a synctest bubble, for the sync.Mutex that a
// library takes on every call and holds across a blocking refresh: a
// goroutine waiting on a sync.Mutex is not durably blocked, so virtual time
// would stop while one waits. The harness makes callers of such a library
// queue on a channel (first come, first served) around the library's call
// instead; since the library's own mutex serialises the same calls, callers
// wait exactly as long as they would on it. Outside a bubble the gate is
// nil and does nothing.
type gate chan struct{}

func newGate(env *Env) gate {
	if !env.Virtual {
		return nil
	}
	return make(gate, 1)
}

// enter waits for the gate and returns the function that leaves it.
func (g gate) enter() func() {
	if g == nil {
		return func() {}
	}
	g <- struct{}{}
	return func() { <-g }
}

// googleInstance drives a cachedTokenProvider.
//
// That provider takes its sync.Mutex on every call and holds it across a
// blocking refresh (the one a caller makes once the token has expired), so
// its callers go through a gate. Its asynchronous refresh goroutine takes
// the same mutex to store its result; had it to wait for a caller that
// refreshes under the mutex, virtual time would stop. The instance prevents
// that without changing what the library does: the asynchronous refresh,
// once its call to the provider returns, waits (on a sync.Cond, which is
// durable) until no caller is inside Token, which is exactly when it could
// take the library's mutex anyway; and the next caller lets it finish
// storing its result (synctest.Wait) before calling in. Outside a bubble
// none of this runs.
type googleInstance struct {
	env  *Env
	tp   auth.TokenProvider
	gate gate

	mu      sync.Mutex
	cond    *sync.Cond
	inside  bool // a caller is inside tp.Token
	transit bool // an asynchronous refresh returned and may not have stored its token yet
}

type googleCaller struct{}

type googleProviderFunc func(ctx context.Context) (*auth.Token, error)

func (f googleProviderFunc) Token(ctx context.Context) (*auth.Token, error) { return f(ctx) }

func (g *googleInstance) asyncDone() {
	g.mu.Lock()
	for g.inside {
		g.cond.Wait()
	}
	g.transit = true
	g.mu.Unlock()
}

func (g *googleInstance) Token(ctx context.Context) (string, error) {
	if g.env.Virtual {
		defer g.gate.enter()()
		g.mu.Lock()
		if g.transit {
			g.mu.Unlock()
			g.env.Settle()
			g.mu.Lock()
			g.transit = false
		}
		g.inside = true
		g.mu.Unlock()
		defer func() {
			g.mu.Lock()
			g.inside = false
			g.cond.Broadcast()
			g.mu.Unlock()
		}()
		ctx = context.WithValue(ctx, googleCaller{}, true)
	}
	t, err := g.tp.Token(ctx)
	if err != nil {
		return "", err
	}
	return t.Value, nil
}

// AWSCredentialsCache is aws-sdk-go-v2's aws.CredentialsCache with
// ExpiryWindow = window (no jitter, its default).
func AWSCredentialsCache(window time.Duration) Contender {
	return Contender{
		Name:   "aws.CredentialsCache",
		Module: "github.com/aws/aws-sdk-go-v2",
		Config: fmt.Sprintf("aws.NewCredentialsCache(p, func(o *aws.CredentialsCacheOptions) { o.ExpiryWindow = %v })", window),
		New: func(env *Env) (Kit, error) {
			return &kit{add: func(_ string, src *Source) (Instance, func(), error) {
				p := aws.CredentialsProviderFunc(func(ctx context.Context) (aws.Credentials, error) {
					t, err := src.Fetch(ctx)
					if err != nil {
						return aws.Credentials{}, err
					}
					return aws.Credentials{AccessKeyID: "AKIDSIM", SecretAccessKey: "secret", SessionToken: t.Value,
						CanExpire: true, Expires: t.Expiry, Source: "sim"}, nil
				})
				c := aws.NewCredentialsCache(p, func(o *aws.CredentialsCacheOptions) { o.ExpiryWindow = window })
				return awsInstance{c}, nil, nil
			}}, nil
		},
	}
}

type awsInstance struct{ c *aws.CredentialsCache }

func (i awsInstance) Token(ctx context.Context) (string, error) {
	c, err := i.c.Retrieve(ctx)
	if err != nil {
		return "", err
	}
	return c.SessionToken, nil
}

// SmithyTokenCache is smithy-go's bearer.TokenCache with
// RefreshBeforeExpires = before and asynchronous refresh (its default).
func SmithyTokenCache(before time.Duration) Contender {
	return Contender{
		Name:   "bearer.TokenCache",
		Module: "github.com/aws/smithy-go",
		Config: fmt.Sprintf("bearer.NewTokenCache(p, func(o *bearer.TokenCacheOptions) { o.RefreshBeforeExpires = %v }) (async refresh)", before),
		New: func(env *Env) (Kit, error) {
			return &kit{add: func(_ string, src *Source) (Instance, func(), error) {
				p := bearer.TokenProviderFunc(func(ctx context.Context) (bearer.Token, error) {
					t, err := src.Fetch(ctx)
					if err != nil {
						return bearer.Token{}, err
					}
					return bearer.Token{Value: t.Value, CanExpire: true, Expires: t.Expiry}, nil
				})
				c := bearer.NewTokenCache(p, func(o *bearer.TokenCacheOptions) { o.RefreshBeforeExpires = before })
				return smithyInstance{c}, nil, nil
			}}, nil
		},
	}
}

type smithyInstance struct{ c *bearer.TokenCache }

func (i smithyInstance) Token(ctx context.Context) (string, error) {
	t, err := i.c.RetrieveBearerToken(ctx)
	if err != nil {
		return "", err
	}
	return t.Value, nil
}

func shortDur(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return d.String()
}

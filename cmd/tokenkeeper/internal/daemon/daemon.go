// Package daemon runs the tokenkeeper agent from a validated configuration:
// it opens the store, builds the sources, starts the keeper and the agent's
// HTTP server, applies a new configuration without dropping tokens
// (Reload), and shuts everything down in order (Close).
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/agent"
	"github.com/tokenkeeper/tokenkeeper/cognito"
	"github.com/tokenkeeper/tokenkeeper/filestore"
	"github.com/tokenkeeper/tokenkeeper/internal/config"
	"github.com/tokenkeeper/tokenkeeper/redisstore"
	"golang.org/x/oauth2"
)

// Options adjusts a Daemon.
type Options struct {
	// Logger receives the daemon's and the keeper's records. If nil, they
	// are discarded.
	Logger *slog.Logger
	// Version is shown by the agent.
	Version string
	// OnEvent, if not nil, also receives every keeper event (after the
	// agent's server). It must not block.
	OnEvent func(tokenkeeper.Event)
	// HTTPClient is used by the OAuth2 sources. If nil, a client without
	// retries or redirects to other hosts (see oidc.Config.HTTPClient).
	HTTPClient *http.Client
}

// Daemon is a running agent.
type Daemon struct {
	opts Options
	log  *slog.Logger

	mu     sync.Mutex // serialises Reload and Close
	cfg    *config.Config
	store  tokenkeeper.Store
	shared *redisstore.Store // the store, when it is shared through Redis
	rdb    *redis.Client     // shared's client
	keeper *tokenkeeper.Keeper
	server *agent.Server
	ln     net.Listener
	httpd  *http.Server
	served chan struct{}
	secret string
	prints map[string]string // token name -> config fingerprint
	// retired holds the removed tokens whose last refresh may still be
	// running (see retire).
	retired map[string]retired
	closed  bool

	srvMu sync.RWMutex // guards server for the event closure
}

// Start starts an agent for cfg. Nothing is left running if it fails: a bad
// configuration never starts a half-working agent.
func Start(cfg *config.Config, opts Options) (*Daemon, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Daemon{opts: opts, log: log, cfg: cfg, prints: make(map[string]string),
		retired: make(map[string]retired), served: make(chan struct{})}
	var undo []func()
	started := false
	defer func() {
		if !started {
			for _, f := range slices.Backward(undo) {
				f()
			}
		}
	}()
	var err error

	// Sources first: they do no I/O, and a source that cannot be built is
	// a configuration error found before anything is opened.
	sources := make(map[string]tokenkeeper.Source, len(cfg.Tokens))
	for _, t := range cfg.Tokens {
		s, err := d.newSource(t)
		if err != nil {
			return nil, fmt.Errorf("token %q: %w", t.Name, err)
		}
		sources[t.Name] = s
	}

	// The listener before the store: another agent on the same socket is
	// the likelier mistake, and its message is clearer.
	if cfg.Listen.Network == "unix" {
		if err := os.MkdirAll(filepath.Dir(cfg.Listen.Address), 0o700); err != nil {
			return nil, fmt.Errorf("socket directory: %w", err)
		}
	} else {
		if d.secret, err = agent.LoadOrCreateSecret(cfg.SecretFile); err != nil {
			return nil, err
		}
	}
	d.ln, err = agent.Listen(cfg.Listen.String())
	if err != nil {
		return nil, err
	}
	undo = append(undo, func() { d.ln.Close() })

	if err := d.openStore(cfg.Store); err != nil {
		return nil, err
	}
	undo = append(undo, func() { d.closeStore() })

	d.keeper, err = tokenkeeper.New(tokenkeeper.Config{
		Workers:          cfg.Keeper.Workers,
		MaxQueued:        cfg.Keeper.MaxQueued,
		GroupConcurrency: cfg.Keeper.GroupConcurrency,
		Breaker:          cfg.Keeper.Breaker,
		Policy:           cfg.Keeper.Policy,
		Store:            d.store,
		OnEvent:          d.event,
		Logger:           log,
	})
	if err != nil {
		return nil, err
	}
	undo = append(undo, func() {
		// Tokens added before the failure may be refreshing: let them end
		// (a refresh cut off after the server rotated its token loses it).
		ctx, cancel := context.WithTimeout(context.Background(), DrainTimeout)
		d.keeper.Shutdown(ctx)
		cancel()
	})
	if d.shared != nil {
		// Tokens other agents store are installed in this keeper.
		if err := d.shared.Attach(d.keeper); err != nil {
			return nil, err
		}
	}

	srv, err := agent.New(agent.Options{
		Keeper:  d.keeper,
		Secret:  d.secret,
		Logger:  log,
		Version: opts.Version,
		History: cfg.History,
	})
	if err != nil {
		return nil, err
	}
	d.srvMu.Lock()
	d.server = srv
	d.srvMu.Unlock()
	undo = append(undo, func() { srv.Close() })
	if d.shared != nil {
		if err := srv.Registry().Register(redisCollector{d.shared}); err != nil {
			return nil, err
		}
	}

	for _, t := range cfg.Tokens {
		if err := d.add(t, sources[t.Name]); err != nil {
			return nil, err
		}
	}

	d.httpd = &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	go func() {
		defer close(d.served)
		if err := d.httpd.Serve(d.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("tokenkeeper agent: serving stopped", "error", err)
		}
	}()
	started = true
	log.Info("tokenkeeper agent started", "listen", d.Addr(), "tokens", len(cfg.Tokens),
		"store", cfg.Store.String(), "version", opts.Version)
	return d, nil
}

// event forwards a keeper event to the agent's server and to Options.OnEvent.
func (d *Daemon) event(e tokenkeeper.Event) {
	d.srvMu.RLock()
	s := d.server
	d.srvMu.RUnlock()
	if s != nil {
		s.Event(e)
	}
	if d.opts.OnEvent != nil {
		d.opts.OnEvent(e)
	}
}

// Addr returns the listen address: "unix:/path" or "127.0.0.1:port" (with
// the port actually bound when the configuration asked for port 0).
func (d *Daemon) Addr() string {
	a := d.ln.Addr()
	if a.Network() == "unix" {
		return "unix:" + a.String()
	}
	return a.String()
}

// Network and Address return the listener's network ("unix" or "tcp") and
// address, for a client.
func (d *Daemon) Network() string { return d.ln.Addr().Network() }

// Address is the listener's address (a socket path or host:port).
func (d *Daemon) Address() string { return d.ln.Addr().String() }

// Secret returns the bearer secret ("" on a Unix socket).
func (d *Daemon) Secret() string { return d.secret }

// Keeper returns the keeper.
func (d *Daemon) Keeper() *tokenkeeper.Keeper { return d.keeper }

// Config returns the configuration in force.
func (d *Daemon) Config() *config.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg
}

// Close shuts the agent down: the event streams end, the listener closes,
// refreshes in flight get up to DrainTimeout to finish (a refresh cut off
// after the server rotated the refresh token would lose the session;
// Keeper.Shutdown), then the keeper stops, requests still waiting for a
// token get an error, and the store is closed. It is idempotent.
func (d *Daemon) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	d.server.Close()
	ctx, cancel := context.WithTimeout(context.Background(), DrainTimeout+3*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- d.httpd.Shutdown(ctx) }()

	// Requests waiting for a refresh end with it (or with ErrClosed for one
	// that had not started), which lets httpd.Shutdown finish.
	kctx, kcancel := context.WithTimeout(ctx, DrainTimeout)
	if err := d.keeper.Shutdown(kctx); err != nil {
		// A token that did arrive is saved all the same; one whose
		// request was cut off may leave the server's rotation ahead of
		// the store (see docs/agent.md, "Crash safety").
		d.log.Warn("tokenkeeper agent: refreshes still in flight at shutdown were cancelled", "after", DrainTimeout)
	}
	kcancel()
	var errs []error
	if err := <-shut; err != nil {
		d.httpd.Close()
	}
	<-d.served
	if err := d.closeStore(); err != nil {
		errs = append(errs, fmt.Errorf("closing the store: %w", err))
	}
	d.log.Info("tokenkeeper agent stopped")
	return errors.Join(errs...)
}

// DrainTimeout bounds how long Close and Reload wait for refreshes in
// flight.
var DrainTimeout = 10 * time.Second

// waitIdle waits until h has no refresh running, or ctx ends. It reports
// whether h is idle.
func waitIdle(ctx context.Context, h *tokenkeeper.Handle) bool {
	for h.Status().State == tokenkeeper.StateRefreshing {
		if !sleepCtx(ctx) {
			return false
		}
	}
	return true
}

// sleepCtx waits a polling interval; it reports false if ctx ended first.
func sleepCtx(ctx context.Context) bool {
	t := time.NewTimer(20 * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// openStore opens the configured store.
func (d *Daemon) openStore(s config.Store) error {
	switch s.Type {
	case config.StoreMemory:
		d.store = newMemoryStore()
	case config.StoreRedis:
		return d.openRedis(s)
	default:
		st, err := filestore.Open(s.Path, filestore.Options{Key: s.Key, ExtraKeys: extraKeys()})
		if err != nil {
			return err
		}
		d.store = st
	}
	return nil
}

// extraKeys lists the token extras the store keeps: the file store's
// defaults (id_token, scope, ...) and those of Cognito's tokens (the user
// name and device key a refresh needs), so that a restart loses none.
func extraKeys() []string {
	keys := filestore.DefaultExtraKeys()
	for _, k := range cognito.ExtraKeys() {
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	return keys
}

func closeStore(s tokenkeeper.Store) error {
	if c, ok := s.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// seedPrefix names the store records that remember which configured
// refresh token a stored session grew from. ':' cannot occur in a token
// name, so these never collide with a token.
const seedPrefix = "seed:"

// add starts keeping t. An oidc or cognito token resumes from the store,
// where the keeper saved the latest (rotated) refresh token, unless the
// configured refresh token changed since the stored session began: then the
// user has logged in again and the configured one is the fresh grant.
func (d *Daemon) add(t config.Token, src tokenkeeper.Source) error {
	d.awaitRetired(t.Name)
	tc := tokenkeeper.TokenConfig{Name: t.Name, Source: d.coordinate(t, src), Group: t.Group}
	pol := t.Policy
	tc.Policy = &pol
	if (t.Source.Type == config.SourceOIDC || t.Source.Type == config.SourceCognito) && t.Source.RefreshToken != "" {
		seed, err := d.seed(t)
		if err != nil {
			return err
		}
		tc.Token = seed
	}
	if _, err := d.keeper.Add(tc); err != nil {
		return fmt.Errorf("token %q: %w", t.Name, err)
	}
	d.prints[t.Name] = t.Fingerprint()
	return nil
}

// seed returns the initial token of an oidc token: nil to resume the stored
// session, or a token holding the configured refresh token.
func (d *Daemon) seed(t config.Token) (*oauth2.Token, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	want := config.SecretHash(t.Source.RefreshToken)
	_, err := d.store.Load(ctx, t.Name)
	switch {
	case err == nil:
		rec, serr := d.store.Load(ctx, seedPrefix+t.Name)
		if serr == nil && rec.AccessToken == want {
			return nil, nil // resume the stored session
		}
		if serr != nil && !errors.Is(serr, tokenkeeper.ErrNotFound) {
			return nil, fmt.Errorf("token %q: reading the store: %w", t.Name, serr)
		}
		if serr == nil {
			d.log.Info("tokenkeeper agent: the configured refresh token changed; starting a new session from it",
				"token", t.Name, "from", t.Source.RefreshTokenFrom)
		} else {
			// A session stored without its seed record: keep it.
			if err := d.saveSeed(ctx, t.Name, want); err != nil {
				return nil, err
			}
			return nil, nil
		}
	case !errors.Is(err, tokenkeeper.ErrNotFound):
		return nil, fmt.Errorf("token %q: reading the store: %w", t.Name, err)
	}
	if err := d.saveSeed(ctx, t.Name, want); err != nil {
		return nil, err
	}
	tok := &oauth2.Token{RefreshToken: t.Source.RefreshToken}
	if t.Source.Type == config.SourceCognito && t.Source.Username != "" {
		// The first refresh's SECRET_HASH needs the user's name; later
		// tokens carry it in their JWTs.
		tok = cognito.WithUsername(tok, t.Source.Username)
	}
	return tok, nil
}

func (d *Daemon) saveSeed(ctx context.Context, name, hash string) error {
	// The record is a token only in form: its "access token" is the hash.
	if err := d.store.Save(ctx, seedPrefix+name, &oauth2.Token{AccessToken: hash, TokenType: "seed"}); err != nil {
		return fmt.Errorf("token %q: writing the store: %w", name, err)
	}
	return nil
}

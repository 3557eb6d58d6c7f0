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

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/agent"
	"github.com/tokenkeeper/tokenkeeper/filestore"
	"github.com/tokenkeeper/tokenkeeper/internal/config"
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
	keeper *tokenkeeper.Keeper
	server *agent.Server
	ln     net.Listener
	httpd  *http.Server
	served chan struct{}
	secret string
	prints map[string]string // token name -> config fingerprint
	closed bool

	srvMu sync.RWMutex // guards server for the event closure
}

// Start starts an agent for cfg. Nothing is left running if it fails: a bad
// configuration never starts a half-working agent.
func Start(cfg *config.Config, opts Options) (*Daemon, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Daemon{opts: opts, log: log, cfg: cfg, prints: make(map[string]string), served: make(chan struct{})}
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

	d.store, err = openStore(cfg.Store)
	if err != nil {
		return nil, err
	}
	undo = append(undo, func() { closeStore(d.store) })

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
		d.drain(ctx, nil)
		cancel()
		d.keeper.Close()
	})

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
		"store", storeDesc(cfg.Store), "version", opts.Version)
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
// after the server rotated the refresh token would lose the session), then
// the keeper stops, requests still waiting for a token get an error, and
// the store is closed. It is idempotent.
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

	dctx, dcancel := context.WithTimeout(ctx, DrainTimeout)
	if n := d.drain(dctx, nil); n > 0 {
		d.log.Warn("tokenkeeper agent: refreshes still in flight at shutdown are cancelled", "count", n)
	}
	dcancel()
	d.keeper.Close() // ends the requests that wait for a refresh
	var errs []error
	if err := <-shut; err != nil {
		d.httpd.Close()
	}
	<-d.served
	if err := closeStore(d.store); err != nil {
		errs = append(errs, fmt.Errorf("closing the store: %w", err))
	}
	d.log.Info("tokenkeeper agent stopped")
	return errors.Join(errs...)
}

// DrainTimeout bounds how long Close and Reload wait for refreshes in
// flight.
var DrainTimeout = 10 * time.Second

// drain waits until no refresh is in flight for the named tokens (all
// tokens if names is nil), or ctx ends. It returns how many are still in
// flight.
func (d *Daemon) drain(ctx context.Context, names []string) int {
	for {
		n := 0
		for _, st := range d.keeper.Status() {
			if (names == nil || slices.Contains(names, st.Name)) && st.State == tokenkeeper.StateRefreshing {
				n++
			}
		}
		if n == 0 || !sleepCtx(ctx) {
			return n
		}
	}
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
func openStore(s config.Store) (tokenkeeper.Store, error) {
	if s.Type == "memory" {
		return newMemoryStore(), nil
	}
	st, err := filestore.Open(s.Path, filestore.Options{Key: s.Key})
	if err != nil {
		return nil, err
	}
	return st, nil
}

func closeStore(s tokenkeeper.Store) error {
	if c, ok := s.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

func storeDesc(s config.Store) string {
	if s.Type == "memory" {
		return "memory"
	}
	if s.Key != nil {
		return s.Path + " (encrypted)"
	}
	return s.Path
}

// seedPrefix names the store records that remember which configured
// refresh token a stored session grew from. ':' cannot occur in a token
// name, so these never collide with a token.
const seedPrefix = "seed:"

// add starts keeping t. An oidc token resumes from the store, where the
// keeper saved the latest (rotated) refresh token, unless the configured
// refresh token changed since the stored session began: then the user has
// logged in again and the configured one is the fresh grant.
func (d *Daemon) add(t config.Token, src tokenkeeper.Source) error {
	tc := tokenkeeper.TokenConfig{Name: t.Name, Source: src, Group: t.Group}
	pol := t.Policy
	tc.Policy = &pol
	if t.Source.Type == config.SourceOIDC && t.Source.RefreshToken != "" {
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
	return &oauth2.Token{RefreshToken: t.Source.RefreshToken}, nil
}

func (d *Daemon) saveSeed(ctx context.Context, name, hash string) error {
	// The record is a token only in form: its "access token" is the hash.
	if err := d.store.Save(ctx, seedPrefix+name, &oauth2.Token{AccessToken: hash, TokenType: "seed"}); err != nil {
		return fmt.Errorf("token %q: writing the store: %w", name, err)
	}
	return nil
}

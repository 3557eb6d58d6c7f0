package agent

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tokenkeeper/tokenkeeper"
)

// Options configures a Server. Only Keeper is required.
type Options struct {
	// Keeper is the keeper whose tokens the server hands out. Required.
	Keeper *tokenkeeper.Keeper
	// Secret is the bearer secret every request must carry (except /healthz
	// and the static status page) when it is not empty; use it on TCP
	// listeners (see LoadOrCreateSecret). If empty, requests are not
	// authenticated: use that only on a Unix socket, whose 0600 mode is the
	// guard.
	Secret string
	// Logger receives the server's warnings (refused requests, server
	// errors). Token values and secrets are never logged. If nil, nothing is
	// logged.
	Logger *slog.Logger
	// Version is shown on the status page and in the tokenkeeper_agent_info
	// metric.
	Version string
	// History is how much refresh and activity history the status page can
	// show. If zero, 6 hours; at least a minute and at most 24 hours (the
	// keeper keeps a day of activity).
	History time.Duration
	// WaitTimeout bounds how long a request waits for a refresh (a token
	// that is not valid, or POST /v1/tokens/{name}/refresh). If zero, 30
	// seconds.
	WaitTimeout time.Duration
}

// Defaults for zero Options fields.
const (
	DefaultHistory     = 6 * time.Hour
	MaxHistory         = 24 * time.Hour
	DefaultWaitTimeout = 30 * time.Second
)

// Server serves the agent's HTTP API for one keeper. Create it with [New],
// serve [Server.Handler], forward the keeper's events to [Server.Event], and
// call [Server.Close] before shutting the HTTP server down (Close ends the
// event streams, which would otherwise keep http.Server.Shutdown waiting).
type Server struct {
	k       *tokenkeeper.Keeper
	secret  string
	cookie  string // the page's session cookie name
	session string // and its value: an HMAC of the secret, never the secret
	log     *slog.Logger
	version string
	history time.Duration
	wait    time.Duration
	started time.Time

	mux     *http.ServeMux
	handler http.Handler

	// probe is a cancelled context: TokenValidFor(probe, min) returns the
	// cached token at once, or starts the refresh the token needs and
	// returns ctx's error without waiting for it (see
	// tokenkeeper.Handle.TokenValidFor).
	probe context.Context

	cacheMu sync.Mutex
	cache   atomic.Pointer[map[string]*tokenEntry]

	reg  *prometheus.Registry
	met  *metrics
	hub  *hub
	hist *history

	closeMu   sync.Mutex    // orders wg.Add in enter against Close
	done      chan struct{} // closed by Close
	closeOnce sync.Once
	wg        sync.WaitGroup // the event streams
}

// New returns a server for opts.Keeper. It starts no goroutine: the status
// page's history is fed by [Server.Event].
func New(opts Options) (*Server, error) {
	if opts.Keeper == nil {
		return nil, errors.New("tokenkeeper: agent.Options.Keeper is nil")
	}
	if opts.History < 0 || opts.WaitTimeout < 0 {
		return nil, errors.New("tokenkeeper: negative duration in agent.Options")
	}
	if opts.History == 0 {
		opts.History = DefaultHistory
	}
	opts.History = min(max(opts.History, time.Minute), MaxHistory)
	if opts.WaitTimeout == 0 {
		opts.WaitTimeout = DefaultWaitTimeout
	}
	for i := 0; i < len(opts.Secret); i++ {
		if c := opts.Secret[i]; c <= ' ' || c > '~' {
			return nil, errors.New("tokenkeeper: agent secret contains a space, a control character or a non-ASCII byte")
		}
	}
	s := &Server{
		k:       opts.Keeper,
		secret:  opts.Secret,
		log:     opts.Logger,
		version: opts.Version,
		history: opts.History,
		wait:    opts.WaitTimeout,
		started: time.Now(),
		done:    make(chan struct{}),
	}
	if s.version == "" {
		s.version = "devel"
	}
	if s.secret != "" {
		derive := func(label string) []byte {
			m := hmac.New(sha256.New, []byte(s.secret))
			m.Write([]byte(label))
			return m.Sum(nil)
		}
		s.session = hex.EncodeToString(derive("tokenkeeper agent page session v1"))
		// The name depends on the secret, so that two agents on one host
		// (cookies ignore ports) do not overwrite each other's cookie.
		s.cookie = "tokenkeeper_" + hex.EncodeToString(derive("tokenkeeper agent cookie name v1")[:4])
	}
	probe, cancel := context.WithCancel(context.Background())
	cancel()
	s.probe = probe
	empty := make(map[string]*tokenEntry)
	s.cache.Store(&empty)

	s.reg = prometheus.NewRegistry()
	s.met = newMetrics(s)
	s.hub = newHub(s.met.sseDropped)
	s.hist = newHistory(s.history)
	s.routes()
	return s, nil
}

// Handler returns the HTTP handler of the API, the metrics and the status
// page.
func (s *Server) Handler() http.Handler { return s.handler }

// Registry returns the registry behind /metrics, so that a command can add
// its own collectors.
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// Close ends the event streams, waiting for them. The handler keeps
// answering other requests. Close is idempotent and returns nil.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.closeMu.Lock()
		close(s.done)
		s.closeMu.Unlock()
		s.wg.Wait()
	})
	return nil
}

// enter registers a long-running request (an event stream) that Close waits
// for. It reports false once Close has started; otherwise the caller must
// call s.wg.Done when it returns.
func (s *Server) enter() bool {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	select {
	case <-s.done:
		return false
	default:
		s.wg.Add(1)
		return true
	}
}

// Event records a keeper event for the event stream, the metrics and the
// status page's history. It never blocks: set tokenkeeper.Config.OnEvent to
// a closure that calls it.
func (s *Server) Event(e tokenkeeper.Event) {
	s.met.event(e)
	s.hist.event(e)
	s.hub.publish(e)
	if e.Kind == tokenkeeper.EventRemoved {
		s.forget(e.Token)
		s.met.forget(e.Token)
	}
}

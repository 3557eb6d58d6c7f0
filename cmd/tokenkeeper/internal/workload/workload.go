// Package workload simulates a bursty user of the agent: sessions of rapid
// token fetches and API calls (a person clicking through an application),
// separated by quiet gaps (the person reads, thinks, or is away). It feeds
// the agent's usage model through the same API a real application uses, so
// that `tokenkeeper dev` shows refreshes landing in the quiet gaps.
package workload

import (
	"context"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokenkeeper/tokenkeeper/cmd/tokenkeeper/internal/client"
)

// Config configures a Workload. Zero durations take the defaults shown.
type Config struct {
	// Client reaches the agent. Required.
	Client *client.Client
	// Tokens are the token names a session uses. Required.
	Tokens []string
	// API, if not empty, is a protected resource called with each fetched
	// token (like an application would); a 401 counts as rejected.
	API string
	// HTTPClient calls API. If nil, a client with a 5 s timeout.
	HTTPClient *http.Client

	// Session is the range of a session's length. If zero, 4 to 15 s.
	SessionMin, SessionMax time.Duration
	// Gap is the range of the quiet time between sessions. If zero, 8 to
	// 30 s. Keep the minimum above the tokens' idle gap, so that every gap
	// is a chance to refresh.
	GapMin, GapMax time.Duration
	// Think is the range of the pause between two actions of a session. If
	// zero, 80 to 400 ms.
	ThinkMin, ThinkMax time.Duration

	// Seed makes the workload reproducible; if zero, a random one.
	Seed uint64
	// OnSession, if not nil, is called at the end of each session.
	OnSession func(Session)
}

// Session reports one finished session.
type Session struct {
	N        int
	Start    time.Time
	Duration time.Duration
	Fetches  int
	Errors   int
	NextGap  time.Duration
}

// Stats counts what the workload did.
type Stats struct {
	Sessions    int
	Fetches     int           // tokens fetched from the agent
	FetchErrors int           // fetches that failed
	SlowFetches int           // fetches that took longer than 50 ms
	MaxFetch    time.Duration // the slowest fetch
	APICalls    int
	APIRejected int // API calls answered 401
	APIErrors   int // API calls that failed otherwise
	LastError   string
	// Slow lists the first slow fetches: when, which token, how long.
	Slow []SlowFetchInfo
}

// SlowFetchInfo describes a slow fetch.
type SlowFetchInfo struct {
	At       time.Time
	Token    string
	Duration time.Duration
}

// SlowFetch is the latency above which a fetch counts as slow: an agent
// that hands out a cached token answers in well under a millisecond, so a
// slow fetch means the caller waited for a refresh.
const SlowFetch = 50 * time.Millisecond

// Workload is a running simulation.
type Workload struct {
	cfg  Config
	rng  *rand.Rand
	busy atomic.Bool
	edge atomic.Int64 // Unix ns when the current session or gap began

	mu    sync.Mutex
	stats Stats
}

// New returns a workload; Run runs it.
func New(cfg Config) *Workload {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.SessionMin, 4*time.Second)
	def(&cfg.SessionMax, 15*time.Second)
	def(&cfg.GapMin, 8*time.Second)
	def(&cfg.GapMax, 30*time.Second)
	def(&cfg.ThinkMin, 80*time.Millisecond)
	def(&cfg.ThinkMax, 400*time.Millisecond)
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 5 * time.Second}
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	w := &Workload{cfg: cfg, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	w.edge.Store(time.Now().UnixNano())
	return w
}

// Busy reports whether a session is running, and since when the workload
// has been busy (or quiet).
func (w *Workload) Busy() (busy bool, since time.Time) {
	return w.busy.Load(), time.Unix(0, w.edge.Load())
}

// Stats returns the counters.
func (w *Workload) Stats() Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.stats
	s.Slow = append([]SlowFetchInfo(nil), s.Slow...)
	return s
}

func (w *Workload) between(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(w.rng.Int64N(int64(hi-lo)))
}

// Run runs sessions and gaps until ctx ends. It starts with a session.
func (w *Workload) Run(ctx context.Context) {
	for n := 1; ctx.Err() == nil; n++ {
		s := w.session(ctx, n)
		s.NextGap = w.between(w.cfg.GapMin, w.cfg.GapMax)
		if w.cfg.OnSession != nil && ctx.Err() == nil {
			w.cfg.OnSession(s)
		}
		if !sleep(ctx, s.NextGap) {
			return
		}
	}
}

func (w *Workload) session(ctx context.Context, n int) Session {
	start := time.Now()
	w.edge.Store(start.UnixNano())
	w.busy.Store(true)
	defer func() {
		w.edge.Store(time.Now().UnixNano())
		w.busy.Store(false)
	}()
	s := Session{N: n, Start: start}
	end := start.Add(w.between(w.cfg.SessionMin, w.cfg.SessionMax))
	_ = w.cfg.Client.Activity(ctx)
	for time.Now().Before(end) && ctx.Err() == nil {
		name := w.cfg.Tokens[w.rng.IntN(len(w.cfg.Tokens))]
		ok := w.action(ctx, name)
		s.Fetches++
		if !ok {
			s.Errors++
		}
		if !sleep(ctx, w.between(w.cfg.ThinkMin, w.cfg.ThinkMax)) {
			break
		}
	}
	s.Duration = time.Since(start)
	w.mu.Lock()
	w.stats.Sessions++
	w.mu.Unlock()
	return s
}

// action fetches a token and calls the API with it.
func (w *Workload) action(ctx context.Context, name string) bool {
	t0 := time.Now()
	tok, err := w.cfg.Client.Token(ctx, name, 0)
	d := time.Since(t0)
	if ctx.Err() != nil {
		return true // shutting down: not the agent's fault
	}
	w.mu.Lock()
	w.stats.Fetches++
	w.stats.MaxFetch = max(w.stats.MaxFetch, d)
	if d > SlowFetch {
		w.stats.SlowFetches++
		if len(w.stats.Slow) < 10 {
			w.stats.Slow = append(w.stats.Slow, SlowFetchInfo{At: t0, Token: name, Duration: d})
		}
	}
	if err != nil {
		w.stats.FetchErrors++
		w.stats.LastError = err.Error()
	}
	w.mu.Unlock()
	if err != nil || w.cfg.API == "" {
		return err == nil
	}
	req, err := http.NewRequestWithContext(ctx, "GET", w.cfg.API, nil)
	if err != nil {
		return false
	}
	req.Header.Set("Authorization", tok.TokenType+" "+tok.AccessToken)
	resp, err := w.cfg.HTTPClient.Do(req)
	if ctx.Err() != nil {
		if err == nil {
			resp.Body.Close()
		}
		return true
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stats.APICalls++
	if err != nil {
		w.stats.APIErrors++
		w.stats.LastError = err.Error()
		return false
	}
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		w.stats.APIRejected++
		w.stats.LastError = "API answered 401 to token " + name
		return false
	case resp.StatusCode/100 != 2:
		w.stats.APIErrors++
		w.stats.LastError = "API answered " + resp.Status
		return false
	}
	return true
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

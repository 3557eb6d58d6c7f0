package sim

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"
)

// OutageMode says how the identity provider misbehaves during an outage.
type OutageMode uint8

const (
	// Down: every call fails (HTTP 503) after its usual latency.
	Down OutageMode = iota + 1
	// Hang: calls get no answer; the client gives up at its timeout.
	Hang
)

func (m OutageMode) String() string {
	switch m {
	case Down:
		return "down (503)"
	case Hang:
		return "hang (client timeout)"
	}
	return "none"
}

// Outage is a period during which the identity provider does not answer
// normally. Offsets are from the start of the run.
type Outage struct {
	Label      string
	Start, End time.Duration
	Mode       OutageMode
}

// IdPConfig describes the simulated identity provider and the HTTP client
// every library talks to it through.
type IdPConfig struct {
	// Lifetime of the access tokens it issues.
	Lifetime time.Duration
	// Median and P99 of the log-normal latency of a call. Zero Median: calls
	// answer at once. P99 <= Median: every call takes Median.
	Median, P99 time.Duration
	// FailureRate is the probability that a call outside an outage fails
	// with a transient error (HTTP 503) after its latency.
	FailureRate float64
	// Outages, in order.
	Outages []Outage
	// ClientTimeout bounds every call (the HTTP client's Timeout), the same
	// for every library. Zero: 30 s.
	ClientTimeout time.Duration
	// Seed drives the latency and failure draws: call number i of a run gets
	// the same draws whatever library makes it.
	Seed uint64
}

func (c IdPConfig) timeout() time.Duration {
	if c.ClientTimeout <= 0 {
		return 30 * time.Second
	}
	return c.ClientTimeout
}

// Outcome of one call to the identity provider.
type Outcome uint8

const (
	OK       Outcome = iota
	Failed           // the provider answered with an error
	TimedOut         // no answer within the client's timeout
	Canceled         // the caller's context ended first
)

func (o Outcome) String() string {
	return [...]string{"ok", "failed", "timeout", "canceled"}[o]
}

// Call is one call to the identity provider.
type Call struct {
	Start, End time.Duration // offsets from the run's start
	Outcome    Outcome
}

// ErrUnavailable is what a failed call returns (wrapped in *HTTPError).
var ErrUnavailable = errors.New("identity provider unavailable")

// HTTPError is a failed token request as a client library would report it.
type HTTPError struct {
	Status int
	Err    error
}

func (e *HTTPError) Error() string {
	return "token endpoint: HTTP " + strconv.Itoa(e.Status) + ": " + e.Err.Error()
}

func (e *HTTPError) Unwrap() error { return e.Err }

// errTimeout is what a call that got no answer returns.
var errTimeout = errors.New("token endpoint: client timeout awaiting response")

// IdP is the simulated identity provider. It is safe for concurrent use and
// works in real time or inside a synctest bubble (it only sleeps on timers).
type IdP struct {
	cfg   IdPConfig
	start time.Time
	sigma float64

	mu       sync.Mutex // held briefly, never across a wait
	calls    []Call
	expiry   map[string]time.Time
	inflight int
	peak     int
	issued   int
}

// NewIdP returns a provider whose offsets count from start.
func NewIdP(cfg IdPConfig, start time.Time) *IdP {
	p := &IdP{cfg: cfg, start: start, expiry: make(map[string]time.Time)}
	if cfg.Median > 0 && cfg.P99 > cfg.Median {
		// P99 = Median * exp(2.3263 * sigma)
		p.sigma = math.Log(float64(cfg.P99)/float64(cfg.Median)) / 2.3263478740408408
	}
	return p
}

// Issue registers a token issued at t outside any call (the token a run
// starts with) and returns it.
func (p *IdP) Issue(t time.Time) Token {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.issueLocked(t)
}

func (p *IdP) issueLocked(t time.Time) Token {
	p.issued++
	tok := Token{Value: "tok-" + strconv.Itoa(p.issued), Expiry: t.Add(p.cfg.Lifetime)}
	p.expiry[tok.Value] = tok.Expiry
	return tok
}

// ExpiryOf returns the real expiry of a token the provider issued.
func (p *IdP) ExpiryOf(value string) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.expiry[value]
	return e, ok
}

// Calls returns a copy of the calls made so far.
func (p *IdP) Calls() []Call {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Call(nil), p.calls...)
}

// NumCalls returns how many calls were started.
func (p *IdP) NumCalls() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.calls)
}

// Peak returns the largest number of calls that were in flight at once.
func (p *IdP) Peak() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.peak
}

func (p *IdP) outageAt(off time.Duration) OutageMode {
	for _, o := range p.cfg.Outages {
		if off >= o.Start && off < o.End {
			return o.Mode
		}
	}
	return 0
}

// draw returns the latency and failure of call number i.
func (p *IdP) draw(i int) (time.Duration, bool) {
	r := rand.New(rand.NewPCG(p.cfg.Seed, uint64(i)))
	lat := p.cfg.Median
	if p.sigma > 0 {
		lat = time.Duration(float64(p.cfg.Median) * math.Exp(p.sigma*r.NormFloat64()))
	}
	return lat, r.Float64() < p.cfg.FailureRate
}

// Fetch is one token request: it waits for the call's latency (bounded by
// the client timeout and ctx) and returns a new token or an error.
func (p *IdP) Fetch(ctx context.Context) (Token, error) {
	now := time.Now()
	off := now.Sub(p.start)
	p.mu.Lock()
	i := len(p.calls)
	p.calls = append(p.calls, Call{Start: off, End: -1})
	p.inflight++
	p.peak = max(p.peak, p.inflight)
	p.mu.Unlock()

	lat, fail := p.draw(i)
	mode := p.outageAt(off)
	outcome := OK
	switch {
	case mode == Hang:
		lat, outcome = p.cfg.timeout(), TimedOut
	case lat >= p.cfg.timeout():
		lat, outcome = p.cfg.timeout(), TimedOut
	case mode == Down || fail:
		outcome = Failed
	}
	if lat > 0 {
		t := time.NewTimer(lat)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			outcome = Canceled
		}
	} else if ctx.Err() != nil {
		outcome = Canceled
	}

	end := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inflight--
	p.calls[i].End = end.Sub(p.start)
	p.calls[i].Outcome = outcome
	switch outcome {
	case Failed:
		return Token{}, &HTTPError{Status: 503, Err: ErrUnavailable}
	case TimedOut:
		return Token{}, errTimeout
	case Canceled:
		return Token{}, fmt.Errorf("token endpoint: %w", ctx.Err())
	}
	// The client computes the expiry from expires_in when the answer arrives.
	return p.issueLocked(end), nil
}

// Token is an access token as the simulation sees it.
type Token struct {
	Value  string
	Expiry time.Time
}

// Source is what one library instance fetches tokens through: the provider,
// plus the token the run starts with (the seed).
//
// A library that accepts an initial token gets the seed through Initial; for
// the others, the first Fetch returns the seed without calling the provider
// if it is still valid, so that every library starts from the same token.
type Source struct {
	idp  *IdP
	mu   sync.Mutex
	seed *Token
}

// NewSource returns a source whose first token is seed (nil: none).
func (p *IdP) NewSource(seed *Token) *Source {
	return &Source{idp: p, seed: seed}
}

// Initial hands the seed to a library that accepts an initial token.
func (s *Source) Initial() (Token, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seed == nil {
		return Token{}, false
	}
	t := *s.seed
	s.seed = nil
	return t, true
}

// Fetch returns the seed if it was not handed out yet and is still valid,
// else a new token from the provider.
func (s *Source) Fetch(ctx context.Context) (Token, error) {
	s.mu.Lock()
	seed := s.seed
	s.seed = nil
	s.mu.Unlock()
	if seed != nil && seed.Expiry.After(time.Now()) {
		return *seed, nil
	}
	return s.idp.Fetch(ctx)
}

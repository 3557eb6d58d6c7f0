// Package breaker is a small circuit breaker for one identity provider.
//
// Closed: calls flow; consecutive failures are counted. After Failures of them
// in a row the breaker opens for OpenFor. Open: calls are refused until the
// open period ends; then the breaker is half-open and lets exactly one probe
// through. A successful probe closes it; a failed probe opens it again for
// twice the previous period, up to MaxOpen.
//
// All methods take the current time from the caller, so the breaker is
// deterministic under test. It is safe for concurrent use; it never calls out
// while holding its lock.
package breaker

import (
	"sync"
	"time"
)

// State is a breaker's state.
type State uint8

const (
	Closed State = iota
	Open
	HalfOpen
)

// String returns "closed", "open" or "half-open".
func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case Open:
		return "open"
	case HalfOpen:
		return "half-open"
	}
	return "unknown"
}

// Settings tunes a Breaker. Zero fields take the defaults shown.
type Settings struct {
	Failures int           // consecutive failures that open the breaker; 0 means 5
	OpenFor  time.Duration // first open period; 0 means 5 s
	MaxOpen  time.Duration // longest open period; 0 means 30 s
}

func (s Settings) withDefaults() Settings {
	if s.Failures <= 0 {
		s.Failures = 5
	}
	if s.OpenFor <= 0 {
		s.OpenFor = 5 * time.Second
	}
	if s.MaxOpen <= 0 {
		s.MaxOpen = 30 * time.Second
	}
	if s.MaxOpen < s.OpenFor {
		s.MaxOpen = s.OpenFor
	}
	return s
}

// Breaker is a circuit breaker. The zero value is not usable; call New.
type Breaker struct {
	set Settings

	mu        sync.Mutex
	state     State
	failures  int           // consecutive failures while closed
	openFor   time.Duration // current open period
	openUntil time.Time
	probing   bool // a half-open probe is in flight
	lastErr   error
}

// New returns a closed breaker.
func New(s Settings) *Breaker {
	s = s.withDefaults()
	return &Breaker{set: s, openFor: s.OpenFor}
}

// Transition describes a state change; From == To means none happened.
type Transition struct {
	From, To State
	Until    time.Time // end of the open period when To == Open
}

// Changed reports whether the state changed.
func (t Transition) Changed() bool { return t.From != t.To }

// state advances Open to HalfOpen when the open period ended. b.mu held.
func (b *Breaker) advance(now time.Time) {
	if b.state == Open && !now.Before(b.openUntil) {
		b.state = HalfOpen
		b.probing = false
	}
}

// Allow reports whether a call may go ahead at now. When the breaker is
// half-open, the first caller gets the probe (probe=true) and others are
// refused until it reports. When refused, until is when to ask again (zero
// while a probe is in flight) and cause is the last failure's error.
func (b *Breaker) Allow(now time.Time) (ok, probe bool, until time.Time, cause error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advance(now)
	switch b.state {
	case Closed:
		return true, false, time.Time{}, nil
	case HalfOpen:
		if !b.probing {
			b.probing = true
			return true, true, time.Time{}, nil
		}
		return false, false, time.Time{}, b.lastErr
	default:
		return false, false, b.openUntil, b.lastErr
	}
}

// Refuses reports, without taking the probe, whether Allow would refuse a call
// at now because the breaker is open (or half-open with its probe in flight).
func (b *Breaker) Refuses(now time.Time) (refused bool, until time.Time, cause error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advance(now)
	switch b.state {
	case Open:
		return true, b.openUntil, b.lastErr
	case HalfOpen:
		return b.probing, time.Time{}, b.lastErr
	}
	return false, time.Time{}, nil
}

// Success records a successful call.
func (b *Breaker) Success(now time.Time) Transition {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advance(now)
	from := b.state
	b.state = Closed
	b.failures = 0
	b.probing = false
	b.openFor = b.set.OpenFor
	b.lastErr = nil
	return Transition{From: from, To: Closed}
}

// Failure records a failed call with its error.
func (b *Breaker) Failure(now time.Time, err error) Transition {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advance(now)
	from := b.state
	b.lastErr = err
	switch b.state {
	case Closed:
		b.failures++
		if b.failures >= b.set.Failures {
			b.open(now)
		}
	case HalfOpen:
		// The probe failed: open again, for longer.
		b.openFor *= 2
		if b.openFor > b.set.MaxOpen {
			b.openFor = b.set.MaxOpen
		}
		b.open(now)
	case Open:
		// A call that was allowed before the breaker opened reports late:
		// nothing more to do.
	}
	return Transition{From: from, To: b.state, Until: b.openUntil}
}

func (b *Breaker) open(now time.Time) {
	b.state = Open
	b.probing = false
	b.failures = 0
	b.openUntil = now.Add(b.openFor)
}

// Snapshot returns the state at now, the end of the open period (if open) and
// the last failure.
func (b *Breaker) Snapshot(now time.Time) (State, time.Time, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advance(now)
	if b.state == Open {
		return b.state, b.openUntil, b.lastErr
	}
	return b.state, time.Time{}, b.lastErr
}

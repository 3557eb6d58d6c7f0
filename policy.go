package tokenkeeper

import (
	"errors"
	"fmt"
	"time"
)

// Policy holds the per-token rules. The zero value is the recommended
// default; each field's comment says what zero means.
//
// The refresh window is placed before expiry by StartLead and EndLead: for a
// one-hour token, by default from 20 to 15 minutes before expiry. Inside it
// the keeper refreshes at the first idle moment (IdleGap without activity), at
// the start of the quietest predicted slot, or at the window's end regardless.
// The window widens by itself when measured latency and failure rate leave too
// little room for retries.
type Policy struct {
	// StartLead is how long before expiry the refresh window opens. If zero,
	// a third of the token's lifetime. StartLead and EndLead longer than
	// half a token's lifetime are capped at half of it.
	StartLead time.Duration
	// EndLead is how long before expiry the window closes (the refresh is
	// started then at the latest). If zero, a quarter of the token's lifetime.
	EndLead time.Duration
	// IdleGap is how long without activity counts as an idle moment. If zero,
	// 30 seconds.
	IdleGap time.Duration
	// UnusedAfter: a token not fetched for this long is no longer refreshed
	// ahead of time; its next fetch refreshes it (and waits if it has
	// expired). If zero, tokens are always refreshed ahead of time.
	UnusedAfter time.Duration
	// ExpiryMargin: a token is handed out only while it is valid for at
	// least this long. If zero, 10 seconds or a twentieth of the token's
	// lifetime, whichever is shorter.
	ExpiryMargin time.Duration
	// DefaultLifetime is assumed for a token that arrives without an expiry.
	// If zero, such a token is treated as never expiring: it is served until
	// the server rejects it (see [Handle.Invalidate]).
	DefaultLifetime time.Duration
	// MaxLifetime caps a token's lifetime; an expiry further away is clamped
	// (and an event reports it). If zero, 365 days.
	MaxLifetime time.Duration
	// AttemptTimeout bounds one call to the Source. If zero, 30 seconds.
	AttemptTimeout time.Duration
	// RetryBase and RetryMax bound the exponential backoff between attempts
	// after a transient failure (full jitter: a uniform wait in [0,
	// min(RetryMax, RetryBase*2^n))). If zero, 1 second and 5 minutes. A
	// server's Retry-After is honoured when it asks for longer.
	RetryBase, RetryMax time.Duration
	// NoJitter disables the random spreading of window openings (for tests and
	// simulations that need exact times).
	NoJitter bool
}

// DefaultIdleGap and the other Default constants are the values zero fields
// of Policy stand for.
const (
	DefaultIdleGap        = 30 * time.Second
	DefaultExpiryMargin   = 10 * time.Second
	DefaultMaxLifetime    = 365 * 24 * time.Hour
	DefaultAttemptTimeout = 30 * time.Second
	DefaultRetryBase      = time.Second
	DefaultRetryMax       = 5 * time.Minute
)

// ErrBadPolicy is wrapped by the error Add returns for an invalid Policy.
var ErrBadPolicy = errors.New("tokenkeeper: invalid policy")

func (p Policy) validate() error {
	type field struct {
		name string
		d    time.Duration
	}
	for _, f := range []field{
		{"StartLead", p.StartLead}, {"EndLead", p.EndLead}, {"IdleGap", p.IdleGap},
		{"UnusedAfter", p.UnusedAfter}, {"ExpiryMargin", p.ExpiryMargin},
		{"DefaultLifetime", p.DefaultLifetime}, {"MaxLifetime", p.MaxLifetime},
		{"AttemptTimeout", p.AttemptTimeout}, {"RetryBase", p.RetryBase}, {"RetryMax", p.RetryMax},
	} {
		if f.d < 0 {
			return fmt.Errorf("%w: %s is negative (%v)", ErrBadPolicy, f.name, f.d)
		}
	}
	if p.StartLead != 0 && p.EndLead != 0 && p.StartLead < p.EndLead {
		return fmt.Errorf("%w: StartLead (%v) is shorter than EndLead (%v)", ErrBadPolicy, p.StartLead, p.EndLead)
	}
	if p.RetryBase != 0 && p.RetryMax != 0 && p.RetryMax < p.RetryBase {
		return fmt.Errorf("%w: RetryMax (%v) is shorter than RetryBase (%v)", ErrBadPolicy, p.RetryMax, p.RetryBase)
	}
	if p.MaxLifetime != 0 && p.DefaultLifetime > p.MaxLifetime {
		return fmt.Errorf("%w: DefaultLifetime (%v) exceeds MaxLifetime (%v)", ErrBadPolicy, p.DefaultLifetime, p.MaxLifetime)
	}
	return nil
}

// withDefaults fills the zero fields that do not depend on the token.
func (p Policy) withDefaults() Policy {
	if p.IdleGap == 0 {
		p.IdleGap = DefaultIdleGap
	}
	if p.MaxLifetime == 0 {
		p.MaxLifetime = DefaultMaxLifetime
	}
	if p.AttemptTimeout == 0 {
		p.AttemptTimeout = DefaultAttemptTimeout
	}
	if p.RetryBase == 0 {
		p.RetryBase = DefaultRetryBase
	}
	if p.RetryMax == 0 {
		p.RetryMax = DefaultRetryMax
	}
	if p.RetryMax < p.RetryBase {
		p.RetryMax = p.RetryBase
	}
	return p
}

// margin returns the expiry margin for a token of the given lifetime.
func (p Policy) margin(lifetime time.Duration) time.Duration {
	if p.ExpiryMargin > 0 {
		return p.ExpiryMargin
	}
	m := DefaultExpiryMargin
	if l := lifetime / 20; l < m {
		m = l
	}
	if m < 0 {
		m = 0
	}
	return m
}

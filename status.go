package tokenkeeper

import (
	"cmp"
	"errors"
	"log/slog"
	"slices"
	"time"
)

// State is a token's state as a status page shows it.
type State uint8

const (
	// StateEmpty: no access token yet (first fetch pending or failing).
	StateEmpty State = iota
	// StateValid: a valid token is cached; no refresh is running.
	StateValid
	// StateRefreshing: a refresh is in flight; a valid token, if any, is
	// still served.
	StateRefreshing
	// StateRetrying: the last attempt failed transiently; a retry is planned.
	StateRetrying
	// StateExpired: the cached token expired (or a server rejected it) and no
	// new one was obtained yet.
	StateExpired
	// StateReauthRequired: a permanent failure; the token needs a new grant.
	StateReauthRequired
	// StateDormant: unused for Policy.UnusedAfter; refreshed on next use.
	StateDormant
)

var stateNames = [...]string{"empty", "valid", "refreshing", "retrying", "expired", "reauth-required", "dormant"}

// String returns the state's name, such as "refreshing".
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "unknown"
}

// Status is a snapshot of one token, for progress indicators and status
// pages. It holds no secret.
type Status struct {
	Name  string
	Group string
	State State
	// HasToken reports whether an access token is cached (valid or not);
	// false while only a refresh token is known, even during the first
	// refresh (State is then StateRefreshing).
	HasToken bool

	Issued time.Time // when the current token arrived
	Expiry time.Time // zero: does not expire, or no token

	// NextRefresh is the next planned moment and NextReason why (a planner
	// reason such as "wait-idle" or "window-end", or "retry-backoff",
	// "no-token", "invalidated", "reauth-required").
	NextRefresh time.Time
	NextReason  string
	// WindowStart and WindowEnd delimit the current refresh window.
	WindowStart, WindowEnd time.Time

	RefreshingSince time.Time // zero unless a refresh is in flight

	Refreshes   uint64 // successful refreshes
	Failed      uint64 // failed attempts
	Failures    int    // consecutive failed attempts
	LastRefresh time.Time
	LastLatency time.Duration
	LatencyP99  time.Duration // over the recent refreshes
	LastError   string        // secret-free

	Breaker      BreakerState
	BreakerUntil time.Time // end of the open period
	LastUsed     time.Time // last hand-out (to the second)
	Waits        uint64    // fetches that had to wait for a refresh
}

// LogValue renders the status for log/slog.
func (s Status) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("name", s.Name),
		slog.String("state", s.State.String()),
		slog.Time("expiry", s.Expiry),
		slog.Time("next_refresh", s.NextRefresh),
		slog.String("next_reason", s.NextReason),
		slog.String("breaker", s.Breaker.String()),
	)
}

// Status returns a snapshot of the token's state.
func (h *Handle) Status() Status {
	now := h.k.clock.wallTime()
	st := Status{Name: h.name, Group: h.group, Waits: h.waits.Load()}
	s := h.cur.Load()
	if s != nil {
		st.HasToken = s.tok.AccessToken != ""
		st.Issued = time.Unix(0, s.issued)
		if s.expiry != 0 {
			st.Expiry = time.Unix(0, s.expiry)
		}
	}
	if lu := h.lastUsed.Load(); lu != 0 {
		st.LastUsed = time.Unix(lu, 0)
	}
	bs, until, _ := h.g.br.Snapshot(now)
	st.Breaker, st.BreakerUntil = BreakerState(bs), until

	h.mu.Lock()
	st.NextRefresh, st.NextReason = h.nextAt, h.nextReason
	st.WindowStart, st.WindowEnd = timeOf(h.windowStart), timeOf(h.windowEnd)
	st.RefreshingSince = h.inflightSince
	st.Refreshes, st.Failed, st.Failures = h.refreshes, h.failed, h.failures
	st.LastRefresh, st.LastLatency, st.LatencyP99 = h.lastRefresh, h.lastLatency, h.latencyP99()
	if h.lastErr != nil {
		st.LastError = h.lastErr.Error()
	}
	reauth := h.reauth != nil
	inflight := h.flight != nil && h.flight.running
	retrying := !h.retryAt.IsZero()
	h.mu.Unlock()

	switch {
	case reauth:
		st.State = StateReauthRequired
	case inflight:
		st.State = StateRefreshing
	case s == nil || s.tok.AccessToken == "":
		st.State = StateEmpty
	case s.validUntil <= now.UnixNano():
		st.State = StateExpired
	case retrying:
		st.State = StateRetrying
	case h.dormant.Load():
		st.State = StateDormant
	default:
		st.State = StateValid
	}
	return st
}

// Status returns a snapshot of every token, sorted by name.
func (k *Keeper) Status() []Status {
	hs := k.handles()
	out := make([]Status, 0, len(hs))
	for _, h := range hs {
		out = append(out, h.Status())
	}
	slices.SortFunc(out, func(a, b Status) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

func isNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

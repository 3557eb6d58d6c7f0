// Package plan decides when a token should be refreshed. It is a pure
// function of its input: no goroutines, no clock, no randomness of its own.
//
// The rule, for a token issued at I that expires at E (lifetime L = E - I):
//
//  1. The refresh window is [E - StartLead, E - EndLead]; by default
//     StartLead = L/3 and EndLead = L/4 (20 to 15 minutes before expiry for
//     a one-hour token).
//  2. The window widens when the measured refresh latency and failure rate
//     say EndLead leaves too little room to retry: EndLead grows to the
//     room needed (see [Room]) and StartLead grows by the same amount, both
//     capped at 90% of L (the cap limits the widening only: it never
//     shortens a lead that was already longer).
//  3. A server hint (RefreshAt, from refresh_in) inside the token's lifetime
//     opens the window at the hint instead (never later than the window's end).
//  4. The window's opening is delayed by Jitter * (window length)/2 so that
//     tokens issued together do not all enter their windows together.
//  5. Inside the window the token is refreshed at the first of: an idle moment
//     (no activity for IdleGap), the start of the slot with the lowest predicted
//     activity in the window (when it is clearly quieter than the window's
//     average), and the window's end, regardless.
//  6. A token past its expiry is refreshed now; a token without an expiry is
//     never refreshed proactively; a token unused for UnusedAfter is not
//     refreshed proactively (it is refreshed on its next use).
//
// [Next] applies these checks in order, the first that matches decides:
//
//   - no Expiry: [ReasonNoExpiry], nothing planned;
//   - Now at or after Expiry: [ReasonExpired], refresh now;
//   - unused for UnusedAfter: [ReasonUnused], nothing planned;
//   - Now at or after the window's end: [ReasonWindowEnd], refresh now;
//   - Now before the window's start: [ReasonWindowOpens], decide again then;
//   - the quiet slot's moment reached: [ReasonQuietSlot], refresh now;
//   - idle for IdleGap: [ReasonIdle], refresh now;
//   - otherwise [ReasonWaitIdle]: decide again at the first of the moment the
//     application can have become idle, the quiet slot, and the window's end.
//
// The window depends on the token and the measurements, not on Now (as long
// as Issued is given), and neither does the quiet slot; so a caller that
// decides again at each At reaches a refresh no later than the window's end.
//
// The quiet slot is chosen among the 5-minute slots, aligned to Unix time,
// that overlap the window (at most a week of them, from the window's start):
// each is predicted at its first moment inside the window, and the one with
// the lowest prediction (the earliest on a tie) is the quiet slot when that
// prediction is at most QuietRatio times the slots' mean and the mean is
// positive. Without a Predictor, or when any of these slots has no
// prediction, there is no quiet slot.
package plan

import "time"

// Predictor predicts activity (see usage.Model.Predict).
type Predictor interface {
	Predict(t time.Time) (activity float64, ok bool)
}

// Input is everything the planner looks at. Next accepts any value of any
// field; the comments say how out-of-range values are treated.
type Input struct {
	Now    time.Time
	Issued time.Time // when the token was obtained; if zero or not before Expiry, Now is used
	Expiry time.Time // zero: the token does not expire

	// RefreshAt is the server's hint (issue time + refresh_in); zero if none.
	// It is ignored unless Issued < RefreshAt < Expiry.
	RefreshAt time.Time

	// StartLead and EndLead place the window before Expiry. Zero means L/3
	// and L/4. They are clamped to [0, L] (so a negative lead counts as 0,
	// not as the default) and StartLead to at least EndLead.
	StartLead, EndLead time.Duration
	// IdleGap is how long without activity counts as idle; zero (or
	// negative) means 30 s.
	IdleGap time.Duration

	// LatencyP99 and FailureRate (0..1) are measured on past refreshes;
	// RetryBase and RetryMax are the retry backoff's bounds. They feed Room,
	// which documents their defaults and clamping.
	LatencyP99  time.Duration
	FailureRate float64
	RetryBase   time.Duration
	RetryMax    time.Duration

	// LastActivity is the last moment the application was active (zero: never).
	LastActivity time.Time
	// Usage predicts activity per slot; nil means no prediction.
	Usage Predictor
	// QuietRatio: a slot counts as clearly quieter when its prediction is at most
	// QuietRatio times the window's mean prediction. Zero (or negative, or
	// NaN) means 0.5.
	QuietRatio float64

	// LastUsed is the last time the token was handed out (zero: never; then
	// Issued is used). UnusedAfter zero (or negative) means tokens never go
	// dormant.
	LastUsed    time.Time
	UnusedAfter time.Duration

	// Jitter in [0,1) spreads window openings; pass a random number per token.
	// Values outside are clamped into [0,1); NaN counts as 0.
	Jitter float64
}

// Window is the refresh window after widening, hint and jitter.
type Window struct {
	Start, End time.Time
}

// Decision is the planner's answer.
type Decision struct {
	// At is when to act: refresh at At if Reason.Refresh(), else decide again
	// at At. Zero when nothing is planned (ReasonNoExpiry, ReasonUnused).
	At     time.Time
	Reason Reason
	// Window is the window the decision was made in (zero for ReasonNoExpiry).
	Window Window
}

// defaultIdleGap is Input.IdleGap when it is not positive.
const defaultIdleGap = 30 * time.Second

// Next returns the decision for in. For any input with an expiry, a decision
// whose reason is not ReasonUnused has At no later than max(Now, Window.End),
// and At is never before Now; when the reason is a refresh reason, At is Now.
// The window always satisfies Window.Start <= Window.End <= Expiry.
func Next(in Input) Decision {
	if in.Expiry.IsZero() {
		return Decision{Reason: ReasonNoExpiry}
	}
	now := in.Now
	issued := in.Issued
	if issued.IsZero() || !issued.Before(in.Expiry) {
		issued = now
	}
	w := window(in, issued)

	if !now.Before(in.Expiry) {
		return Decision{At: now, Reason: ReasonExpired, Window: w}
	}
	if in.UnusedAfter > 0 && now.Sub(maxTime(in.LastUsed, issued)) >= in.UnusedAfter {
		return Decision{Reason: ReasonUnused, Window: w}
	}
	if !now.Before(w.End) {
		return Decision{At: now, Reason: ReasonWindowEnd, Window: w}
	}
	if now.Before(w.Start) {
		return Decision{At: w.Start, Reason: ReasonWindowOpens, Window: w}
	}

	quiet, hasQuiet := quietMoment(in.Usage, w, in.QuietRatio)
	if hasQuiet && !now.Before(quiet) {
		return Decision{At: now, Reason: ReasonQuietSlot, Window: w}
	}
	gap := in.IdleGap
	if gap <= 0 {
		gap = defaultIdleGap
	}
	if in.LastActivity.IsZero() || now.Sub(in.LastActivity) >= gap {
		return Decision{At: now, Reason: ReasonIdle, Window: w}
	}
	at := minTime(in.LastActivity.Add(gap), w.End)
	if hasQuiet {
		at = minTime(at, quiet) // quiet is after now: checked above
	}
	return Decision{At: at, Reason: ReasonWaitIdle, Window: w}
}

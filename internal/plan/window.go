package plan

import (
	"math"
	"time"
)

const (
	slotWidth         = 5 * time.Minute // width of a usage slot, aligned to Unix time
	maxSlots          = 2016            // slots examined per window: one week
	defaultQuietRatio = 0.5             // Input.QuietRatio when it is zero
)

// window computes the refresh window of a token issued at issued (already
// defaulted) that expires at in.Expiry: rules 1 to 4 of the package doc.
// It does not depend on in.Now.
func window(in Input, issued time.Time) Window {
	life := max(in.Expiry.Sub(issued), 0)

	// Rule 1: base leads.
	startLead, endLead := in.StartLead, in.EndLead
	if startLead == 0 {
		startLead = life / 3
	}
	if endLead == 0 {
		endLead = life / 4
	}
	startLead = min(max(startLead, 0), life)
	endLead = min(max(endLead, 0), life)
	startLead = max(startLead, endLead)

	// Rule 2: widening. The 90% cap limits widening only; it never moves a
	// lead the caller asked for closer to expiry.
	if need := Room(in.LatencyP99, in.FailureRate, in.RetryBase, in.RetryMax); need > endLead {
		limit := life - life/10
		delta := need - endLead
		endLead = min(need, max(limit, endLead))
		startLead = min(addSat(startLead, delta), max(limit, startLead))
	}

	w := Window{Start: in.Expiry.Add(-startLead), End: in.Expiry.Add(-endLead)}

	// Rule 3: the server's hint, when it falls inside the lifetime.
	if h := in.RefreshAt; !h.IsZero() && h.After(issued) && h.Before(in.Expiry) {
		w.Start = minTime(h, w.End)
	}

	// Rule 4: jitter.
	if j := clampJitter(in.Jitter); j > 0 {
		span := w.End.Sub(w.Start)
		off := time.Duration(j * float64(span) / 2)
		w.Start = minTime(w.Start.Add(off), w.End)
	}
	return w
}

// clampJitter maps j into [0, 1); NaN counts as 0.
func clampJitter(j float64) float64 {
	switch {
	case math.IsNaN(j) || j <= 0:
		return 0
	case j >= 1:
		return math.Nextafter(1, 0)
	}
	return j
}

// quietMoment returns the moment of the quiet slot of w, if there is one.
//
// The candidates are the slotWidth slots, aligned to Unix time, that overlap
// [w.Start, w.End), at most maxSlots of them from the window's start. Each is
// represented by its first moment inside the window, max(slot start,
// w.Start), which is also where it is predicted. The quietest candidate
// (earliest on a tie) is the quiet slot when its prediction is at most ratio
// times the candidates' mean and that mean is positive. There is none when p
// is nil, the window is empty, or a candidate has no prediction (ok false, or
// a NaN or infinite value); negative predictions count as 0.
//
// The result depends only on w, p and ratio, never on the current time, so
// it stays put as time passes.
func quietMoment(p Predictor, w Window, ratio float64) (time.Time, bool) {
	if p == nil || !w.Start.Before(w.End) {
		return time.Time{}, false
	}
	if math.IsNaN(ratio) || ratio <= 0 {
		ratio = defaultQuietRatio
	}
	var (
		sum    float64
		n      int
		best   = math.Inf(1)
		bestAt time.Time
	)
	for s := w.Start.Truncate(slotWidth); s.Before(w.End) && n < maxSlots; s = s.Add(slotWidth) {
		at := maxTime(s, w.Start)
		a, ok := p.Predict(at)
		if !ok || math.IsNaN(a) || math.IsInf(a, 0) {
			return time.Time{}, false
		}
		a = max(a, 0)
		sum += a
		n++
		if a < best {
			best, bestAt = a, at
		}
	}
	mean := sum / float64(n) // NaN if no slot was examined: none then
	if !(mean > 0) || best > ratio*mean {
		return time.Time{}, false
	}
	return bestAt, true
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

package plan

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// checkDecision returns a description of every guarantee of Next that d
// breaks for in, or "" when it keeps them all.
func checkDecision(in Input, d Decision) string {
	var errs []string
	fail := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	if in.Expiry.IsZero() {
		if d != (Decision{Reason: ReasonNoExpiry}) {
			fail("no expiry: got %+v, want only reason %v", d, ReasonNoExpiry)
		}
		return strings.Join(errs, "; ")
	}
	switch d.Reason {
	case ReasonUnused, ReasonWindowOpens, ReasonWaitIdle, ReasonIdle, ReasonQuietSlot, ReasonWindowEnd, ReasonExpired:
	default:
		fail("reason %v for a token with an expiry", d.Reason)
	}
	if d.Window.Start.After(d.Window.End) {
		fail("window starts at %v, after its end %v", d.Window.Start, d.Window.End)
	}
	if d.Window.End.After(in.Expiry) {
		fail("window ends at %v, after expiry %v", d.Window.End, in.Expiry)
	}
	if d.Reason == ReasonUnused {
		if !d.At.IsZero() {
			fail("unused with At %v, want zero", d.At)
		}
		return strings.Join(errs, "; ")
	}
	if d.At.Before(in.Now) {
		fail("%v at %v, before Now %v", d.Reason, d.At, in.Now)
	}
	if limit := maxTime(in.Now, d.Window.End); d.At.After(limit) {
		fail("%v at %v, after max(Now, Window.End) = %v", d.Reason, d.At, limit)
	}
	if d.Reason.Refresh() && !d.At.Equal(in.Now) {
		fail("%v at %v, want Now %v", d.Reason, d.At, in.Now)
	}
	if !d.Reason.Refresh() && !d.At.After(in.Now) {
		fail("%v at %v, no later than Now %v: no progress", d.Reason, d.At, in.Now)
	}
	if d.Reason == ReasonExpired && in.Now.Before(in.Expiry) {
		fail("expired at %v, before expiry %v", in.Now, in.Expiry)
	}
	return strings.Join(errs, "; ")
}

// hashUsage is a deterministic pseudo-random Predictor. When holes is not
// zero, about one moment in holes has no history.
type hashUsage struct {
	seed  uint64
	holes uint64
}

func (h hashUsage) Predict(t time.Time) (float64, bool) {
	x := mix(h.seed ^ uint64(t.Unix()) ^ uint64(t.Nanosecond())<<32)
	if h.holes != 0 && x%h.holes == 0 {
		return 0, false
	}
	a := float64(x>>11) / (1 << 53)
	return a * a, true
}

// mix is SplitMix64's finaliser.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

func randomDuration(r *rand.Rand) time.Duration {
	switch r.IntN(10) {
	case 0:
		return 0
	case 1:
		return -time.Duration(r.Int64N(int64(24 * time.Hour)))
	case 2:
		return time.Duration(r.Int64N(int64(time.Minute)))
	case 3:
		return time.Duration(r.Int64N(int64(10 * 365 * 24 * time.Hour)))
	case 4:
		return [...]time.Duration{math.MaxInt64, math.MinInt64, 1, -1}[r.IntN(4)]
	default:
		return time.Duration(r.Int64N(int64(48 * time.Hour)))
	}
}

func randomFloat(r *rand.Rand) float64 {
	switch r.IntN(8) {
	case 0:
		return 0
	case 1:
		return [...]float64{math.NaN(), math.Inf(1), math.Inf(-1), -0.5, 1, 2, math.Nextafter(1, 0), 0.95}[r.IntN(8)]
	default:
		return r.Float64()
	}
}

// randomTime returns the zero time now and then, else a time around base.
func randomTime(r *rand.Rand, base time.Time) time.Time {
	if r.IntN(8) == 0 {
		return time.Time{}
	}
	d := randomDuration(r)
	if r.IntN(2) == 0 {
		d = -d
	}
	return base.Add(d)
}

// randomInput returns any input, realistic or absurd.
func randomInput(r *rand.Rand) Input {
	in := Input{
		Issued:      randomTime(r, t0),
		StartLead:   randomDuration(r) * time.Duration(r.IntN(2)),
		EndLead:     randomDuration(r) * time.Duration(r.IntN(2)),
		IdleGap:     randomDuration(r),
		LatencyP99:  randomDuration(r) * time.Duration(r.IntN(2)),
		FailureRate: randomFloat(r),
		RetryBase:   randomDuration(r),
		RetryMax:    randomDuration(r),
		QuietRatio:  randomFloat(r),
		UnusedAfter: randomDuration(r) * time.Duration(r.IntN(2)),
		Jitter:      randomFloat(r),
	}
	base := in.Issued
	if base.IsZero() {
		base = t0
	}
	switch r.IntN(10) {
	case 0:
		in.Expiry = time.Time{}
	case 1:
		in.Expiry = randomTime(r, base)
	default:
		in.Expiry = base.Add(time.Duration(r.Int64N(int64(72*time.Hour))) + 1)
	}
	life := min(max(in.Expiry.Sub(base), time.Hour), 10*365*24*time.Hour)
	switch r.IntN(10) {
	case 0:
		in.Now = randomTime(r, base)
	case 1, 2, 3, 4:
		// Near the default window, [E - L/3, E - L/4].
		in.Now = base.Add(life - life/3 + time.Duration(r.Int64N(int64(life/12)+1)))
	default:
		in.Now = base.Add(time.Duration(r.Int64N(int64(life)/2*3)) - life/4)
	}
	if r.IntN(3) == 0 {
		in.RefreshAt = base.Add(time.Duration(r.Int64N(int64(life)/2*3)) - life/4)
	}
	if r.IntN(4) != 0 {
		in.LastActivity = in.Now.Add(-time.Duration(r.Int64N(int64(10 * time.Minute))))
	}
	if r.IntN(2) == 0 {
		in.LastUsed = randomTime(r, in.Now)
	}
	if r.IntN(2) == 0 {
		in.Usage = hashUsage{seed: r.Uint64(), holes: uint64(r.IntN(3)) * 50}
	}
	return in
}

// effectiveIssued is the issue time Next uses.
func effectiveIssued(in Input) time.Time {
	if in.Issued.IsZero() || !in.Issued.Before(in.Expiry) {
		return in.Now
	}
	return in.Issued
}

func TestNextProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const n = 20000
	seen := map[Reason]int{}
	for i := range n {
		in := randomInput(r)
		d := Next(in)
		seen[d.Reason]++
		if err := checkDecision(in, d); err != "" {
			t.Fatalf("case %d: %s\ninput: %+v\ndecision: %+v", i, err, in, d)
		}
		if again := Next(in); !cmp.Equal(d, again) {
			t.Fatalf("case %d: Next is not deterministic: %+v, then %+v", i, d, again)
		}
		if in.Expiry.IsZero() {
			continue
		}
		issued := effectiveIssued(in)
		if life := in.Expiry.Sub(issued); life > 0 && life < math.MaxInt64 && d.Window.Start.Before(issued) {
			t.Fatalf("case %d: window opens at %v, before issue %v\ninput: %+v", i, d.Window.Start, issued, in)
		}
		if !in.Issued.IsZero() && in.Issued.Before(in.Expiry) {
			// The window does not depend on Now.
			other := in
			other.Now = randomTime(r, in.Now)
			if w := Next(other).Window; !cmp.Equal(d.Window, w) {
				t.Fatalf("case %d: window %+v at Now=%v, %+v at Now=%v\ninput: %+v", i, d.Window, in.Now, w, other.Now, in)
			}
		}
	}
	t.Logf("reasons: %v", seen)
	// The generator must reach every reason, or the test proves little.
	for reason := ReasonNoExpiry; reason <= ReasonExpired; reason++ {
		if seen[reason] < n/100 {
			t.Errorf("only %d of %d cases decided %v", seen[reason], n, reason)
		}
	}
}

// randomTraceInput returns a realistic token at the start of its life, with
// Issued given (as a keeper does).
func randomTraceInput(r *rand.Rand) Input {
	life := time.Duration(math.Exp(r.Float64()*math.Log(float64(30*24*time.Hour/time.Second)))) * time.Second
	issued := t0.Add(time.Duration(r.Int64N(int64(7 * 24 * time.Hour))))
	in := Input{
		Issued: issued,
		Expiry: issued.Add(life),
		Now:    issued.Add(time.Duration(r.Int64N(int64(life)/2*3)) - life/4),
		Jitter: r.Float64(),
	}
	if r.IntN(2) == 0 {
		in.LatencyP99 = time.Duration(r.Int64N(int64(life / 2)))
		in.FailureRate = r.Float64()
	}
	if r.IntN(3) == 0 {
		in.StartLead = time.Duration(r.Int64N(int64(life)))
		in.EndLead = time.Duration(r.Int64N(int64(life)))
	}
	if r.IntN(3) == 0 {
		in.RefreshAt = issued.Add(time.Duration(r.Int64N(int64(life))))
	}
	if r.IntN(2) == 0 {
		in.IdleGap = time.Duration(r.Int64N(int64(10*time.Minute))) + time.Second
	}
	if r.IntN(3) != 0 {
		in.Usage = hashUsage{seed: r.Uint64(), holes: uint64(r.IntN(2)) * 200}
		in.QuietRatio = r.Float64()
	}
	if r.IntN(3) == 0 {
		in.UnusedAfter = time.Duration(r.Int64N(int64(life))) + 1
	}
	if r.IntN(4) != 0 {
		in.LastActivity = in.Now.Add(-time.Duration(r.Int64N(int64(time.Minute))))
		in.LastUsed = in.LastActivity
	}
	return in
}

// TestNextTrace lives tokens' lives: it decides again at each At that is not
// a refresh, with the application active at random moments in between, and
// checks that a refresh comes no later than the window's end (or the first
// decision, if that was already later) and never after expiry.
func TestNextTrace(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const maxActivity = 50
	seen := map[Reason]int{}
	for i := range 3000 {
		in := randomTraceInput(r)
		start := in.Now
		w := Next(in).Window
		var trace []string
		activity := 0
		for step := 0; ; step++ {
			if step > 4*maxActivity+10 {
				t.Fatalf("trace %d: no refresh after %d steps:\n%s", i, step, strings.Join(trace, "\n"))
			}
			d := Next(in)
			trace = append(trace, fmt.Sprintf("Now %v LastActivity %v: %v at %v", in.Now, in.LastActivity, d.Reason, d.At))
			if err := checkDecision(in, d); err != "" {
				t.Fatalf("trace %d: %s:\n%s", i, err, strings.Join(trace, "\n"))
			}
			if !cmp.Equal(w, d.Window) {
				t.Fatalf("trace %d: window moved from %+v to %+v:\n%s", i, w, d.Window, strings.Join(trace, "\n"))
			}
			seen[d.Reason]++
			if d.Reason.Refresh() {
				if limit := maxTime(start, w.End); d.At.After(limit) {
					t.Fatalf("trace %d: refresh at %v, after %v:\n%s", i, d.At, limit, strings.Join(trace, "\n"))
				}
				if d.At.After(in.Expiry) && !start.After(in.Expiry) {
					t.Fatalf("trace %d: refresh at %v, after expiry %v:\n%s", i, d.At, in.Expiry, strings.Join(trace, "\n"))
				}
				break
			}
			switch d.Reason {
			case ReasonUnused:
				// The token is used now; decide again.
				in.LastUsed, in.LastActivity = in.Now, in.Now
				activity++
				continue
			case ReasonWindowOpens, ReasonWaitIdle:
			default:
				t.Fatalf("trace %d: unexpected reason %v:\n%s", i, d.Reason, strings.Join(trace, "\n"))
			}
			if activity < maxActivity && r.IntN(2) == 0 {
				a := in.Now.Add(time.Duration(r.Int64N(int64(d.At.Sub(in.Now)))))
				in.LastActivity = a
				if r.IntN(2) == 0 {
					in.LastUsed = a
				}
				activity++
			}
			in.Now = d.At
		}
	}
	t.Logf("reasons: %v", seen)
	for reason := ReasonUnused; reason <= ReasonExpired; reason++ {
		if seen[reason] < 10 {
			t.Errorf("no trace decided %v", reason)
		}
	}
}

// fuzzTime maps a fuzzed integer to a time: 0 is the zero time; otherwise
// far says whether x is seconds since the Unix epoch (any year at all) or
// nanoseconds around t0. sane reports whether time.Time arithmetic with any
// Duration stays exact around the result.
func fuzzTime(x int64, far bool) (t time.Time, sane bool) {
	switch {
	case x == 0:
		return time.Time{}, true
	case far:
		return time.Unix(x, 0), x > -(1<<62) && x < 1<<62
	}
	return t0.Add(time.Duration(x)), true
}

func FuzzNext(f *testing.F) {
	h := int64(time.Hour)
	m := int64(time.Minute)
	f.Add(int64(0), int64(1), h, int64(0), int64(0), int64(0), uint8(0), int64(0), int64(0), int64(0), int64(0), 0.0, int64(0), int64(0), 0.0, 0.0, int64(0), uint64(0))
	f.Add(41*m, int64(1), h, int64(0), 41*m-1, int64(0), uint8(0), int64(0), int64(0), int64(0), int64(0), 0.0, int64(0), int64(0), 0.0, 0.5, int64(0), uint64(7))
	f.Add(82*m, int64(1), 2*h, 30*m, 82*m, 80*m, uint8(0), 60*m, 10*m, m, int64(time.Second), 0.5, int64(0), int64(0), 0.9, 0.3, 20*m, uint64(42))
	f.Add(int64(math.MaxInt64), int64(math.MinInt64), int64(math.MaxInt64), int64(-1), int64(1), int64(2), uint8(0xff), int64(math.MaxInt64), int64(math.MinInt64), int64(-1), int64(math.MaxInt64), math.NaN(), int64(math.MaxInt64), int64(-1), math.Inf(1), math.NaN(), int64(math.MaxInt64), uint64(1))
	f.Add(int64(1)<<62-1, -(int64(1)<<62)+1, int64(1)<<62-1, int64(0), int64(0), int64(0), uint8(0x07), int64(0), int64(0), int64(0), int64(0), math.Inf(-1), int64(0), int64(0), -1.0, 2.0, int64(1), uint64(3))
	f.Fuzz(func(t *testing.T, now, issued, expiry, refreshAt, lastActivity, lastUsed int64, far uint8,
		startLead, endLead, idleGap, p99 int64, rate float64, retryBase, retryMax int64,
		quietRatio, jitter float64, unusedAfter int64, usageSeed uint64) {
		sane := true
		tm := func(i uint, x int64) time.Time {
			t, ok := fuzzTime(x, far&(1<<i) != 0)
			sane = sane && ok
			return t
		}
		in := Input{
			Now:          tm(0, now),
			Issued:       tm(1, issued),
			Expiry:       tm(2, expiry),
			RefreshAt:    tm(3, refreshAt),
			LastActivity: tm(4, lastActivity),
			LastUsed:     tm(5, lastUsed),
			StartLead:    time.Duration(startLead),
			EndLead:      time.Duration(endLead),
			IdleGap:      time.Duration(idleGap),
			LatencyP99:   time.Duration(p99),
			FailureRate:  rate,
			RetryBase:    time.Duration(retryBase),
			RetryMax:     time.Duration(retryMax),
			QuietRatio:   quietRatio,
			UnusedAfter:  time.Duration(unusedAfter),
			Jitter:       jitter,
		}
		if usageSeed != 0 {
			in.Usage = hashUsage{seed: usageSeed, holes: usageSeed % 5 * 20}
		}
		d := Next(in)
		if d.Reason == ReasonNone || d.Reason > ReasonExpired {
			t.Fatalf("reason %v", d.Reason)
		}
		if !sane {
			return // beyond time.Time's exact arithmetic: only "no panic"
		}
		if err := checkDecision(in, d); err != "" {
			t.Fatalf("%s\ninput: %+v\ndecision: %+v", err, in, d)
		}
		if room := Room(in.LatencyP99, rate, in.RetryBase, in.RetryMax); room < 0 {
			t.Fatalf("Room = %v < 0", room)
		}
	})
}

var sink Decision

func BenchmarkNext(b *testing.B) {
	busy := func(in Input, now time.Duration) Input {
		in.Now, in.LastActivity = at(now), at(now-time.Second)
		return in
	}
	withUsage := func(in Input) Input {
		in.Usage = hashUsage{seed: 1}
		return in
	}
	day := token(24 * time.Hour)
	cases := []struct {
		name string
		in   Input
	}{
		{"before-window", token(time.Hour)},
		{"busy", busy(token(time.Hour), 41*time.Minute)},
		{"busy-with-usage", withUsage(busy(token(time.Hour), 41*time.Minute))},
		{"day-token-with-usage", withUsage(busy(day, 17*time.Hour))},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sink = Next(c.in)
			}
		})
	}
}

package plan

import (
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// t0 is the issue time of the tokens in the tables; it sits on a 5-minute
// boundary so that usage slots start at t0 + k*5m.
var t0 = time.Date(2025, 3, 10, 9, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func win(start, end time.Duration) Window { return Window{Start: at(start), End: at(end)} }

// token returns the input for a token issued at t0 with the given lifetime,
// looked at when it is issued.
func token(life time.Duration) Input {
	return Input{Now: t0, Issued: t0, Expiry: at(life)}
}

// usage is a fake Predictor: the prediction at t0+d is usage[d]; a moment
// missing from the map has no history. Keying by the exact moment checks
// that the planner asks at max(slot start, window start).
type usage map[time.Duration]float64

func (u usage) Predict(t time.Time) (float64, bool) {
	a, ok := u[t.Sub(t0)]
	return a, ok
}

// countingUsage predicts a constant and counts the calls.
type countingUsage struct {
	activity float64
	calls    int
}

func (c *countingUsage) Predict(time.Time) (float64, bool) {
	c.calls++
	return c.activity, true
}

func TestReason(t *testing.T) {
	tests := []struct {
		r       Reason
		name    string
		refresh bool
	}{
		{ReasonNone, "none", false},
		{ReasonNoExpiry, "no-expiry", false},
		{ReasonUnused, "unused", false},
		{ReasonWindowOpens, "window-opens", false},
		{ReasonWaitIdle, "wait-idle", false},
		{ReasonIdle, "idle", true},
		{ReasonQuietSlot, "quiet-slot", true},
		{ReasonWindowEnd, "window-end", true},
		{ReasonExpired, "expired", true},
		{Reason(42), "Reason(42)", false},
	}
	for _, tt := range tests {
		if got := tt.r.String(); got != tt.name {
			t.Errorf("Reason(%d).String() = %q, want %q", uint8(tt.r), got, tt.name)
		}
		if got := tt.r.Refresh(); got != tt.refresh {
			t.Errorf("%v.Refresh() = %v, want %v", tt.r, got, tt.refresh)
		}
	}
}

func TestRoom(t *testing.T) {
	const maxDur = time.Duration(math.MaxInt64)
	tests := []struct {
		name      string
		p99       time.Duration
		rate      float64
		base, max time.Duration
		want      time.Duration
	}{
		{"all zero", 0, 0, 0, 0, 0},
		{"no failures: one attempt", 2 * time.Second, 0, 0, 0, 2 * time.Second},
		{"doc example: 0.1 needs 3 attempts", 2 * time.Second, 0.1, time.Second, time.Minute, 7500 * time.Millisecond},
		{"0.01 needs 2 attempts", time.Second, 0.01, 0, 0, 2*time.Second + 500*time.Millisecond},
		{"0.001 needs 1 attempt", time.Second, 0.001, 0, 0, time.Second},
		{"tiny rate needs 1 attempt", time.Second, 1e-300, 0, 0, time.Second},
		{"0.2 needs 5 attempts", time.Second, 0.2, time.Second, 0, 5*time.Second + (1+2+4+8)*time.Second/2},
		// 0.5^10 < 0.001: 10 attempts, backoffs 1,2,...,256 s, halved.
		{"0.5 needs 10 attempts", time.Second, 0.5, 0, 0, 10*time.Second + 511*time.Second/2},
		{"backoff capped by max", 0, 0.5, time.Second, 10 * time.Second, (1 + 2 + 4 + 8 + 5*10) * time.Second / 2},
		{"base above max", 0, 0.5, time.Minute, 10 * time.Second, 9 * 5 * time.Second},
		{"0.95 capped at 10 attempts", time.Second, 0.95, time.Second, time.Second, 10*time.Second + 9*time.Second/2},
		{"rate above 0.95 clamped", time.Second, 1, time.Second, time.Second, 10*time.Second + 9*time.Second/2},
		{"rate +Inf clamped", time.Second, math.Inf(1), time.Second, time.Second, 10*time.Second + 9*time.Second/2},
		{"NaN rate counts as 0", time.Second, math.NaN(), 0, 0, time.Second},
		{"negative rate counts as 0", time.Second, -0.5, 0, 0, time.Second},
		{"-Inf rate counts as 0", time.Second, math.Inf(-1), 0, 0, time.Second},
		{"negative p99 counts as 0", -time.Hour, 0.01, 0, 0, 500 * time.Millisecond},
		{"negative base and max mean defaults", 0, 0.5, -1, -1, 511 * time.Second / 2},
		{"huge p99 saturates", maxDur, 0.5, 0, 0, maxDur},
		{"huge backoffs saturate", 0, 0.5, maxDur, maxDur, maxDur},
		{"huge max, doubling without overflow", 0, 0.5, time.Hour, maxDur, 511 * time.Hour / 2},
		{"huge p99 and backoff saturate", maxDur / 3, 0.5, maxDur, maxDur, maxDur},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Room(tt.p99, tt.rate, tt.base, tt.max); got != tt.want {
				t.Errorf("Room(%v, %v, %v, %v) = %v, want %v", tt.p99, tt.rate, tt.base, tt.max, got, tt.want)
			}
		})
	}
}

func TestRoomMonotone(t *testing.T) {
	prev := Room(time.Second, 0, 0, 0)
	for rate := 0.0; rate <= 1; rate += 0.001 {
		got := Room(time.Second, rate, 0, 0)
		if got < prev {
			t.Fatalf("Room at rate %v = %v, less than %v at a lower rate", rate, got, prev)
		}
		prev = got
	}
}

func TestWindow(t *testing.T) {
	tests := []struct {
		name string
		in   func(in *Input)
		want Window
	}{
		{"one-hour token: 20 to 15 minutes before expiry", func(in *Input) {}, win(40*time.Minute, 45*time.Minute)},
		{"ten-minute token: 3m20s to 2m30s before expiry", func(in *Input) { in.Expiry = at(10 * time.Minute) },
			win(10*time.Minute-200*time.Second, 10*time.Minute-150*time.Second)},
		{"zero Issued means Now", func(in *Input) { in.Issued = time.Time{} }, win(40*time.Minute, 45*time.Minute)},
		{"Issued after Expiry means Now", func(in *Input) { in.Issued = at(2 * time.Hour) }, win(40*time.Minute, 45*time.Minute)},
		{"Issued equal to Expiry means Now", func(in *Input) { in.Issued = at(time.Hour) }, win(40*time.Minute, 45*time.Minute)},
		{"Issued zero, Now later: lifetime from Now", func(in *Input) { in.Issued, in.Now = time.Time{}, at(30*time.Minute) },
			win(50*time.Minute, 60*time.Minute-450*time.Second)},
		{"Issued before Now is kept", func(in *Input) { in.Now = at(42 * time.Minute) }, win(40*time.Minute, 45*time.Minute)},
		{"custom leads", func(in *Input) { in.StartLead, in.EndLead = 30*time.Minute, 10*time.Minute },
			win(30*time.Minute, 50*time.Minute)},
		{"custom StartLead below default EndLead is raised", func(in *Input) { in.StartLead = 10 * time.Minute },
			win(45*time.Minute, 45*time.Minute)},
		{"custom EndLead above default StartLead raises it", func(in *Input) { in.EndLead = 30 * time.Minute },
			win(30*time.Minute, 30*time.Minute)},
		{"leads above the lifetime are clamped", func(in *Input) { in.StartLead, in.EndLead = 5*time.Hour, 3*time.Hour },
			win(0, 0)},
		{"huge leads are clamped", func(in *Input) { in.StartLead, in.EndLead = math.MaxInt64, math.MaxInt64 },
			win(0, 0)},
		{"negative leads count as 0", func(in *Input) { in.StartLead, in.EndLead = -time.Minute, -time.Hour },
			win(time.Hour, time.Hour)},
		{"negative EndLead only", func(in *Input) { in.EndLead = -time.Minute }, win(40*time.Minute, time.Hour)},
		{"room below EndLead: no widening", func(in *Input) { in.LatencyP99 = 15 * time.Minute },
			win(40*time.Minute, 45*time.Minute)},
		{"high p99 widens the window", func(in *Input) { in.LatencyP99 = 20 * time.Minute },
			win(35*time.Minute, 40*time.Minute)},
		// Room(2m, 0.5) = 10*2m + 255.5s = 24m15.5s: EndLead grows by 9m15.5s.
		{"high failure rate widens the window", func(in *Input) { in.LatencyP99, in.FailureRate = 2*time.Minute, 0.5 },
			win(40*time.Minute-555500*time.Millisecond, 45*time.Minute-555500*time.Millisecond)},
		{"widening capped at 90% of the lifetime", func(in *Input) { in.LatencyP99 = time.Hour },
			win(6*time.Minute, 6*time.Minute)},
		{"StartLead widened up to the cap only", func(in *Input) { in.LatencyP99 = 50 * time.Minute },
			win(6*time.Minute, 10*time.Minute)},
		{"widening never shrinks a long StartLead", func(in *Input) { in.StartLead, in.LatencyP99 = time.Hour, time.Hour },
			win(0, 6*time.Minute)},
		{"widening never shrinks a long EndLead", func(in *Input) { in.EndLead, in.LatencyP99 = 58*time.Minute, time.Hour },
			win(2*time.Minute, 2*time.Minute)},
		{"negative EndLead widened by p99", func(in *Input) { in.EndLead, in.LatencyP99 = -1, time.Minute },
			win(39*time.Minute, 59*time.Minute)},
		{"hint earlier than the window opens it early", func(in *Input) { in.RefreshAt = at(30 * time.Minute) },
			win(30*time.Minute, 45*time.Minute)},
		{"hint inside the window opens it late", func(in *Input) { in.RefreshAt = at(42 * time.Minute) },
			win(42*time.Minute, 45*time.Minute)},
		{"hint after the window: never later than its end", func(in *Input) { in.RefreshAt = at(50 * time.Minute) },
			win(45*time.Minute, 45*time.Minute)},
		{"hint before issue ignored", func(in *Input) { in.RefreshAt = at(-time.Minute) },
			win(40*time.Minute, 45*time.Minute)},
		{"hint at issue ignored", func(in *Input) { in.RefreshAt = t0 }, win(40*time.Minute, 45*time.Minute)},
		{"hint at expiry ignored", func(in *Input) { in.RefreshAt = at(time.Hour) }, win(40*time.Minute, 45*time.Minute)},
		{"hint after expiry ignored", func(in *Input) { in.RefreshAt = at(2 * time.Hour) }, win(40*time.Minute, 45*time.Minute)},
		{"hint compared with Now when Issued is zero", func(in *Input) {
			in.Issued, in.Now, in.RefreshAt = time.Time{}, at(10*time.Minute), at(5*time.Minute)
		}, win(time.Hour-50*time.Minute/3, time.Hour-50*time.Minute/4)},
		{"jitter delays the opening by Jitter*length/2", func(in *Input) { in.Jitter = 0.5 },
			win(41*time.Minute+15*time.Second, 45*time.Minute)},
		{"jitter after the hint", func(in *Input) { in.RefreshAt, in.Jitter = at(30*time.Minute), 0.5 },
			win(33*time.Minute+45*time.Second, 45*time.Minute)},
		{"negative jitter counts as 0", func(in *Input) { in.Jitter = -0.5 }, win(40*time.Minute, 45*time.Minute)},
		{"NaN jitter counts as 0", func(in *Input) { in.Jitter = math.NaN() }, win(40*time.Minute, 45*time.Minute)},
		{"jitter on an empty window", func(in *Input) { in.LatencyP99, in.Jitter = time.Hour, 0.9 },
			win(6*time.Minute, 6*time.Minute)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := token(time.Hour)
			tt.in(&in)
			got := Next(in)
			if diff := cmp.Diff(tt.want, got.Window); diff != "" {
				t.Errorf("window mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestJitterBounds(t *testing.T) {
	base := Next(token(time.Hour)).Window
	half := base.End.Sub(base.Start) / 2
	prev := base.Start
	for _, j := range []float64{0, 1e-12, 0.1, 0.25, 0.5, 0.75, 0.9, 0.999999, math.Nextafter(1, 0), 1, 2, math.Inf(1)} {
		in := token(time.Hour)
		in.Jitter = j
		w := Next(in).Window
		if !w.End.Equal(base.End) {
			t.Errorf("jitter %v moved the window's end to %v", j, w.End)
		}
		if w.Start.Before(prev) || w.Start.After(base.Start.Add(half)) {
			t.Errorf("jitter %v: start %v, want in [%v, %v]", j, w.Start, prev, base.Start.Add(half))
		}
		prev = w.Start
	}
	if want := base.Start.Add(half - time.Millisecond); prev.Before(want) {
		t.Errorf("jitter near 1 opens the window at %v, want about %v", prev, base.Start.Add(half))
	}
}

func TestNext(t *testing.T) {
	hour := win(40*time.Minute, 45*time.Minute)
	// A two-hour token's window is [80m, 90m): two usage slots, 80m and 85m.
	twoHours := win(80*time.Minute, 90*time.Minute)
	busy := func(now time.Duration) func(in *Input) {
		return func(in *Input) { in.Now, in.LastActivity = at(now), at(now-time.Second) }
	}
	with := func(fs ...func(in *Input)) func(in *Input) {
		return func(in *Input) {
			for _, f := range fs {
				f(in)
			}
		}
	}
	quiet := usage{80 * time.Minute: 1, 85 * time.Minute: 0.2} // mean 0.6, 0.2 <= 0.3
	use := func(u Predictor) func(in *Input) { return func(in *Input) { in.Usage = u } }

	tests := []struct {
		name string
		life time.Duration
		in   func(in *Input)
		want Decision
	}{
		{"no expiry", time.Hour, func(in *Input) { in.Expiry = time.Time{} }, Decision{Reason: ReasonNoExpiry}},
		{"no expiry even when unused", time.Hour, func(in *Input) {
			in.Expiry, in.UnusedAfter, in.Now = time.Time{}, time.Minute, at(time.Hour)
		}, Decision{Reason: ReasonNoExpiry}},
		{"expired at expiry", time.Hour, func(in *Input) { in.Now = at(time.Hour) },
			Decision{At: at(time.Hour), Reason: ReasonExpired, Window: hour}},
		{"expired long ago", time.Hour, func(in *Input) { in.Now = at(48 * time.Hour) },
			Decision{At: at(48 * time.Hour), Reason: ReasonExpired, Window: hour}},
		{"expired without Issued: empty window at expiry", time.Hour, func(in *Input) {
			in.Issued, in.Now = time.Time{}, at(61*time.Minute)
		}, Decision{At: at(61 * time.Minute), Reason: ReasonExpired, Window: win(time.Hour, time.Hour)}},
		{"expired beats unused", time.Hour, func(in *Input) { in.Now, in.UnusedAfter = at(time.Hour), time.Minute },
			Decision{At: at(time.Hour), Reason: ReasonExpired, Window: hour}},
		{"before the window", time.Hour, func(in *Input) {},
			Decision{At: at(40 * time.Minute), Reason: ReasonWindowOpens, Window: hour}},
		{"before the window while busy", time.Hour, busy(39 * time.Minute),
			Decision{At: at(40 * time.Minute), Reason: ReasonWindowOpens, Window: hour}},
		{"Now before Issued", time.Hour, func(in *Input) { in.Now = at(-time.Hour) },
			Decision{At: at(40 * time.Minute), Reason: ReasonWindowOpens, Window: hour}},
		{"window opens: never active counts as idle", time.Hour, func(in *Input) { in.Now = at(40 * time.Minute) },
			Decision{At: at(40 * time.Minute), Reason: ReasonIdle, Window: hour}},
		{"idle for longer than the gap", time.Hour, func(in *Input) { in.Now, in.LastActivity = at(41*time.Minute), at(40*time.Minute) },
			Decision{At: at(41 * time.Minute), Reason: ReasonIdle, Window: hour}},
		{"idle for exactly the gap", time.Hour, func(in *Input) {
			in.Now, in.LastActivity = at(41*time.Minute), at(40*time.Minute+30*time.Second)
		}, Decision{At: at(41 * time.Minute), Reason: ReasonIdle, Window: hour}},
		{"busy: wait until idle", time.Hour, busy(41 * time.Minute),
			Decision{At: at(41*time.Minute + 29*time.Second), Reason: ReasonWaitIdle, Window: hour}},
		{"busy with a custom gap", time.Hour, with(busy(41*time.Minute), func(in *Input) { in.IdleGap = time.Minute }),
			Decision{At: at(42*time.Minute - time.Second), Reason: ReasonWaitIdle, Window: hour}},
		{"negative gap means 30 s", time.Hour, with(busy(41*time.Minute), func(in *Input) { in.IdleGap = -time.Minute }),
			Decision{At: at(41*time.Minute + 29*time.Second), Reason: ReasonWaitIdle, Window: hour}},
		{"busy: wait no longer than the window's end", time.Hour, with(busy(41*time.Minute), func(in *Input) { in.IdleGap = 10 * time.Minute }),
			Decision{At: at(45 * time.Minute), Reason: ReasonWaitIdle, Window: hour}},
		{"activity after Now", time.Hour, func(in *Input) { in.Now, in.LastActivity = at(41*time.Minute), at(42*time.Minute) },
			Decision{At: at(42*time.Minute + 30*time.Second), Reason: ReasonWaitIdle, Window: hour}},
		{"window's end while busy", time.Hour, busy(45 * time.Minute),
			Decision{At: at(45 * time.Minute), Reason: ReasonWindowEnd, Window: hour}},
		{"after the window's end", time.Hour, busy(50 * time.Minute),
			Decision{At: at(50 * time.Minute), Reason: ReasonWindowEnd, Window: hour}},
		{"hint in the past refreshes at once", time.Hour, func(in *Input) {
			in.Now, in.RefreshAt, in.LastActivity = at(35*time.Minute), at(30*time.Minute), at(20*time.Minute)
		}, Decision{At: at(35 * time.Minute), Reason: ReasonIdle, Window: win(30*time.Minute, 45*time.Minute)}},

		{"unused since issue", time.Hour, func(in *Input) { in.Now, in.UnusedAfter = at(30*time.Minute), 30*time.Minute },
			Decision{Reason: ReasonUnused, Window: hour}},
		{"unused since last use", time.Hour, func(in *Input) {
			in.Now, in.LastUsed, in.UnusedAfter = at(42*time.Minute), at(12*time.Minute), 30*time.Minute
		}, Decision{Reason: ReasonUnused, Window: hour}},
		{"unused beats the window's end", time.Hour, func(in *Input) {
			in.Now, in.LastUsed, in.UnusedAfter = at(50*time.Minute), at(30*time.Minute), 10*time.Minute
		}, Decision{Reason: ReasonUnused, Window: hour}},
		{"recently used", time.Hour, func(in *Input) {
			in.Now, in.LastUsed, in.UnusedAfter = at(42*time.Minute), at(20*time.Minute), 30*time.Minute
		}, Decision{At: at(42 * time.Minute), Reason: ReasonIdle, Window: hour}},
		{"last use before issue counts from issue", time.Hour, func(in *Input) {
			in.Now, in.LastUsed, in.UnusedAfter = at(42*time.Minute), at(-time.Hour), 50*time.Minute
		}, Decision{At: at(42 * time.Minute), Reason: ReasonIdle, Window: hour}},
		{"negative UnusedAfter: never dormant", time.Hour, func(in *Input) { in.Now, in.UnusedAfter = at(42*time.Minute), -time.Minute },
			Decision{At: at(42 * time.Minute), Reason: ReasonIdle, Window: hour}},

		{"quiet slot ahead: wait for idle first", 2 * time.Hour, with(busy(81*time.Minute), use(quiet)),
			Decision{At: at(81*time.Minute + 29*time.Second), Reason: ReasonWaitIdle, Window: twoHours}},
		{"quiet slot ahead, sooner than idle", 2 * time.Hour, with(busy(84*time.Minute+50*time.Second), use(quiet)),
			Decision{At: at(85 * time.Minute), Reason: ReasonWaitIdle, Window: twoHours}},
		{"quiet slot reached while busy", 2 * time.Hour, with(busy(85*time.Minute), use(quiet)),
			Decision{At: at(85 * time.Minute), Reason: ReasonQuietSlot, Window: twoHours}},
		{"quiet slot passed while busy", 2 * time.Hour, with(busy(88*time.Minute), use(quiet)),
			Decision{At: at(88 * time.Minute), Reason: ReasonQuietSlot, Window: twoHours}},
		{"quiet slot beats idle", 2 * time.Hour, with(func(in *Input) { in.Now = at(86 * time.Minute) }, use(quiet)),
			Decision{At: at(86 * time.Minute), Reason: ReasonQuietSlot, Window: twoHours}},
		{"idle before the quiet slot", 2 * time.Hour, with(func(in *Input) { in.Now = at(81 * time.Minute) }, use(quiet)),
			Decision{At: at(81 * time.Minute), Reason: ReasonIdle, Window: twoHours}},
		{"window's end beats the quiet slot", 2 * time.Hour, with(busy(90*time.Minute), use(quiet)),
			Decision{At: at(90 * time.Minute), Reason: ReasonWindowEnd, Window: twoHours}},
		{"quiet first slot", 2 * time.Hour, with(busy(80*time.Minute), use(usage{80 * time.Minute: 0, 85 * time.Minute: 1})),
			Decision{At: at(80 * time.Minute), Reason: ReasonQuietSlot, Window: twoHours}},
		{"quiet slot predicted at the window's start", 2 * time.Hour, with(busy(83*time.Minute), use(usage{82 * time.Minute: 0.1, 85 * time.Minute: 1}),
			func(in *Input) { in.RefreshAt = at(82 * time.Minute) }),
			Decision{At: at(83 * time.Minute), Reason: ReasonQuietSlot, Window: win(82*time.Minute, 90*time.Minute)}},
		{"not clearly quieter", 2 * time.Hour, with(busy(86*time.Minute), use(usage{80 * time.Minute: 1, 85 * time.Minute: 0.7})),
			Decision{At: at(86*time.Minute + 29*time.Second), Reason: ReasonWaitIdle, Window: twoHours}},
		{"custom QuietRatio", 2 * time.Hour, with(busy(86*time.Minute), use(usage{80 * time.Minute: 1, 85 * time.Minute: 0.7}),
			func(in *Input) { in.QuietRatio = 0.9 }),
			Decision{At: at(86 * time.Minute), Reason: ReasonQuietSlot, Window: twoHours}},
		{"NaN QuietRatio means 0.5", 2 * time.Hour, with(busy(86*time.Minute), use(usage{80 * time.Minute: 1, 85 * time.Minute: 0.7}),
			func(in *Input) { in.QuietRatio = math.NaN() }),
			Decision{At: at(86*time.Minute + 29*time.Second), Reason: ReasonWaitIdle, Window: twoHours}},
		{"no history for a slot", 2 * time.Hour, with(busy(86*time.Minute), use(usage{85 * time.Minute: 0})),
			Decision{At: at(86*time.Minute + 29*time.Second), Reason: ReasonWaitIdle, Window: twoHours}},
		{"no activity predicted anywhere", 2 * time.Hour, with(busy(86*time.Minute), use(usage{80 * time.Minute: 0, 85 * time.Minute: 0})),
			Decision{At: at(86*time.Minute + 29*time.Second), Reason: ReasonWaitIdle, Window: twoHours}},
		{"tie: the earliest slot", 2 * time.Hour, with(busy(81*time.Minute), use(usage{80 * time.Minute: 0.1, 85 * time.Minute: 0.1, 90 * time.Minute: 1}),
			func(in *Input) { in.EndLead = 25 * time.Minute }),
			Decision{At: at(81 * time.Minute), Reason: ReasonQuietSlot, Window: win(80*time.Minute, 95*time.Minute)}},
		{"quiet slot before the window is not used", 2 * time.Hour, with(busy(79*time.Minute), use(quiet)),
			Decision{At: at(80 * time.Minute), Reason: ReasonWindowOpens, Window: twoHours}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := token(tt.life)
			tt.in(&in)
			got := Next(in)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Next mismatch (-want +got):\n%s", diff)
			}
			if err := checkDecision(in, got); err != "" {
				t.Error(err)
			}
		})
	}
}

func TestQuietMoment(t *testing.T) {
	w := twoSlots()
	tests := []struct {
		name   string
		p      Predictor
		w      Window
		ratio  float64
		want   time.Time
		wantOK bool
	}{
		{"nil predictor", nil, w, 0, time.Time{}, false},
		{"empty window", usage{80 * time.Minute: 0}, win(80*time.Minute, 80*time.Minute), 0, time.Time{}, false},
		{"quiet second slot", usage{80 * time.Minute: 1, 85 * time.Minute: 0.2}, w, 0, at(85 * time.Minute), true},
		{"negative ratio means 0.5", usage{80 * time.Minute: 1, 85 * time.Minute: 0.3}, w, -1, at(85 * time.Minute), true},
		{"above the ratio", usage{80 * time.Minute: 1, 85 * time.Minute: 0.4}, w, 0, time.Time{}, false},
		{"infinite ratio: the quietest", usage{80 * time.Minute: 1, 85 * time.Minute: 0.9}, w, math.Inf(1), at(85 * time.Minute), true},
		{"negative prediction counts as 0", usage{80 * time.Minute: 1, 85 * time.Minute: -5}, w, 0, at(85 * time.Minute), true},
		{"NaN prediction: none", usage{80 * time.Minute: 1, 85 * time.Minute: math.NaN()}, w, 0, time.Time{}, false},
		{"infinite prediction: none", usage{80 * time.Minute: math.Inf(1), 85 * time.Minute: 0}, w, 0, time.Time{}, false},
		{"single slot is never clearly quieter", usage{80 * time.Minute: 0.1}, win(80*time.Minute, 85*time.Minute), 0, time.Time{}, false},
		{"window ending on a boundary excludes the next slot", usage{80 * time.Minute: 1, 85 * time.Minute: 0.1}, w, 0, at(85 * time.Minute), true},
		{"unaligned window", usage{81 * time.Minute: 1, 85 * time.Minute: 1, 90 * time.Minute: 0}, win(81*time.Minute, 90*time.Minute+time.Nanosecond), 0, at(90 * time.Minute), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := quietMoment(tt.p, tt.w, tt.ratio)
			if !got.Equal(tt.want) || ok != tt.wantOK {
				t.Errorf("quietMoment = %v, %v; want %v, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func twoSlots() Window { return win(80*time.Minute, 90*time.Minute) }

func TestQuietMomentCapped(t *testing.T) {
	for _, tt := range []struct {
		name      string
		life      time.Duration
		wantCalls int
	}{
		{"one-hour token", time.Hour, 1},
		{"one-day token", 24 * time.Hour, 24 * 60 / 12 / 5},
		{"one-year token", 365 * 24 * time.Hour, maxSlots},
		{"century token", 100 * 365 * 24 * time.Hour, maxSlots},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := &countingUsage{activity: 0.5}
			in := token(tt.life)
			in.Now = in.Expiry.Add(-in.Expiry.Sub(t0) / 3)
			in.LastActivity = in.Now
			in.Usage = c
			d := Next(in)
			if d.Reason != ReasonWaitIdle {
				t.Errorf("reason %v, want %v", d.Reason, ReasonWaitIdle)
			}
			if c.calls != tt.wantCalls {
				t.Errorf("%d predictions, want %d", c.calls, tt.wantCalls)
			}
		})
	}
}

// TestWindowIndependentOfNow checks that, with Issued given, the window and
// the quiet slot stay put as time passes.
func TestWindowIndependentOfNow(t *testing.T) {
	in := token(2 * time.Hour)
	in.Usage = usage{80 * time.Minute: 1, 85 * time.Minute: 0.2}
	in.Jitter = 0.3
	in.LatencyP99 = 3 * time.Minute
	first := Next(in).Window
	for now := -time.Hour; now < 3*time.Hour; now += 7 * time.Minute {
		in.Now, in.LastActivity = at(now), at(now)
		d := Next(in)
		if diff := cmp.Diff(first, d.Window); diff != "" {
			t.Fatalf("window at Now=t0%+v changed (-first +now):\n%s", now, diff)
		}
	}
}

package sim

import (
	"strings"
	"testing"
	"time"
)

// calmIdP answers every call in latency, never fails, has no outage.
func calmIdP(latency time.Duration) IdPConfig {
	return IdPConfig{Lifetime: time.Hour, Median: latency, ClientTimeout: 30 * time.Second, Seed: 1}
}

// userTrace is a short user trace against idp.
func userTrace(days int, idp IdPConfig) *Trace {
	tr := UserTrace(1, days)
	tr.IdP = idp
	return tr
}

func TestTraceIsReproducible(t *testing.T) {
	a, b := UserTrace(7, 4), UserTrace(7, 4)
	if len(a.Requests) != len(b.Requests) || len(a.Sessions) != len(b.Sessions) {
		t.Fatalf("same seed, different traces: %d/%d requests, %d/%d sessions", len(a.Requests), len(b.Requests), len(a.Sessions), len(b.Sessions))
	}
	for i := range a.Requests {
		if a.Requests[i] != b.Requests[i] {
			t.Fatalf("request %d differs: %+v vs %+v", i, a.Requests[i], b.Requests[i])
		}
	}
	if c := UserTrace(8, 4); len(c.Requests) == len(a.Requests) && c.Requests[100] == a.Requests[100] {
		t.Errorf("seeds 7 and 8 gave the same trace")
	}
	// Working hours: no user request on a weekday between 01:00 and 07:00.
	for _, r := range a.Requests {
		h := (r.At % day) / time.Hour
		if r.Kind == User && h >= 1 && h < 7 {
			t.Fatalf("user request at %v", r.At)
		}
	}
	if len(a.IdP.Outages) != 2 {
		t.Errorf("outages = %d, want 2", len(a.IdP.Outages))
	}
}

func TestIdPDraws(t *testing.T) {
	p := NewIdP(DefaultIdP(3), Monday)
	var lats []time.Duration
	fails := 0
	for i := range 20000 {
		l, f := p.draw(i)
		lats = append(lats, l)
		if f {
			fails++
		}
	}
	med, p99 := Percentile(lats, 0.5), Percentile(lats, 0.99)
	if med < 180*time.Millisecond || med > 220*time.Millisecond {
		t.Errorf("median latency %v, want about 200ms", med)
	}
	if p99 < 2500*time.Millisecond || p99 > 3500*time.Millisecond {
		t.Errorf("p99 latency %v, want about 3s", p99)
	}
	if fails < 150 || fails > 250 {
		t.Errorf("%d failures in 20000 draws, want about 200", fails)
	}
	// The same call number draws the same latency whoever calls.
	q := NewIdP(DefaultIdP(3), Monday)
	if l, _ := q.draw(123); l != lats[123] {
		t.Errorf("draw 123 differs between providers: %v vs %v", l, lats[123])
	}
}

// The fixed timer, with an instant provider, never hands out an expired
// token and never makes anyone wait.
func TestFixedTimerNeverExpiredWithZeroLatency(t *testing.T) {
	tr := userTrace(2, calmIdP(0))
	run := RunTrace(t, tr, FixedTimer(Early))
	if len(run.Expired) != 0 || len(run.Errors) != 0 || len(run.Waits) != 0 {
		t.Fatalf("expired %d, errors %d, waits %d; want none", len(run.Expired), len(run.Errors), len(run.Waits))
	}
	// It refreshes every 45 minutes, day and night.
	if n, want := len(run.Calls), int(2*day/(45*time.Minute)); n < want-1 || n > want+1 {
		t.Errorf("calls = %d, want about %d", n, want)
	}
}

// ReuseTokenSource refreshes when a request finds the token expired, and that
// request waits for the provider: one wait at least per refresh.
func TestReuseTokenSourceWaitsAtEachExpiry(t *testing.T) {
	const latency = 200 * time.Millisecond
	tr := userTrace(2, calmIdP(latency))
	run := RunTrace(t, tr, OAuth2Reuse(0))
	if len(run.Calls) < 30 {
		t.Fatalf("only %d calls in two days", len(run.Calls))
	}
	for _, c := range run.Calls {
		// Find the request that made this call: it was made at c.Start and waited.
		found := false
		for _, w := range run.Waits {
			if w.At <= c.Start && w.At+w.Wait >= c.End {
				found = true
				break
			}
		}
		if !found {
			t.Fatalf("call at %v: no request waited for it", c.Start)
		}
	}
	for _, w := range run.Waits {
		if w.Wait > latency {
			t.Errorf("request at %v waited %v, more than one call (%v)", w.At, w.Wait, latency)
		}
	}
	if len(run.Errors)+len(run.Expired) != 0 {
		t.Errorf("errors %d, expired %d; want none", len(run.Errors), len(run.Expired))
	}
}

// With a calm provider, tokenkeeper keeps the token fresh in the background:
// no request waits, none gets an expired token or an error, and it
// refreshes about every 45 minutes (between 40 and 45 minutes of age).
func TestTokenKeeperCalm(t *testing.T) {
	tr := userTrace(2, calmIdP(200*time.Millisecond))
	run := RunTrace(t, tr, TokenKeeper(""))
	if len(run.Waits)+len(run.Errors)+len(run.Expired) != 0 {
		t.Fatalf("waits %d, errors %d, expired %d; want none", len(run.Waits), len(run.Errors), len(run.Expired))
	}
	if n := len(run.Calls); n < int(2*day/(45*time.Minute)) || n > int(2*day/(40*time.Minute))+1 {
		t.Errorf("calls = %d, want one every 40 to 45 minutes", n)
	}
}

// Every library sees the same requests, and every token it hands out is one
// the provider issued.
func TestEveryLibraryRunsTheTrace(t *testing.T) {
	tr := UserTrace(2, 2) // with failures and an outage
	var want [4]int
	for _, r := range tr.Requests {
		want[r.Kind]++
	}
	for _, c := range Contenders() {
		run := RunTrace(t, tr, c)
		if run.Requests != want {
			t.Errorf("%s: requests %v, want %v", c.Name, run.Requests, want)
		}
		for _, e := range run.Errors {
			if strings.HasPrefix(e.Err, "harness:") {
				t.Errorf("%s: %s", c.Name, e.Err)
			}
		}
		if len(run.Calls) == 0 {
			t.Errorf("%s: no call to the provider in two days", c.Name)
		}
	}
}

// The asynchronous refresh of auth.CachedTokenProvider can still be running
// when the token expires and a caller refreshes in line under the
// provider's mutex; the run must go on in virtual time (not hang) and the
// caller gets the blocking call's error.
func TestGoogleAsyncRefreshOverlapsBlockingRefresh(t *testing.T) {
	idp := calmIdP(0)
	idp.Outages = []Outage{{Label: "hang", Start: 59*time.Minute + 40*time.Second, End: 62 * time.Minute, Mode: Hang}}
	tr := &Trace{
		Name: "overlap",
		Days: 1,
		Requests: []Request{
			{At: 10 * time.Minute, Kind: User},                // fresh: the library takes the token the run starts with
			{At: 59*time.Minute + 50*time.Second, Kind: User}, // stale: returned at once, async refresh hangs until 60:20
			{At: 60*time.Minute + 5*time.Second, Kind: User},  // expired: blocking refresh under the mutex, hangs until 60:35
			{At: 61 * time.Minute, Kind: User},                // queued behind it, refreshes again
			{At: 63 * time.Minute, Kind: User},                // provider back, answers at once
		},
		IdP: idp,
	}
	run := RunTrace(t, tr, GoogleCached(0))
	want := []Mark{
		{At: 60*time.Minute + 5*time.Second, Kind: User, Wait: 30 * time.Second},
		{At: 61 * time.Minute, Kind: User, Wait: 30 * time.Second},
	}
	if len(run.Waits) != len(want) || run.Waits[0] != want[0] || run.Waits[1] != want[1] {
		t.Fatalf("waits = %+v, want %+v (each blocking call until the client timeout)", run.Waits, want)
	}
	if len(run.Errors) != 2 {
		t.Errorf("errors = %+v, want two timeouts", run.Errors)
	}
	if len(run.Calls) != 4 {
		t.Errorf("calls = %d, want 4 (async, two blocking, one after the outage)", len(run.Calls))
	}
}

func TestStampedeDeduplicates(t *testing.T) {
	sc := StampedeConfig{Callers: 200, Rounds: 1, Latency: 20 * time.Millisecond}
	for _, c := range Contenders() {
		r, err := RunStampede(sc, c)
		if err != nil {
			t.Fatal(err)
		}
		if r.MaxCalls != 1 {
			t.Errorf("%s: %d calls for one expiry, want 1", c.Name, r.MaxCalls)
		}
		if r.Errors != 0 {
			t.Errorf("%s: %d errors", c.Name, r.Errors)
		}
		if strings.HasPrefix(c.Name, "fixed timer") {
			if r.Expired != sc.Callers {
				t.Errorf("fixed timer handed out %d expired tokens, want %d", r.Expired, sc.Callers)
			}
		} else if r.Expired != 0 {
			t.Errorf("%s: %d expired tokens handed out", c.Name, r.Expired)
		}
	}
}

func TestHerd(t *testing.T) {
	hc := HerdConfig{Tokens: 40, Every: 20 * time.Second, Duration: 70 * time.Minute, IdP: calmIdP(200 * time.Millisecond), Seed: 1}
	fixed := RunHerd(t, hc, FixedTimer(Early))
	if fixed.Peak != hc.Tokens || fixed.IdPCalls != hc.Tokens {
		t.Errorf("fixed timer: peak %d, calls %d; want all %d tokens at once", fixed.Peak, fixed.IdPCalls, hc.Tokens)
	}
	tk := RunHerd(t, hc, TokenKeeper("idp"))
	if tk.Peak > 4 {
		t.Errorf("tokenkeeper with a group: peak %d, want at most 4 (its group limit)", tk.Peak)
	}
	if tk.IdPCalls != hc.Tokens || tk.Waited != 0 || tk.Errors != 0 || tk.Expired != 0 {
		t.Errorf("tokenkeeper: %+v", tk)
	}
}

func TestHotInstance(t *testing.T) {
	for _, c := range Contenders() {
		inst, closeFn, err := HotInstance(c)
		if err != nil {
			t.Fatal(err)
		}
		for range 100 {
			if _, err := inst.Token(t.Context()); err != nil {
				t.Fatalf("%s: %v", c.Name, err)
			}
		}
		closeFn()
	}
}

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i))
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50}, {0.99, 99}, {1, 100}, {0, 1}} {
		if got := Percentile(ds, tc.q); got != tc.want {
			t.Errorf("Percentile(1..100, %v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	if Percentile(nil, 0.5) != 0 {
		t.Error("Percentile(nil) != 0")
	}
}

package breaker

import (
	"errors"
	"testing"
	"time"
)

func TestBreakerLifecycle(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := New(Settings{Failures: 3, OpenFor: 10 * time.Second, MaxOpen: 30 * time.Second})
	boom := errors.New("boom")
	at := func(d time.Duration) time.Time { return t0.Add(d) }

	for i := range 2 {
		if tr := b.Failure(at(0), boom); tr.Changed() {
			t.Fatalf("failure %d changed state to %v", i+1, tr.To)
		}
	}
	if ok, _, _, _ := b.Allow(at(0)); !ok {
		t.Fatal("closed breaker refused")
	}
	tr := b.Failure(at(0), boom)
	if tr.To != Open || !tr.Until.Equal(at(10*time.Second)) {
		t.Fatalf("third failure: %+v, want open until +10s", tr)
	}
	if ok, _, until, cause := b.Allow(at(5 * time.Second)); ok || !until.Equal(at(10*time.Second)) || cause != boom {
		t.Fatalf("open breaker: ok=%v until=%v cause=%v", ok, until, cause)
	}
	if refused, _, _ := b.Refuses(at(9 * time.Second)); !refused {
		t.Fatal("Refuses while open = false")
	}
	// Half-open: one probe only.
	if refused, _, _ := b.Refuses(at(10 * time.Second)); refused {
		t.Fatal("Refuses at the end of the open period = true")
	}
	ok, probe, _, _ := b.Allow(at(10 * time.Second))
	if !ok || !probe {
		t.Fatalf("half-open first call: ok=%v probe=%v", ok, probe)
	}
	if ok, _, _, _ := b.Allow(at(10 * time.Second)); ok {
		t.Fatal("second call allowed while the probe is in flight")
	}
	if refused, _, _ := b.Refuses(at(10 * time.Second)); !refused {
		t.Fatal("Refuses during the probe = false")
	}
	// Failed probe: open again, twice as long.
	tr = b.Failure(at(11*time.Second), boom)
	if tr.From != HalfOpen || tr.To != Open || !tr.Until.Equal(at(31*time.Second)) {
		t.Fatalf("failed probe: %+v, want open until +31s", tr)
	}
	// A late report while open changes nothing.
	if tr := b.Failure(at(12*time.Second), boom); tr.Changed() {
		t.Fatalf("late failure changed state: %+v", tr)
	}
	// The open period is capped at MaxOpen.
	b.Allow(at(31 * time.Second))
	tr = b.Failure(at(31*time.Second), boom)
	if !tr.Until.Equal(at(61 * time.Second)) {
		t.Fatalf("capped open period ends %v, want +61s", tr.Until.Sub(t0))
	}
	if s, until, err := b.Snapshot(at(40 * time.Second)); s != Open || until.IsZero() || err != boom {
		t.Fatalf("snapshot: %v %v %v", s, until, err)
	}
	b.Allow(at(61 * time.Second))
	if tr := b.Success(at(62 * time.Second)); tr.From != HalfOpen || tr.To != Closed {
		t.Fatalf("successful probe: %+v", tr)
	}
	if s, until, err := b.Snapshot(at(62 * time.Second)); s != Closed || !until.IsZero() || err != nil {
		t.Fatalf("after success: %v %v %v", s, until, err)
	}
	// After closing, the open period starts from OpenFor again.
	for range 3 {
		tr = b.Failure(at(70*time.Second), boom)
	}
	if !tr.Until.Equal(at(80 * time.Second)) {
		t.Fatalf("reopened until %v, want +80s", tr.Until.Sub(t0))
	}
}

func TestDefaultsAndStrings(t *testing.T) {
	s := Settings{}.withDefaults()
	if s.Failures != 5 || s.OpenFor != 5*time.Second || s.MaxOpen != 30*time.Second {
		t.Errorf("defaults = %+v", s)
	}
	if s := (Settings{OpenFor: time.Hour}).withDefaults(); s.MaxOpen != time.Hour {
		t.Errorf("MaxOpen below OpenFor not raised: %+v", s)
	}
	for st, want := range map[State]string{Closed: "closed", Open: "open", HalfOpen: "half-open", State(9): "unknown"} {
		if st.String() != want {
			t.Errorf("%d.String() = %q", st, st.String())
		}
	}
}

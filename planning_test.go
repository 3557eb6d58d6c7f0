package tokenkeeper

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/oauth2"
)

// Slow refreshes widen the window: with a 20-minute p99 the window must end
// at least 20 minutes before expiry, not 15.
func TestWindowWidensForSlowRefreshes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{}
		src.fn = func(ctx context.Context, n int, _ *oauth2.Token) (*oauth2.Token, error) {
			time.Sleep(20 * time.Minute)
			return newTok("slow", time.Now().Add(time.Hour)), nil
		}
		k := newKeeper(t, Config{})
		h, _ := k.Add(TokenConfig{Name: "a", Source: src, Policy: &Policy{NoJitter: true, AttemptTimeout: time.Hour}})
		if _, err := h.TokenContext(t.Context()); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		st := h.Status()
		if got := st.Expiry.Sub(st.WindowEnd); got != 20*time.Minute {
			t.Errorf("window ends %v before expiry, want 20m (p99 %v)", got, st.LatencyP99)
		}
		if got := st.Expiry.Sub(st.WindowStart); got != 25*time.Minute {
			t.Errorf("window starts %v before expiry, want 25m", got)
		}
	})
}

// Tokens issued together enter their windows at different moments, and an
// idle application refreshes them spread out.
func TestJitterSpreadsTokensIssuedTogether(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		k := newKeeper(t, Config{})
		rng := rand.New(rand.NewPCG(7, 7))
		k.randFloat = rng.Float64
		src := &fakeSource{}
		for i := range 100 {
			k.Add(TokenConfig{Name: fmt.Sprint(i), Source: src, Token: newTok("t", t0.Add(time.Hour))})
		}
		time.Sleep(50 * time.Minute)
		synctest.Wait()
		times := src.times()
		if len(times) != 100 {
			t.Fatalf("%d refreshes, want 100", len(times))
		}
		slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
		distinct := slices.CompactFunc(slices.Clone(times), func(a, b time.Time) bool { return a.Equal(b) })
		first, last := times[0].Sub(t0), times[len(times)-1].Sub(t0)
		if len(distinct) < 90 || last-first < 2*time.Minute {
			t.Errorf("refreshes not spread: %d distinct moments between +%v and +%v", len(distinct), first, last)
		}
		if first < 40*time.Minute || last > 45*time.Minute {
			t.Errorf("refreshes outside the window: +%v .. +%v", first, last)
		}
	})
}

// Activity reported with NoteActivity (not a token fetch) also postpones a
// refresh to an idle moment.
func TestNoteActivityCountsAsBusy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		src := &fakeSource{}
		k := newKeeper(t, Config{})
		k.Add(TokenConfig{Name: "a", Source: src, Token: newTok("t", t0.Add(time.Hour)), Policy: noJitter()})
		time.Sleep(39 * time.Minute)
		for range 24 { // key presses every 10 s from 39:00 to 42:50
			k.NoteActivity()
			time.Sleep(10 * time.Second)
		}
		time.Sleep(5 * time.Minute)
		synctest.Wait()
		got := src.times()
		want := t0.Add(39*time.Minute + 230*time.Second + DefaultIdleGap)
		if len(got) != 1 || !got[0].Equal(want) {
			t.Fatalf("refreshes at %v, want one at +%v", got, want.Sub(t0))
		}
	})
}

// When more refreshes fall due than the queue holds, the planned ones are
// tried again a second later; all of them happen.
func TestQueueFullPlannedRefreshesRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{}
		src.fn = func(ctx context.Context, n int, _ *oauth2.Token) (*oauth2.Token, error) {
			time.Sleep(100 * time.Millisecond)
			return newTok("t", time.Now().Add(time.Hour)), nil
		}
		k := newKeeper(t, Config{Workers: 2, MaxQueued: 5})
		for i := range 50 {
			k.Add(TokenConfig{Name: fmt.Sprint(i), Source: src, Token: newTok("expired", time.Now().Add(-time.Second))})
		}
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if n := src.count(); n != 50 {
			t.Errorf("%d refreshes, want 50", n)
		}
		for _, st := range k.Status() {
			if st.State != StateValid {
				t.Errorf("%s: %v", st.Name, st.State)
			}
		}
	})
}

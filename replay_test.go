package tokenkeeper

import (
	"context"
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/oauth2"
)

// TestReplayBurstyDay replays a day of a single user's bursty activity
// (sessions of requests with short pauses, separated by idle gaps) against a
// one-hour token from an identity provider that takes 300 ms to answer. It
// checks that no request ever waited for a refresh, that no expired token was
// handed out, and that most refreshes landed in idle moments.
func TestReplayBurstyDay(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		t.Run("", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { replayDay(t, seed) })
		})
	}
}

func replayDay(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 42))
	t0 := time.Now()
	src := &fakeSource{}
	src.fn = func(ctx context.Context, n int, _ *oauth2.Token) (*oauth2.Token, error) {
		select {
		case <-time.After(300 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return newTok("t", time.Now().Add(time.Hour)), nil
	}
	k := newKeeper(t, Config{})
	k.randFloat = rng.Float64 // reproducible jitter
	h, err := k.Add(TokenConfig{Name: "api", Source: src, Token: newTok("first", t0.Add(time.Hour))})
	if err != nil {
		t.Fatal(err)
	}

	var requests, waited int
	var activity []time.Time // moments of user requests
	request := func() {
		start := time.Now()
		tok, err := h.TokenContext(context.Background())
		if err != nil {
			t.Fatalf("at %v: %v", start.Sub(t0), err)
		}
		if !tok.Expiry.After(time.Now()) {
			t.Fatalf("at %v: expired token handed out (expiry %v)", start.Sub(t0), tok.Expiry.Sub(t0))
		}
		if time.Since(start) > 0 {
			waited++
		}
		requests++
		activity = append(activity, start)
	}
	sleep := func(lo, hi time.Duration) {
		time.Sleep(lo + time.Duration(rng.Int64N(int64(hi-lo))))
	}

	// 08:00 to 22:00: sessions of 10 to 90 minutes with requests every 1 to
	// 15 s and occasional reading pauses, separated by 5 to 60 minute gaps.
	time.Sleep(8 * time.Hour)
	for time.Since(t0) < 22*time.Hour {
		end := time.Now().Add(10*time.Minute + time.Duration(rng.Int64N(int64(80*time.Minute))))
		for time.Now().Before(end) {
			request()
			if rng.Float64() < 0.03 {
				sleep(40*time.Second, 3*time.Minute)
			} else {
				sleep(time.Second, 15*time.Second)
			}
		}
		sleep(5*time.Minute, 60*time.Minute)
	}
	time.Sleep(24*time.Hour - time.Since(t0))
	synctest.Wait()

	refreshes := src.times()
	inIdle, day, dayIdle := 0, 0, 0
	j := 0
	for _, r := range refreshes {
		busyHours := r.Sub(t0) >= 8*time.Hour && r.Sub(t0) < 22*time.Hour
		for j < len(activity) && !activity[j].After(r) {
			j++
		}
		// idle: no request in the 30 s before the refresh started
		idle := j == 0 || r.Sub(activity[j-1]) >= DefaultIdleGap
		if idle {
			inIdle++
		}
		if busyHours {
			day++
			if idle {
				dayIdle++
			}
		}
	}
	t.Logf("seed %d: %d requests, %d waited, %d refreshes, %d in idle moments; between 08:00 and 22:00: %d refreshes, %d in idle moments",
		seed, requests, waited, len(refreshes), inIdle, day, dayIdle)
	if waited != 0 {
		t.Errorf("%d requests waited for a refresh while a valid token existed", waited)
	}
	if len(refreshes) < 24*60/45 {
		t.Errorf("only %d refreshes in a day of one-hour tokens", len(refreshes))
	}
	if float64(inIdle) < 0.75*float64(len(refreshes)) {
		t.Errorf("only %d of %d refreshes landed in idle moments", inIdle, len(refreshes))
	}
	if float64(dayIdle) < 0.6*float64(day) {
		t.Errorf("during active hours only %d of %d refreshes landed in idle moments", dayIdle, day)
	}
}

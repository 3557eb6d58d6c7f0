package main

import (
	"context"
	"math/rand/v2"
	"os"
	"syscall"
	"testing"
	"time"
)

// TestKillDuringRefreshesResumesSession kills the agent with SIGKILL in
// the middle of refreshes, over and over, and restarts it each time, against
// an issuer that rotates refresh tokens and revokes a grant at the first
// reuse. Every restart must resume each session from the store: the issuer
// never sees a reused refresh token and never has to issue a new grant.
//
// Each kill happens while all three tokens have a refresh request in flight
// (the issuer holds them just before committing), so every refresh the
// killed agent started is cut off mid-way. The one moment no client can
// survive without the server's help is after the server committed a
// rotation and before the answer reached the store; no kill lands there
// here (see docs/agent.md, "Crash safety").
func TestKillDuringRefreshesResumesSession(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts the agent 20 times")
	}
	const cycles = 20
	e := newEnv(t, 2*time.Second)
	names := []string{"a", "b", "c"}
	ttls := map[string]time.Duration{"a": 2 * time.Second, "b": 2 * time.Second, "c": 3 * time.Second}
	// Windows that put each token's refresh 0.4 to 1.2 s after it arrives.
	policies := map[string]string{
		"a": "{start_lead: 1600ms, end_lead: 800ms, idle_gap: 200ms}",
		"b": "{start_lead: 1500ms, end_lead: 900ms, idle_gap: 200ms}",
		"c": "{start_lead: 2500ms, end_lead: 1800ms, idle_gap: 200ms}",
	}
	var tokens []string
	for _, n := range names {
		e.grant(n, ttls[n])
		tokens = append(tokens, e.token(n, "    policy: "+policies[n]+"\n"))
	}
	cfg := e.writeConfig(e.unixHead(), tokens...)
	rng := rand.New(rand.NewPCG(1, 2))

	start := time.Now()
	abandoned := 0
	for cycle := 1; cycle <= cycles; cycle++ {
		p, c := e.startAgent(cfg)
		// The restarted agent hands out tokens of the original grants.
		for _, n := range names {
			tok := fetch(t, c, n)
			in := e.iss.Introspect(tok.AccessToken)
			if !in.Active || in.GrantID != e.grants[n] {
				t.Fatalf("cycle %d: token %s: %+v (want an active token of grant %s)\n%s", cycle, n, in, e.grants[n], p.stderr.String())
			}
		}
		// Let refreshes happen, for a different time each cycle.
		time.Sleep(time.Duration(rng.IntN(500)) * time.Millisecond)

		// Catch all three tokens in the middle of a refresh, and kill.
		e.iss.Hold()
		waitFor(t, "all three refreshes in flight", 10*time.Second, func() bool {
			if p.exited() {
				t.Fatalf("cycle %d: the agent exited:\n%s", cycle, p.stderr.String())
			}
			return e.iss.Held() == len(names)
		})
		p.signal(syscall.SIGKILL)
		if code := p.wait(10 * time.Second); code != -1 {
			t.Fatalf("cycle %d: exit code %d after SIGKILL", cycle, code)
		}
		abandoned += len(names)
		waitFor(t, "held requests abandoned", 10*time.Second, func() bool {
			return e.iss.Stats().Abandoned == abandoned && e.iss.Held() == 0
		})
		e.iss.Release()
		if st := e.iss.Stats(); st.ReuseDetected != 0 || st.GrantsRevoked != 0 {
			t.Fatalf("cycle %d: issuer %+v\nagent log:\n%s", cycle, st, p.stderr.String())
		}
	}
	elapsed := time.Since(start)

	// A last start: every session still refreshes.
	p, c := e.startAgent(cfg)
	for _, n := range names {
		if _, err := c.Refresh(context.Background(), n); err != nil {
			t.Fatalf("final refresh of %s: %v\n%s", n, err, p.stderr.String())
		}
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(20 * time.Second); code != 0 {
		t.Errorf("final SIGTERM: exit %d\n%s", code, p.stderr.String())
	}

	st := e.iss.Stats()
	if st.ReuseDetected != 0 || st.GrantsRevoked != 0 || st.Grants != len(names) || st.Refreshes < cycles {
		t.Errorf("issuer: %+v: want rotations, no reuse, no revocation, only the %d original grants", st, len(names))
	}
	for _, n := range names {
		g, _ := e.iss.Grant(e.grants[n])
		if g.Revoked || g.Refreshes < 3 {
			t.Errorf("grant of %s: %+v", n, g)
		}
	}
	if fi, err := os.Stat(e.path("tokens.db")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("store file: %v %v", fi, err)
	}
	t.Logf("%d SIGKILLs during refreshes in %v: %d rotations, %d requests cut off, 0 reuses, %d grants",
		cycles, elapsed.Round(time.Millisecond), st.Refreshes, st.Abandoned, st.Grants)
	if elapsed > 60*time.Second {
		t.Errorf("the kill cycles took %v, want under 60s", elapsed)
	}
}

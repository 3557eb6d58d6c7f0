package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/oidc"
	"golang.org/x/oauth2"
)

func skipShort(t *testing.T) {
	if testing.Short() {
		t.Skip("real-time end-to-end test")
	}
}

// keeperFor starts a keeper with store and event collection.
func keeperFor(t *testing.T, pol tokenkeeper.Policy) (*tokenkeeper.Keeper, *memStore, *events) {
	t.Helper()
	store := newMemStore()
	ev := &events{}
	k, err := tokenkeeper.New(tokenkeeper.Config{Store: store, OnEvent: ev.add, Policy: pol})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k.Close() })
	return k, store, ev
}

func refreshSource(t *testing.T, a *authServer) *oidc.Source {
	t.Helper()
	src, err := oidc.New(oidc.Config{ClientID: clientID, ClientSecret: clientSecret, Issuer: a.URL()})
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// shortPolicy suits tokens of 2 to 3 seconds: refresh a second before
// expiry at the latest (the keeper plans refreshes at least a second apart),
// retry quickly.
var shortPolicy = tokenkeeper.Policy{StartLead: 1200 * time.Millisecond, EndLead: time.Second,
	RetryBase: 100 * time.Millisecond, RetryMax: time.Second}

// waitSlack is how much later than a call's start the token it used may
// have been published without counting as a wait: it absorbs scheduling
// delays between the call's start and its token fetch (with -race, on a
// busy machine). A caller that waits for a refresh waits for the 50 ms the
// token endpoint takes, or until the token appears.
const waitSlack = 10 * time.Millisecond

func succeeded(calls []tokenCall) int {
	n := 0
	for _, c := range calls {
		if c.status == http.StatusOK {
			n++
		}
	}
	return n
}

// 1,000 requests from 20 goroutines through the interceptor while fosite
// rotates the refresh token at least ten times: no caller sees a 401, fosite
// detects no reuse, and no request waits for a refresh.
func TestInterceptorUnderRotation(t *testing.T) {
	skipShort(t)
	a := newAuthServer(t, 3*time.Second)
	// Every refresh takes at least 50 ms: a request that waited for one
	// would show it.
	a.setRefreshDelay(50 * time.Millisecond)
	first := a.signIn(t)

	// fosite answers expires_in 2 or 3 for a 3 s lifespan (it rounds the
	// expiry to the second); refresh 1 s before expiry at the latest.
	k, store, ev := keeperFor(t, shortPolicy)
	h, err := k.Add(tokenkeeper.TokenConfig{Name: "user", Source: refreshSource(t, a), Token: first})
	if err != nil {
		t.Fatal(err)
	}
	obs := &observer{base: http.DefaultTransport}
	client := tokenkeeper.NewClient(h, obs)

	began := time.Now()
	calls := load(t, client, obs, a.URL()+"/api/hello", 20, 150*time.Millisecond, 60*time.Second, func(n int) bool {
		return n >= 1000 && succeeded(a.tokenCalls("refresh_token")) >= 10
	})
	elapsed := time.Since(began)

	ok, s401, other, errs, retried := summarize(calls)
	rotations := succeeded(a.tokenCalls("refresh_token"))
	refreshCalls := len(a.tokenCalls("refresh_token"))
	waited, lat, examples := waitReport(calls, store, waitSlack, nil)
	t.Logf("%d requests in %v: %d ok, %d 401, %d other, %d errors; %d retried after a 401 at the API (fosite revokes the old access token when it rotates)",
		len(calls), elapsed.Round(time.Millisecond), ok, s401, other, errs, retried)
	t.Logf("%d rotations (%d refresh requests), %d reuses detected by fosite, %d refresh events",
		rotations, refreshCalls, a.store.reuses.Load(), len(ev.of(tokenkeeper.EventSucceeded)))
	t.Logf("token acquisition (call start to first attempt sent): p50 %v, p99 %v, max %v; calls that waited for a refresh: %d",
		percentile(lat, 0.5), percentile(lat, 0.99), percentile(lat, 1), waited)

	if len(calls) < 1000 || rotations < 10 {
		t.Errorf("%d calls, %d rotations: want at least 1000 and 10", len(calls), rotations)
	}
	if s401 != 0 || other != 0 || errs != 0 {
		t.Errorf("callers saw %d 401s, %d other statuses, %d errors; want none", s401, other, errs)
		for _, c := range calls {
			if c.err != nil {
				t.Logf("error: %v", c.err)
				break
			}
		}
	}
	if n := a.store.reuses.Load(); n != 0 {
		t.Errorf("fosite detected %d refresh-token reuses", n)
	}
	if refreshCalls != rotations {
		t.Errorf("%d refresh requests for %d rotations: a refresh failed", refreshCalls, rotations)
	}
	if waited != 0 {
		t.Errorf("%d calls waited for a refresh while a valid token existed: %v", waited, examples)
	}
	if n := len(ev.of(tokenkeeper.EventFailed)); n != 0 {
		t.Errorf("%d failed refreshes", n)
	}
}

// A revoked grant ends in ErrReauthRequired: one failed refresh, one
// re-authentication event, and no refresh attempt after it.
func TestRevokedGrant(t *testing.T) {
	skipShort(t)
	a := newAuthServer(t, 4*time.Second)
	first := a.signIn(t)
	k, store, ev := keeperFor(t, tokenkeeper.Policy{RetryBase: 100 * time.Millisecond, RetryMax: time.Second})
	h, err := k.Add(tokenkeeper.TokenConfig{Name: "user", Source: refreshSource(t, a), Token: first})
	if err != nil {
		t.Fatal(err)
	}
	client := tokenkeeper.NewClient(h, nil)
	get := func() (int, error) {
		resp, err := client.Get(a.URL() + "/api/hello")
		if err != nil {
			return 0, err
		}
		_ = resp.Body.Close()
		return resp.StatusCode, nil
	}
	if st, err := get(); err != nil || st != http.StatusOK {
		t.Fatalf("before revocation: %d %v", st, err)
	}

	// Revoke the current refresh token; fosite revokes the grant's access
	// token with it.
	rt := first.RefreshToken
	if cur := store.current("user"); cur != nil {
		rt = cur.RefreshToken
	}
	a.revokeRefreshToken(t, rt)
	before := len(a.tokenCalls("refresh_token"))

	// The API now rejects the access token; the interceptor invalidates
	// it, the urgent refresh fails with invalid_grant, and the caller
	// learns that the user must sign in again.
	st, err := get()
	if !errors.Is(err, tokenkeeper.ErrReauthRequired) {
		t.Fatalf("after revocation: status %d, error %v; want ErrReauthRequired", st, err)
	}
	t.Logf("caller got: %v", err)

	// For longer than a token's lifetime, every call fails at once with
	// the same error and nothing more is sent to the token endpoint.
	var fast atomic.Int32
	deadline := time.Now().Add(5 * time.Second)
	calls := 0
	for time.Now().Before(deadline) {
		start := time.Now()
		_, err := get()
		if !errors.Is(err, tokenkeeper.ErrReauthRequired) {
			t.Fatalf("call %d: %v, want ErrReauthRequired", calls, err)
		}
		if time.Since(start) < 10*time.Millisecond {
			fast.Add(1)
		}
		calls++
		time.Sleep(50 * time.Millisecond)
	}
	after := len(a.tokenCalls("refresh_token"))
	reauth := ev.of(tokenkeeper.EventReauthRequired)
	t.Logf("%d calls after revocation, %d answered in under 10 ms; refresh requests after revocation: %d; reauth events: %d",
		calls+1, fast.Load(), after-before, len(reauth))
	if after-before != 1 {
		t.Errorf("refresh requests after revocation = %d, want exactly 1", after-before)
	}
	if len(reauth) != 1 {
		t.Errorf("re-authentication events = %d, want 1", len(reauth))
	}
	if st := h.Status(); st.State != tokenkeeper.StateReauthRequired {
		t.Errorf("state %v, want reauth-required", st.State)
	}
	if int(fast.Load()) < calls*9/10 {
		t.Errorf("only %d of %d calls failed fast", fast.Load(), calls)
	}
}

// A token endpoint that answers 503 with Retry-After twice and then recovers
// is retried no sooner than it asked, and the session survives: no caller
// sees an error and the rotation goes on.
func TestRetryAfterThenRecovery(t *testing.T) {
	skipShort(t)
	a := newAuthServer(t, 6*time.Second)
	var faults atomic.Int32
	faults.Store(2)
	a.setFault(func(w http.ResponseWriter, r *http.Request, grant string) bool {
		if grant != "refresh_token" || faults.Add(-1) < 0 {
			return false
		}
		w.Header().Set("Retry-After", "1")
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("<html><body><h1>503 Service Unavailable</h1></body></html>"))
		return true
	})
	first := a.signIn(t)
	// expires_in is 5 or 6: refresh 3.5 s before expiry, leaving room for
	// the two 1 s waits.
	k, store, ev := keeperFor(t, tokenkeeper.Policy{StartLead: 4 * time.Second, EndLead: 3500 * time.Millisecond,
		RetryBase: 100 * time.Millisecond, RetryMax: 500 * time.Millisecond})
	h, err := k.Add(tokenkeeper.TokenConfig{Name: "user", Source: refreshSource(t, a), Token: first})
	if err != nil {
		t.Fatal(err)
	}
	obs := &observer{base: http.DefaultTransport}
	client := tokenkeeper.NewClient(h, obs)
	calls := load(t, client, obs, a.URL()+"/api/hello", 5, 100*time.Millisecond, 40*time.Second, func(int) bool {
		return succeeded(a.tokenCalls("refresh_token")) >= 3
	})

	refreshes := a.tokenCalls("refresh_token")
	var timeline []string
	for i, c := range refreshes {
		gap := time.Duration(0)
		if i > 0 {
			gap = c.at.Sub(refreshes[i-1].at)
		}
		timeline = append(timeline, fmt.Sprintf("%d (+%v)", c.status, gap.Round(time.Millisecond)))
	}
	t.Logf("refresh requests: %v", timeline)
	if len(refreshes) < 3 || refreshes[0].status != 503 || refreshes[1].status != 503 || refreshes[2].status != 200 {
		t.Fatalf("refresh statuses %v, want 503, 503, 200, ...", timeline)
	}
	for i := 1; i <= 2; i++ {
		gap := refreshes[i].at.Sub(refreshes[i-1].at)
		if gap < time.Second || gap > 1500*time.Millisecond {
			t.Errorf("retry %d came %v after the 503, want 1 s (Retry-After) to 1.5 s", i, gap)
		}
	}
	ok, s401, other, errs, retried := summarize(calls)
	waited, lat, examples := waitReport(calls, store, waitSlack, nil)
	t.Logf("%d requests: %d ok, %d 401, %d other, %d errors, %d retried; acquisition p99 %v max %v; waited %d",
		len(calls), ok, s401, other, errs, retried, percentile(lat, 0.99), percentile(lat, 1), waited)
	if s401+other+errs != 0 {
		t.Errorf("callers saw failures during the outage")
	}
	if waited != 0 {
		t.Errorf("%d calls waited for a refresh: %v", waited, examples)
	}
	if n := len(ev.of(tokenkeeper.EventReauthRequired)); n != 0 {
		t.Errorf("session lost (%d reauth events)", n)
	}
	if n := len(ev.of(tokenkeeper.EventFailed)); n != 2 {
		t.Errorf("failed attempts = %d, want 2", n)
	}
	for _, e := range ev.of(tokenkeeper.EventFailed) {
		var re *tokenkeeper.RefreshError
		if !errors.As(e.Err, &re) || re.Permanent || re.Status != 503 || re.RetryAfter != time.Second {
			t.Errorf("failure event %v: want a transient 503 with Retry-After 1s", e.Err)
		}
	}
	if n := a.store.reuses.Load(); n != 0 {
		t.Errorf("fosite detected %d reuses", n)
	}
}

// A service's client credentials token, authenticated in the request body,
// is fetched at first use and then renewed in the background.
func TestClientCredentialsRenewed(t *testing.T) {
	skipShort(t)
	a := newAuthServer(t, 3*time.Second)
	src, err := oidc.New(oidc.Config{
		Grant: oidc.GrantClientCredentials, ClientID: postClientID, ClientSecret: clientSecret,
		Issuer: a.URL(), Endpoint: oauth2.Endpoint{AuthStyle: oauth2.AuthStyleInParams}, Scopes: []string{"api"},
	})
	if err != nil {
		t.Fatal(err)
	}
	k, store, ev := keeperFor(t, shortPolicy)
	h, err := k.Add(tokenkeeper.TokenConfig{Name: "service", Source: src})
	if err != nil {
		t.Fatal(err)
	}
	// The first token is fetched at once, in the background.
	waitFor(t, 5*time.Second, "the first token", func() bool { return store.current("service") != nil })
	firstSaved := time.Now()

	obs := &observer{base: http.DefaultTransport}
	client := tokenkeeper.NewClient(h, obs)
	calls := load(t, client, obs, a.URL()+"/api/hello", 5, 50*time.Millisecond, 30*time.Second, func(int) bool {
		return succeeded(a.tokenCalls("client_credentials")) >= 5
	})
	ok, s401, other, errs, retried := summarize(calls)
	waited, lat, examples := waitReport(calls, store, waitSlack, func(c *call) bool { return c.start.Before(firstSaved) })
	issued := succeeded(a.tokenCalls("client_credentials"))
	t.Logf("%d tokens issued; %d requests: %d ok, %d 401, %d other, %d errors, %d retried; acquisition p99 %v max %v; waited %d",
		issued, len(calls), ok, s401, other, errs, retried, percentile(lat, 0.99), percentile(lat, 1), waited)
	if s401+other+errs != 0 {
		t.Errorf("callers saw failures")
	}
	if waited != 0 {
		t.Errorf("%d calls waited for a renewal: %v", waited, examples)
	}
	if n := len(ev.of(tokenkeeper.EventFailed)); n != 0 {
		t.Errorf("%d failed renewals", n)
	}
	if n := len(a.tokenCalls("")); n != issued {
		t.Errorf("%d token requests for %d tokens", n, issued)
	}
}

// The Source refuses to send a refresh token twice even when a caller
// hands it an old one: fosite would revoke the whole grant.
func TestSpentRefreshTokenNotResent(t *testing.T) {
	skipShort(t)
	a := newAuthServer(t, 3*time.Second)
	first := a.signIn(t)
	src := refreshSource(t, a)
	ctx := context.Background()
	tok, err := src.Refresh(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken == first.RefreshToken {
		t.Fatal("fosite did not rotate the refresh token")
	}
	n := len(a.tokenCalls("refresh_token"))
	if _, err := src.Refresh(ctx, first); !errors.Is(err, oidc.ErrRefreshTokenSpent) {
		t.Errorf("old refresh token: %v, want ErrRefreshTokenSpent", err)
	}
	if len(a.tokenCalls("refresh_token")) != n || a.store.reuses.Load() != 0 {
		t.Errorf("the spent token reached fosite")
	}
	// The rotated token still works: the grant is intact.
	if _, err := src.Refresh(ctx, tok); err != nil {
		t.Errorf("rotated token: %v", err)
	}
}

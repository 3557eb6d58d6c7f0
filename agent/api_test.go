package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tokenkeeper/tokenkeeper"
	"golang.org/x/oauth2"
)

func TestRefreshEndpoint(t *testing.T) {
	e := newEnv(t, envConfig{secret: testSecret})
	tests := []struct {
		name, path, body string
		opts             []reqOpt
		wantStatus       int
		wantCode         string
	}{
		{"plain", "/v1/tokens/alpha/refresh", "", nil, 200, ""},
		{"empty object", "/v1/tokens/alpha/refresh", "{}", nil, 200, ""},
		{"timeout", "/v1/tokens/alpha/refresh?timeout=10s", "", nil, 200, ""},
		{"bad timeout", "/v1/tokens/alpha/refresh?timeout=soon", "", nil, 400, CodeBadRequest},
		{"zero timeout", "/v1/tokens/alpha/refresh?timeout=0", "", nil, 400, CodeBadRequest},
		{"long timeout", "/v1/tokens/alpha/refresh?timeout=1h", "", nil, 400, CodeBadRequest},
		{"unknown parameter", "/v1/tokens/alpha/refresh?force=1", "", nil, 400, CodeBadRequest},
		{"array body", "/v1/tokens/alpha/refresh", "[]", nil, 400, CodeBadRequest},
		{"unknown field", "/v1/tokens/alpha/refresh", `{"x":1}`, nil, 400, CodeBadRequest},
		{"not JSON", "/v1/tokens/alpha/refresh", "please", []reqOpt{withHeader("Content-Type", "text/plain")}, 415, CodeUnsupportedMediaType},
		{"huge body", "/v1/tokens/alpha/refresh", `{"pad":"` + strings.Repeat("x", 4096) + `"}`, nil, 413, CodeBodyTooLarge},
		{"unknown token", "/v1/tokens/nope/refresh", "", nil, 404, CodeUnknownToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _, body := e.do(t, "POST", tt.path, tt.body, tt.opts...)
			if status != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", status, tt.wantStatus, body)
			}
			if tt.wantCode != "" {
				if got := errCode(t, body); got != tt.wantCode {
					t.Errorf("code %q, want %q", got, tt.wantCode)
				}
				return
			}
			var st TokenStatus
			if err := json.Unmarshal([]byte(body), &st); err != nil {
				t.Fatal(err)
			}
			if st.Name != "alpha" || st.State != "valid" || st.Refreshes == 0 || st.ExpiresIn == nil {
				t.Errorf("status %+v", st)
			}
			if strings.Contains(body, "SECRET") {
				t.Errorf("token value in the answer: %s", body)
			}
		})
	}
	if n := e.srcs["alpha"].calls.Load(); n != 3 {
		t.Errorf("%d refreshes, want 3", n)
	}
	// The next token request hands out the new token.
	_, _, body := e.do(t, "GET", "/v1/tokens/alpha", "")
	if !strings.Contains(body, "SECRET-access-alpha-3") {
		t.Errorf("after refresh: %s", body)
	}
}

func TestRefreshEndpointFailure(t *testing.T) {
	e := newEnv(t, envConfig{secret: testSecret, noStart: true})
	e.add(t, "revoked", time.Hour, func(context.Context, int64) (*oauth2.Token, error) {
		return nil, tokenkeeper.Permanent(errors.New("refresh token revoked"))
	})
	status, _, body := e.do(t, "POST", "/v1/tokens/revoked/refresh", "")
	if status != 409 || errCode(t, body) != CodeReauthRequired {
		t.Fatalf("status %d body %s", status, body)
	}
	// Still valid: the token keeps being served.
	if status, _, _ := e.do(t, "GET", "/v1/tokens/revoked", ""); status != 200 {
		t.Errorf("valid token after a permanent failure: %d", status)
	}
	// But the agent is not ready any more.
	status, _, body = e.do(t, "GET", "/readyz", "")
	if status != 503 || !strings.Contains(body, "revoked (reauth-required)") {
		t.Errorf("readyz: %d %s", status, body)
	}
}

func TestActivityEndpoint(t *testing.T) {
	e := newEnv(t, envConfig{secret: testSecret})
	tests := []struct {
		name, body string
		opts       []reqOpt
		wantStatus int
		wantCode   string
	}{
		{"empty", "", nil, 204, ""},
		{"empty object", "{}", nil, 204, ""},
		{"at", `{"at":"` + time.Now().UTC().Format(time.RFC3339) + `"}`, nil, 204, ""},
		{"at with charset", `{"at":"` + time.Now().Format(time.RFC3339Nano) + `"}`, []reqOpt{withHeader("Content-Type", "application/json; charset=utf-8")}, 204, ""},
		{"bad time", `{"at":"yesterday"}`, nil, 400, CodeBadRequest},
		{"truncated", `{"at":`, nil, 400, CodeBadRequest},
		{"unknown field", `{"when":"now"}`, nil, 400, CodeBadRequest},
		{"two objects", `{} {}`, nil, 400, CodeBadRequest},
		{"form", "at=now", []reqOpt{withHeader("Content-Type", "application/x-www-form-urlencoded")}, 415, CodeUnsupportedMediaType},
		{"no type", "{}", []reqOpt{withHeader("Content-Type", "")}, 415, CodeUnsupportedMediaType},
		{"too large", `{"at":"` + strings.Repeat(" ", 2000) + `"}`, nil, 413, CodeBodyTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := "/v1/activity"
			status, _, body := e.do(t, "POST", path, tt.body, tt.opts...)
			if status != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", status, tt.wantStatus, body)
			}
			if tt.wantCode != "" && errCode(t, body) != tt.wantCode {
				t.Errorf("code %q, want %q", errCode(t, body), tt.wantCode)
			}
		})
	}
	if status, _, _ := e.do(t, "POST", "/v1/activity?x=1", ""); status != 400 {
		t.Errorf("query on activity: %d", status)
	}
	tl := e.k.Timeline(1)
	if len(tl) != 1 || tl[0] < 1 {
		t.Errorf("timeline %v: the activity was not recorded", tl)
	}
}

func TestListAndOverview(t *testing.T) {
	e := newEnv(t, envConfig{secret: testSecret, opts: Options{History: 2 * time.Hour, Version: "v1.2.3"}})
	n := e.ev.len()
	if status, _, _ := e.do(t, "POST", "/v1/tokens/beta/refresh", ""); status != 200 {
		t.Fatal(status)
	}
	_, m := e.ev.wait(t, n, tokenkeeper.EventSucceeded, "beta")
	// Planning runs after a refresh, on the keeper's scheduler: wait for the
	// plans that the statuses below report.
	e.ev.wait(t, m, tokenkeeper.EventScheduled, "beta")
	e.ev.wait(t, 0, tokenkeeper.EventScheduled, "alpha")
	e.do(t, "GET", "/v1/tokens/alpha", "") // some activity

	status, _, body := e.do(t, "GET", "/v1/tokens", "")
	if status != 200 {
		t.Fatal(status, body)
	}
	var list struct{ Tokens []TokenStatus }
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range list.Tokens {
		names = append(names, s.Name+":"+s.State)
		if !s.Ready || s.Breaker != "closed" || s.WindowStart.IsZero() || s.NextRefresh.IsZero() {
			t.Errorf("status %+v", s)
		}
	}
	if diff := cmp.Diff([]string{"alpha:valid", "beta:valid"}, names); diff != "" {
		t.Errorf("tokens (-want +got):\n%s", diff)
	}
	if status, _, _ := e.do(t, "GET", "/v1/tokens?x=1", ""); status != 400 {
		t.Errorf("query on list: %d", status)
	}

	status, _, body = e.do(t, "GET", "/v1/overview?minutes=30", "")
	if status != 200 {
		t.Fatal(status, body)
	}
	var ov overview
	if err := json.Unmarshal([]byte(body), &ov); err != nil {
		t.Fatal(err)
	}
	if ov.Version != "v1.2.3" || !ov.Ready || !ov.Auth || len(ov.Tokens) != 2 || ov.HistorySeconds != 7200 {
		t.Errorf("overview %+v", ov)
	}
	if len(ov.Activity.ActiveSeconds) != 30 || ov.Activity.StepSeconds != 60 || ov.Activity.ActiveSeconds[29] < 1 {
		t.Errorf("activity %+v", ov.Activity)
	}
	if got := ov.Activity.Start.Add(30 * time.Minute); got.Before(ov.Now) || got.Sub(ov.Now) > time.Minute {
		t.Errorf("activity starts %v, now %v", ov.Activity.Start, ov.Now)
	}
	if len(ov.Attempts) != 1 || ov.Attempts[0].Token != "beta" || !ov.Attempts[0].OK || ov.Attempts[0].Reason != "on-demand" {
		t.Errorf("attempts %+v", ov.Attempts)
	}
	if len(ov.Windows) < 2 {
		t.Errorf("windows %+v", ov.Windows)
	}
	if strings.Contains(body, "SECRET") {
		t.Error("token value in the overview")
	}
	for _, q := range []string{"?minutes=0", "?minutes=x", "?hours=1", "?minutes=1&minutes=2"} {
		if status, _, _ := e.do(t, "GET", "/v1/overview"+q, ""); status != 400 {
			t.Errorf("overview%s: %d", q, status)
		}
	}
	// More minutes than the history holds are capped.
	_, _, body = e.do(t, "GET", "/v1/overview?minutes=100000", "")
	json.Unmarshal([]byte(body), &ov)
	if len(ov.Activity.ActiveSeconds) != 120 {
		t.Errorf("%d minutes of activity, want 120", len(ov.Activity.ActiveSeconds))
	}
}

func TestHealthAndReady(t *testing.T) {
	e := newEnv(t, envConfig{secret: testSecret})
	if status, _, body := e.do(t, "GET", "/healthz", "", noAuth()); status != 200 || !strings.Contains(body, "ok") {
		t.Errorf("healthz %d %s", status, body)
	}
	if status, _, body := e.do(t, "GET", "/readyz", ""); status != 200 {
		t.Errorf("readyz %d %s", status, body)
	}
	block := make(chan struct{})
	defer close(block)
	e.add(t, "pending", 0, func(ctx context.Context, _ int64) (*oauth2.Token, error) {
		select {
		case <-block:
		case <-ctx.Done():
		}
		return nil, errors.New("not yet")
	})
	status, _, body := e.do(t, "GET", "/readyz", "")
	if status != 503 || errCode(t, body) != CodeNotReady || !strings.Contains(body, "pending") {
		t.Errorf("readyz with a token being fetched: %d %s", status, body)
	}
}

// TestNotReadyWithOnlyARefreshToken: a token that starts from a refresh
// token alone (the normal start of a user's session) is not ready until
// its first refresh brings an access token, although its state is
// "refreshing" meanwhile.
func TestNotReadyWithOnlyARefreshToken(t *testing.T) {
	e := newEnv(t, envConfig{secret: testSecret})
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	src := &source{name: "session", life: time.Hour}
	src.fn = func(ctx context.Context, n int64) (*oauth2.Token, error) {
		started <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return src.token(n, time.Now().Add(time.Hour)), nil
	}
	_, err := e.k.Add(tokenkeeper.TokenConfig{Name: "session", Source: src, Token: &oauth2.Token{RefreshToken: "SECRET-initial"}})
	if err != nil {
		t.Fatal(err)
	}
	<-started
	if st, _ := e.k.Handle("session"); st.Status().State != tokenkeeper.StateRefreshing {
		t.Fatalf("state %v while the first refresh runs", st.Status().State)
	}
	status, _, body := e.do(t, "GET", "/readyz", "")
	if status != 503 || !strings.Contains(body, "session (refreshing)") {
		t.Errorf("readyz during the first refresh: %d %s", status, body)
	}
	if _, _, body := e.do(t, "GET", "/v1/tokens", ""); !strings.Contains(body, `"name":"session","group":"token:session","state":"refreshing"`) ||
		strings.Count(body, `"ready":true`) != 2 {
		t.Errorf("list during the first refresh: %s", body)
	}
	from := e.ev.len()
	close(release)
	e.ev.wait(t, from, tokenkeeper.EventSucceeded, "session")
	if status, _, body := e.do(t, "GET", "/readyz", ""); status != 200 {
		t.Errorf("readyz after the first refresh: %d %s", status, body)
	}
}

func TestReadyStates(t *testing.T) {
	now := time.Now()
	for _, tt := range []struct {
		st   tokenkeeper.Status
		want bool
	}{
		{tokenkeeper.Status{State: tokenkeeper.StateValid, Issued: now, Expiry: now.Add(time.Hour)}, true},
		{tokenkeeper.Status{State: tokenkeeper.StateValid, Issued: now}, true},
		{tokenkeeper.Status{State: tokenkeeper.StateRefreshing, Issued: now, Expiry: now.Add(time.Minute)}, true},
		{tokenkeeper.Status{State: tokenkeeper.StateRefreshing}, false},
		// The first refresh of a token that holds only a refresh token.
		{tokenkeeper.Status{State: tokenkeeper.StateRefreshing, Issued: now}, false},
		// A token without expiry, refreshed before.
		{tokenkeeper.Status{State: tokenkeeper.StateRefreshing, Issued: now, Refreshes: 1}, true},
		{tokenkeeper.Status{State: tokenkeeper.StateDormant, Issued: now, Expiry: now.Add(time.Hour)}, true},
		{tokenkeeper.Status{State: tokenkeeper.StateRetrying, Issued: now, Expiry: now.Add(time.Hour)}, true},
		{tokenkeeper.Status{State: tokenkeeper.StateRetrying, Issued: now, Expiry: now.Add(-time.Second)}, false},
		{tokenkeeper.Status{State: tokenkeeper.StateExpired, Issued: now}, false},
		{tokenkeeper.Status{State: tokenkeeper.StateReauthRequired, Issued: now, Expiry: now.Add(time.Hour)}, false},
		{tokenkeeper.Status{State: tokenkeeper.StateEmpty}, false},
	} {
		if got := ready(tt.st, now); got != tt.want {
			t.Errorf("ready(%v) = %v", tt.st.State, got)
		}
	}
}

func TestStatusPage(t *testing.T) {
	e := newEnv(t, envConfig{secret: testSecret})
	status, hdr, body := e.do(t, "GET", "/", "", noAuth())
	if status != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/html") {
		t.Fatalf("%d %s", status, hdr.Get("Content-Type"))
	}
	csp := hdr.Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'sha256-") || !strings.Contains(csp, "style-src 'sha256-") ||
		!strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "connect-src 'self'") {
		t.Errorf("CSP %q", csp)
	}
	if hdr.Get("X-Frame-Options") != "DENY" {
		t.Error("page may be framed")
	}
	for _, want := range []string{`id="timeline"`, `id="tokens"`, "EventSource", "/v1/overview"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	// Self-contained: nothing is loaded from elsewhere.
	for _, bad := range []string{"http://", "https://", "src=\"//", "@import"} {
		for _, line := range strings.Split(body, "\n") {
			if strings.Contains(line, bad) && !strings.Contains(line, "www.w3.org/2000/svg") {
				t.Errorf("page refers outside: %s", strings.TrimSpace(line))
			}
		}
	}
}

func TestMetrics(t *testing.T) {
	e := newEnv(t, envConfig{secret: testSecret, opts: Options{Version: "v9"},
		keeper: tokenkeeper.Config{Breaker: tokenkeeper.BreakerSettings{Failures: 1, OpenFor: time.Minute}}})
	e.add(t, "broken", time.Hour, func(context.Context, int64) (*oauth2.Token, error) {
		return nil, errors.New("provider down")
	})
	e.add(t, "revoked", time.Hour, func(context.Context, int64) (*oauth2.Token, error) {
		return nil, &tokenkeeper.RefreshError{Code: "invalid_grant", Permanent: true}
	})
	n := e.ev.len()
	e.do(t, "POST", "/v1/tokens/alpha/refresh", "")
	e.do(t, "POST", "/v1/tokens/broken/refresh", "")
	e.do(t, "POST", "/v1/tokens/revoked/refresh", "")
	e.do(t, "GET", "/v1/tokens/beta", "")
	e.ev.wait(t, n, tokenkeeper.EventBreaker, "broken")
	e.ev.wait(t, n, tokenkeeper.EventReauthRequired, "revoked")

	status, hdr, body := e.do(t, "GET", "/metrics", "")
	if status != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") {
		t.Fatalf("%d %s", status, hdr.Get("Content-Type"))
	}
	for _, want := range []string{
		`tokenkeeper_refreshes_total{result="success",token="alpha"} 1`,
		`tokenkeeper_refreshes_total{result="failure",token="broken"} 1`,
		`tokenkeeper_refreshes_total{result="permanent_failure",token="revoked"} 1`,
		`tokenkeeper_refresh_duration_seconds_count{result="success",token="alpha"} 1`,
		`tokenkeeper_breaker_transitions_total{group="token:broken",state="open"} 1`,
		`tokenkeeper_breaker_state{group="token:broken",state="open"} 1`,
		`tokenkeeper_breaker_state{group="token:alpha",state="closed"} 1`,
		`tokenkeeper_token_state{state="valid",token="beta"} 1`,
		`tokenkeeper_token_state{state="reauth-required",token="revoked"} 1`,
		`tokenkeeper_token_expires_in_seconds{token="alpha"} 3`,
		`tokenkeeper_token_next_refresh_in_seconds{reason=`,
		`tokenkeeper_token_consecutive_failures{token="broken"} 1`,
		`tokenkeeper_agent_token_requests_total{result="cached"} 1`,
		`tokenkeeper_queue_depth 0`,
		`tokenkeeper_refreshes_running `,
		`tokenkeeper_worker_panics_total 0`,
		`tokenkeeper_events_dropped_total 0`,
		`tokenkeeper_agent_sse_dropped_total 0`,
		`tokenkeeper_events_total{kind="succeeded"}`,
		`tokenkeeper_agent_info{version="v9"} 1`,
		`go_goroutines `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(body, "SECRET") {
		t.Error("a token value in the metrics")
	}
	// Removing a token drops its series.
	n = e.ev.len()
	e.k.Remove("alpha")
	e.ev.wait(t, n, tokenkeeper.EventRemoved, "alpha")
	_, _, body = e.do(t, "GET", "/metrics", "")
	if strings.Contains(body, `token="alpha"`) {
		t.Error("series of a removed token remain")
	}
}

// sseEvent is one parsed server-sent event.
type sseEvent struct{ id, event, data string }

// readSSE parses server-sent events from r onto a channel, closed at EOF.
func readSSE(r io.Reader) <-chan sseEvent {
	ch := make(chan sseEvent, 64)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(r)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.event != "" || ev.data != "" {
					ch <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "id: "):
				ev.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.data = line[6:]
			}
		}
	}()
	return ch
}

func openEvents(t *testing.T, e *env, query string, hdr ...string) (*http.Response, <-chan sseEvent) {
	t.Helper()
	req, _ := http.NewRequest("GET", e.ts.URL+"/v1/events"+query, nil)
	req.Header.Set("Authorization", "Bearer "+testSecret)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return resp, readSSE(resp.Body)
}

func next(t *testing.T, ch <-chan sseEvent, kind string) sseEvent {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("stream ended before a %s event", kind)
			}
			if strings.Contains(ev.data, "SECRET") {
				t.Fatalf("token value in an event: %s", ev.data)
			}
			if ev.event == kind {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %s event within 10s", kind)
		}
	}
}

func TestEventStream(t *testing.T) {
	e := newEnv(t, envConfig{secret: testSecret})
	_, all := openEvents(t, e, "")
	_, onlyBeta := openEvents(t, e, "?token=beta")
	e.do(t, "POST", "/v1/tokens/alpha/refresh", "")
	e.do(t, "POST", "/v1/tokens/beta/refresh", "")

	ev := next(t, all, "succeeded")
	var j EventJSON
	if err := json.Unmarshal([]byte(ev.data), &j); err != nil {
		t.Fatal(err)
	}
	if j.Token != "alpha" || j.Kind != "succeeded" || j.Seq == 0 || j.Expiry.IsZero() || ev.id == "" {
		t.Errorf("event %+v (id %q)", j, ev.id)
	}
	ev = next(t, onlyBeta, "succeeded")
	json.Unmarshal([]byte(ev.data), &j)
	if j.Token != "beta" {
		t.Errorf("filtered stream sent %+v", j)
	}

	// A reconnecting client gets what it missed.
	_, replay := openEvents(t, e, "?token=alpha", "Last-Event-ID", "0")
	ev = next(t, replay, "started")
	json.Unmarshal([]byte(ev.data), &j)
	if j.Token != "alpha" {
		t.Errorf("replayed %+v", j)
	}

	// Close ends every stream.
	e.s.Close()
	for _, ch := range []<-chan sseEvent{all, onlyBeta, replay} {
		next(t, ch, "close")
		for range ch { // drained until EOF
		}
	}
	status, _, body := e.do(t, "GET", "/v1/events", "")
	if status != 503 || errCode(t, body) != CodeClosed {
		t.Errorf("events after Close: %d %s", status, body)
	}
}

func TestEventStreamBadRequests(t *testing.T) {
	e := newEnv(t, envConfig{secret: testSecret})
	if status, _, _ := e.do(t, "GET", "/v1/events?kind=x", ""); status != 400 {
		t.Errorf("unknown parameter: %d", status)
	}
	if status, _, _ := e.do(t, "GET", "/v1/events", "", withHeader("Last-Event-ID", "x")); status != 400 {
		t.Errorf("bad Last-Event-ID: %d", status)
	}
}

func TestHubLaggingSubscriber(t *testing.T) {
	e := newEnv(t, envConfig{secret: testSecret, noStart: true})
	h := e.s.hub
	sub := &subscriber{ch: make(chan frame, subBuffer), lagged: make(chan struct{})}
	h.subscribe(sub, 0, false)
	defer h.unsubscribe(sub)
	for range subBuffer + 5 {
		e.s.Event(tokenkeeper.Event{Kind: tokenkeeper.EventScheduled, Token: "x", Time: time.Now()})
	}
	select {
	case <-sub.lagged:
	default:
		t.Fatal("a full subscriber was not marked as lagging")
	}
	_, _, body := e.do(t, "GET", "/metrics", "")
	if !strings.Contains(body, "tokenkeeper_agent_sse_dropped_total 1") {
		t.Error("dropped stream not counted")
	}
	// Replay is bounded by the ring.
	late := &subscriber{ch: make(chan frame, 1), lagged: make(chan struct{})}
	for range ringSize {
		e.s.Event(tokenkeeper.Event{Kind: tokenkeeper.EventScheduled, Token: "y", Time: time.Now()})
	}
	backlog := h.subscribe(late, 1, true)
	h.unsubscribe(late)
	if len(backlog) != ringSize || backlog[0].seq != h.seq-ringSize+1 {
		t.Errorf("backlog of %d from %d", len(backlog), backlog[0].seq)
	}
}

func TestHistoryBounds(t *testing.T) {
	h := newHistory(time.Hour)
	t0 := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	for i := range 10 {
		h.event(tokenkeeper.Event{Kind: tokenkeeper.EventSucceeded, Token: "a", Time: t0.Add(time.Duration(i) * 20 * time.Minute)})
	}
	h.event(tokenkeeper.Event{Kind: tokenkeeper.EventFailed, Token: "a", Time: t0.Add(200 * time.Minute), Err: errors.New("x")})
	att, _ := h.since(time.Time{})
	if len(att) != 4 || att[3].OK || att[3].Error != "x" {
		t.Errorf("attempts kept: %+v", att)
	}
	// Windows: a re-planned window replaces the last; a new one is added;
	// old ones expire.
	st := func(start, end time.Duration) []tokenkeeper.Status {
		return []tokenkeeper.Status{{Name: "a", WindowStart: t0.Add(start), WindowEnd: t0.Add(end)}, {Name: "b"}}
	}
	h.windows(st(40*time.Minute, 45*time.Minute), t0)
	h.windows(st(38*time.Minute, 45*time.Minute), t0)
	h.windows(st(100*time.Minute, 105*time.Minute), t0)
	_, ws := h.since(t0)
	if diff := cmp.Diff([]window{
		{Token: "a", Start: t0.Add(38 * time.Minute), End: t0.Add(45 * time.Minute)},
		{Token: "a", Start: t0.Add(100 * time.Minute), End: t0.Add(105 * time.Minute)},
	}, ws); diff != "" {
		t.Errorf("windows (-want +got):\n%s", diff)
	}
	h.windows(st(200*time.Minute, 205*time.Minute), t0.Add(150*time.Minute))
	if _, ws := h.since(time.Time{}); len(ws) != 2 || !ws[0].Start.Equal(t0.Add(100*time.Minute)) {
		t.Errorf("old window kept: %+v", ws)
	}
	h.event(tokenkeeper.Event{Kind: tokenkeeper.EventRemoved, Token: "a"})
	if _, ws := h.since(time.Time{}); len(ws) != 0 {
		t.Errorf("windows of a removed token: %+v", ws)
	}

	// The windows come from the plans' events; a plan made outside the
	// planner (a retry) has none.
	plan := func(start, end time.Duration) tokenkeeper.Event {
		ev := tokenkeeper.Event{Kind: tokenkeeper.EventScheduled, Token: "c", Time: t0, At: t0.Add(start), Reason: "wait-idle"}
		if end > 0 {
			ev.WindowStart, ev.WindowEnd = t0.Add(start), t0.Add(end)
		}
		return ev
	}
	h.event(plan(10*time.Minute, 15*time.Minute))
	h.event(plan(11*time.Minute, 0))
	h.event(plan(8*time.Minute, 15*time.Minute))
	h.event(plan(70*time.Minute, 75*time.Minute))
	_, ws = h.since(t0)
	if diff := cmp.Diff([]window{
		{Token: "c", Start: t0.Add(8 * time.Minute), End: t0.Add(15 * time.Minute)},
		{Token: "c", Start: t0.Add(70 * time.Minute), End: t0.Add(75 * time.Minute)},
	}, ws); diff != "" {
		t.Errorf("windows from events (-want +got):\n%s", diff)
	}
}

func TestNewOptions(t *testing.T) {
	k, err := tokenkeeper.New(tokenkeeper.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	for _, o := range []Options{
		{},
		{Keeper: k, History: -time.Second},
		{Keeper: k, WaitTimeout: -time.Second},
		{Keeper: k, Secret: "has space"},
		{Keeper: k, Secret: "line\nbreak"},
	} {
		if s, err := New(o); err == nil {
			s.Close()
			t.Errorf("New(%+v) succeeded", o)
		}
	}
	s, err := New(Options{Keeper: k, History: 48 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.history != MaxHistory || s.wait != DefaultWaitTimeout || s.version != "devel" || s.Registry() == nil {
		t.Errorf("defaults: history %v wait %v version %q", s.history, s.wait, s.version)
	}
	s.Close() // idempotent
}

func TestLogsHoldNoSecrets(t *testing.T) {
	e := newEnv(t, envConfig{secret: testSecret, noStart: true})
	e.add(t, "broken", 0, func(context.Context, int64) (*oauth2.Token, error) {
		return nil, errors.New("provider down")
	})
	e.add(t, "ok", time.Hour, nil)
	e.do(t, "GET", "/v1/tokens/broken", "")
	e.do(t, "GET", "/v1/tokens/ok", "", withHeader("Authorization", "Bearer wrong-"+testSecret))
	e.do(t, "GET", "/v1/tokens/ok", "", withHost("evil.example"))
	e.do(t, "GET", "/v1/tokens/ok?min_valid=x", "")
	e.do(t, "GET", "/v1/tokens/ok", "")
	logs := e.logs.String()
	for _, want := range []string{"request refused", "request failed"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
	// newEnv's cleanup scans the logs for token values and the secret.
}

func TestPageLink(t *testing.T) {
	for _, tt := range []struct{ base, secret, want string }{
		{"http://127.0.0.1:8377", "abc", "http://127.0.0.1:8377/#secret=abc"},
		{"http://127.0.0.1:8377/", "a+b", "http://127.0.0.1:8377/#secret=a%2Bb"},
		{"http://localhost:1", "", "http://localhost:1/"},
	} {
		if got := PageLink(tt.base, tt.secret); got != tt.want {
			t.Errorf("PageLink(%q, %q) = %q, want %q", tt.base, tt.secret, got, tt.want)
		}
	}
}

func TestStartReason(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	h := newHistory(time.Hour)
	// A refresh the planner chose: scheduled for now with a refresh reason.
	h.event(tokenkeeper.Event{Kind: tokenkeeper.EventScheduled, Token: "a", At: t0, Reason: "idle", Time: t0})
	h.event(tokenkeeper.Event{Kind: tokenkeeper.EventStarted, Token: "a", Time: t0.Add(10 * time.Millisecond)})
	h.event(tokenkeeper.Event{Kind: tokenkeeper.EventSucceeded, Token: "a", Time: t0.Add(time.Second)})
	// Then planned for later, but forced now.
	h.event(tokenkeeper.Event{Kind: tokenkeeper.EventScheduled, Token: "a", At: t0.Add(time.Hour), Reason: "window-opens", Time: t0})
	h.event(tokenkeeper.Event{Kind: tokenkeeper.EventStarted, Token: "a", Time: t0.Add(2 * time.Second)})
	h.event(tokenkeeper.Event{Kind: tokenkeeper.EventFailed, Token: "a", Time: t0.Add(3 * time.Second)})
	// A token never planned.
	h.event(tokenkeeper.Event{Kind: tokenkeeper.EventSucceeded, Token: "b", Time: t0.Add(4 * time.Second)})
	att, _ := h.since(time.Time{})
	var got []string
	for _, a := range att {
		got = append(got, a.Token+":"+a.Reason)
	}
	if diff := cmp.Diff([]string{"a:idle", "a:on-demand", "b:on-demand"}, got); diff != "" {
		t.Errorf("reasons (-want +got):\n%s", diff)
	}
}

// TestOverviewRecentActivity: the overview carries the activity of each
// recent second, as runs of active seconds that match what was recorded.
func TestOverviewRecentActivity(t *testing.T) {
	e := newEnv(t, envConfig{secret: testSecret, noStart: true}) // no tokens: no fetches count as activity
	base := time.Now().Truncate(time.Second).Add(-200*time.Second + 500*time.Millisecond)
	old := base.Add(-400 * time.Second).Truncate(time.Second) // beyond 5 minutes, within 15
	want := []time.Time{old}
	for _, off := range []int{0, 1, 2, 10, 20, 21, 22, 23, 24} {
		want = append(want, base.Add(time.Duration(off)*time.Second).Truncate(time.Second))
	}
	for _, at := range want { // in order: the keeper ignores a late, earlier second
		e.k.NoteActivityAt(at.Add(500 * time.Millisecond))
	}
	before := time.Now()
	e.k.NoteActivity()

	// active returns the active seconds that the runs of r name, and checks
	// the runs' shape.
	active := func(r recentJSON) []time.Time {
		t.Helper()
		var out []time.Time
		prev := -1
		for _, run := range r.Runs {
			if run[0] <= prev || run[1] <= run[0] || run[1] > r.Seconds {
				t.Errorf("runs %v out of order or range (%d seconds)", r.Runs, r.Seconds)
			}
			prev = run[1]
			for i := run[0]; i < run[1]; i++ {
				out = append(out, r.Start.Add(time.Duration(i)*time.Second))
			}
		}
		return out
	}
	for _, tc := range []struct {
		query   string
		seconds int
		want    []time.Time
	}{
		{"?minutes=5", 300, want[1:]},
		{"", 900, want}, // the default (6 h) is capped at 15 minutes
		{"?minutes=15", 900, want},
	} {
		status, _, body := e.do(t, "GET", "/v1/overview"+tc.query, "")
		if status != 200 {
			t.Fatal(status, body)
		}
		var ov overview
		if err := json.Unmarshal([]byte(body), &ov); err != nil {
			t.Fatal(err)
		}
		r := ov.Activity.Recent
		if r.Seconds != tc.seconds || !r.Start.Equal(r.Start.Truncate(time.Second)) {
			t.Fatalf("%s: recent activity covers %d seconds from %v, want %d whole seconds", tc.query, r.Seconds, r.Start, tc.seconds)
		}
		// The period ends with the second of the answer.
		if last := r.Start.Add(time.Duration(r.Seconds-1) * time.Second); !last.Equal(ov.Now.Truncate(time.Second)) &&
			!last.Equal(ov.Now.Truncate(time.Second).Add(-time.Second)) {
			t.Errorf("%s: recent activity ends with the second %v, now %v", tc.query, last, ov.Now)
		}
		got := active(r)
		// The last active second is NoteActivity's: the current one, or
		// the one before (the keeper's hot-path clock may lag a tick).
		if n := len(got); n == 0 || got[n-1].Before(before.Truncate(time.Second).Add(-time.Second)) || got[n-1].After(ov.Now) {
			t.Errorf("%s: no activity now (%v) in %v", tc.query, before, got)
		} else {
			got = got[:n-1]
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s: active seconds (-want +got):\n%s\nruns %v from %v", tc.query, diff, r.Runs, r.Start)
		}
	}
	// On the wire, the runs are pairs of second offsets from start.
	_, _, body := e.do(t, "GET", "/v1/overview?minutes=5", "")
	var ov struct {
		Activity struct {
			Recent struct {
				Start time.Time `json:"start"`
			} `json:"recent"`
		} `json:"activity"`
	}
	if err := json.Unmarshal([]byte(body), &ov); err != nil {
		t.Fatal(err)
	}
	o := int(want[1].Sub(ov.Activity.Recent.Start) / time.Second)
	if wantRuns := fmt.Sprintf(`"active_runs":[[%d,%d],[%d,%d],[%d,%d],`, o, o+3, o+10, o+11, o+20, o+25); !strings.Contains(body, wantRuns) {
		t.Errorf("active runs not %s... in %s", wantRuns, body)
	}
}

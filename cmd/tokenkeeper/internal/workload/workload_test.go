package workload

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper/cmd/tokenkeeper/internal/client"
)

// fakeAgent answers token requests; token "slow" takes 80 ms, token "bad"
// fails; activity reports are counted.
func fakeAgent(t *testing.T) (*client.Client, *atomic.Int64) {
	var activity atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v1/activity":
			activity.Add(1)
			w.WriteHeader(204)
		case r.URL.Path == "/v1/tokens/bad":
			w.WriteHeader(404)
			w.Write([]byte(`{"error":"unknown token","code":"unknown_token"}`))
		case strings.HasPrefix(r.URL.Path, "/v1/tokens/"):
			if strings.HasSuffix(r.URL.Path, "/slow") {
				time.Sleep(80 * time.Millisecond) // a token that had to be refreshed
			}
			w.Write([]byte(`{"access_token":"` + strings.TrimPrefix(r.URL.Path, "/v1/tokens/") + `","token_type":"Bearer"}`))
		}
	}))
	t.Cleanup(ts.Close)
	c := client.New("tcp", ts.Listener.Addr().String(), "")
	t.Cleanup(c.Close)
	return c, &activity
}

func fast(cfg Config) Config {
	cfg.SessionMin, cfg.SessionMax = 40*time.Millisecond, 60*time.Millisecond
	cfg.GapMin, cfg.GapMax = 30*time.Millisecond, 40*time.Millisecond
	cfg.ThinkMin, cfg.ThinkMax = 2*time.Millisecond, 5*time.Millisecond
	cfg.Seed = 1
	return cfg
}

func TestSessionsAndGaps(t *testing.T) {
	c, activity := fakeAgent(t)
	var calls, auth atomic.Int64
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.Header.Get("Authorization") == "Bearer b" {
			auth.Add(1)
		}
		switch r.Header.Get("Authorization") {
		case "Bearer rejected":
			w.WriteHeader(401)
		case "Bearer broken":
			w.WriteHeader(500)
		}
	}))
	defer api.Close()

	var mu sync.Mutex
	var sessions []Session
	sawBusy := make(chan struct{}, 1)
	w := New(fast(Config{Client: c, Tokens: []string{"a", "b", "slow", "bad", "rejected", "broken"}, API: api.URL,
		OnSession: func(s Session) {
			mu.Lock()
			sessions = append(sessions, s)
			mu.Unlock()
		}}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	go func() {
		for ctx.Err() == nil {
			if busy, _ := w.Busy(); busy {
				sawBusy <- struct{}{}
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(sessions)
		mu.Unlock()
		st := w.Stats()
		if n >= 3 && st.SlowFetches > 0 && st.FetchErrors > 0 && st.APIRejected > 0 && st.APIErrors > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10s: %d sessions, stats %+v", n, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	<-sawBusy
	if busy, since := w.Busy(); busy || since.IsZero() {
		t.Errorf("after Run: busy %v since %v", busy, since)
	}
	st := w.Stats()
	if st.Sessions < 3 || st.Fetches < st.Sessions || st.MaxFetch < SlowFetch || st.APICalls == 0 || st.LastError == "" {
		t.Errorf("stats = %+v", st)
	}
	if int(calls.Load()) != st.APICalls || auth.Load() == 0 {
		t.Errorf("API saw %d calls, stats say %d", calls.Load(), st.APICalls)
	}
	if activity.Load() < int64(len(sessions)) {
		t.Errorf("%d activity reports for %d sessions", activity.Load(), len(sessions))
	}
	mu.Lock()
	defer mu.Unlock()
	for _, s := range sessions {
		if s.N < 1 || s.Duration < 40*time.Millisecond || s.NextGap < 30*time.Millisecond || s.NextGap >= 40*time.Millisecond {
			t.Errorf("session %+v", s)
		}
	}
}

func TestDefaultsAndUnreachableAPI(t *testing.T) {
	c, _ := fakeAgent(t)
	w := New(Config{Client: c, Tokens: []string{"a"}})
	if w.cfg.SessionMin != 4*time.Second || w.cfg.GapMax != 30*time.Second || w.cfg.ThinkMin != 80*time.Millisecond || w.cfg.HTTPClient == nil {
		t.Errorf("defaults: %+v", w.cfg)
	}
	if w.between(5, 5) != 5 {
		t.Error("between with an empty range")
	}
	// An API nobody listens on: each call is an API error.
	w = New(fast(Config{Client: c, Tokens: []string{"a"}, API: "http://127.0.0.1:1/"}))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	w.Run(ctx)
	if st := w.Stats(); st.APIErrors == 0 || st.APIErrors != st.APICalls {
		t.Errorf("stats = %+v", st)
	}
	bad := New(fast(Config{Client: c, Tokens: []string{"a"}, API: "http://a b/"}))
	if bad.action(context.Background(), "a") {
		t.Error("action with an unusable API URL succeeded")
	}
}

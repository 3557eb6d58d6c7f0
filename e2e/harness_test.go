package e2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"golang.org/x/oauth2"
)

// memStore is a tokenkeeper.Store that remembers when each access token was
// saved. The keeper saves a token before it publishes it, so the saving time
// bounds the moment the token became available to callers from below.
type memStore struct {
	mu      sync.Mutex
	cur     map[string]*oauth2.Token
	savedAt map[string]time.Time // access token -> when saved
}

func newMemStore() *memStore {
	return &memStore{cur: map[string]*oauth2.Token{}, savedAt: map[string]time.Time{}}
}

func (m *memStore) Load(_ context.Context, name string) (*oauth2.Token, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t, ok := m.cur[name]; ok {
		return t, nil
	}
	return nil, tokenkeeper.ErrNotFound
}

func (m *memStore) Save(_ context.Context, name string, tok *oauth2.Token) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cur[name] = tok
	if _, ok := m.savedAt[tok.AccessToken]; !ok {
		m.savedAt[tok.AccessToken] = time.Now()
	}
	return nil
}

func (m *memStore) Delete(_ context.Context, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.cur, name)
	return nil
}

func (m *memStore) current(name string) *oauth2.Token {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cur[name]
}

func (m *memStore) saved(access string) (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.savedAt[access]
	return t, ok
}

// events collects a keeper's events.
type events struct {
	mu  sync.Mutex
	all []tokenkeeper.Event
}

func (e *events) add(ev tokenkeeper.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.all = append(e.all, ev)
}

func (e *events) of(kind tokenkeeper.EventKind) []tokenkeeper.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []tokenkeeper.Event
	for _, ev := range e.all {
		if ev.Kind == kind {
			out = append(out, ev)
		}
	}
	return out
}

// call is one request made through the interceptor.
type call struct {
	start    time.Time // the caller called Do
	sent     time.Time // the first attempt reached the network transport
	auth     string    // its Authorization header
	attempts int
	status   int
	err      error
	done     time.Time
}

type callKey struct{}

// observer sits between the interceptor and the network: it records when
// each call's first attempt leaves, with which token, and how many attempts
// there were.
type observer struct {
	base http.RoundTripper
	mu   sync.Mutex
}

func (o *observer) RoundTrip(r *http.Request) (*http.Response, error) {
	if c, ok := r.Context().Value(callKey{}).(*call); ok {
		o.mu.Lock()
		if c.attempts == 0 {
			c.sent = time.Now()
			c.auth = r.Header.Get("Authorization")
		}
		c.attempts++
		o.mu.Unlock()
	}
	return o.base.RoundTrip(r)
}

// load sends GET requests to url through client from workers goroutines,
// each pausing pace between requests, until done reports true (checked
// every 20 ms) or limit passes. It returns every call.
func load(t *testing.T, client *http.Client, obs *observer, url string, workers int, pace, limit time.Duration, done func(n int) bool) []*call {
	t.Helper()
	var (
		mu    sync.Mutex
		calls []*call
		stop  atomic.Bool
		wg    sync.WaitGroup
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Spread the workers over the pace.
			time.Sleep(pace * time.Duration(w) / time.Duration(workers))
			for !stop.Load() {
				c := &call{start: time.Now()}
				ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), callKey{}, c), 10*time.Second)
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				resp, err := client.Do(req)
				c.done = time.Now()
				if err == nil {
					c.status = resp.StatusCode
					_ = resp.Body.Close()
				}
				cancel()
				obs.mu.Lock()
				c.err = err
				obs.mu.Unlock()
				mu.Lock()
				calls = append(calls, c)
				mu.Unlock()
				time.Sleep(pace)
			}
		}()
	}
	deadline := time.Now().Add(limit)
	for {
		mu.Lock()
		n := len(calls)
		mu.Unlock()
		if done(n) {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("load did not reach its goal within %v (%d calls)", limit, n)
			break
		}
		time.Sleep(20 * time.Millisecond) // polling in a real-time test
	}
	stop.Store(true)
	wg.Wait()
	obs.mu.Lock()
	defer obs.mu.Unlock()
	return slices.Clone(calls)
}

// waitReport checks the calls that found a token at once. A call waited for
// a refresh exactly when its first attempt carried a token that the keeper
// saved (and so published) after the call had started; slack absorbs the
// microseconds between a hot-path fetch and a publication that races it.
// It returns the number of such calls and the acquisition latencies (call
// start to first attempt sent) of all calls that sent a request.
func waitReport(calls []*call, store *memStore, slack time.Duration, exclude func(*call) bool) (waited int, lat []time.Duration, examples []string) {
	for _, c := range calls {
		if c.attempts == 0 || exclude != nil && exclude(c) {
			continue
		}
		lat = append(lat, c.sent.Sub(c.start))
		tok := c.auth[len("Bearer "):]
		if at, ok := store.saved(tok); ok && at.Sub(c.start) > slack {
			waited++
			if len(examples) < 5 {
				examples = append(examples, fmt.Sprintf("call started %s, token saved %v later", c.start.Format("15:04:05.000"), at.Sub(c.start)))
			}
		}
	}
	slices.Sort(lat)
	return waited, lat, examples
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p)
	return sorted[i]
}

// summarize counts outcomes.
func summarize(calls []*call) (ok, status401, otherStatus, errs, retried int) {
	for _, c := range calls {
		switch {
		case c.err != nil:
			errs++
		case c.status == http.StatusOK:
			ok++
		case c.status == http.StatusUnauthorized:
			status401++
		default:
			otherStatus++
		}
		if c.attempts > 1 {
			retried++
		}
	}
	return
}

// waitFor polls cond every 10 ms until it holds or limit passes.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(10 * time.Millisecond) // polling in a real-time test
	}
}

package tokenkeeper

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/oauth2"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// call is one recorded call to a fakeSource.
type call struct {
	at  time.Time
	cur *oauth2.Token
}

// fakeSource records its calls and answers with fn (or a fresh token with
// the given lifetime).
type fakeSource struct {
	mu       sync.Mutex
	calls    []call
	lifetime time.Duration
	fn       func(ctx context.Context, n int, cur *oauth2.Token) (*oauth2.Token, error)
}

func (s *fakeSource) Refresh(ctx context.Context, cur *oauth2.Token) (*oauth2.Token, error) {
	s.mu.Lock()
	s.calls = append(s.calls, call{at: time.Now(), cur: cur})
	n := len(s.calls)
	fn := s.fn
	s.mu.Unlock()
	if fn != nil {
		return fn(ctx, n, cur)
	}
	return newTok(fmt.Sprintf("access-%d", n), time.Now().Add(s.life())), nil
}

func (s *fakeSource) life() time.Duration {
	if s.lifetime == 0 {
		return time.Hour
	}
	return s.lifetime
}

func (s *fakeSource) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.calls)
}

func (s *fakeSource) times() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]time.Time, len(s.calls))
	for i, c := range s.calls {
		out[i] = c.at
	}
	return out
}

func newTok(access string, exp time.Time) *oauth2.Token {
	return &oauth2.Token{AccessToken: access, TokenType: "Bearer", RefreshToken: "refresh-" + access, Expiry: exp}
}

// newKeeper starts a keeper for a test (inside a synctest bubble when
// called from one) and closes it at the end.
func newKeeper(t *testing.T, cfg Config) *Keeper {
	t.Helper()
	if cfg.Location == nil {
		cfg.Location = time.UTC
	}
	k, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

// eventLog collects events.
type eventLog struct {
	mu sync.Mutex
	ev []Event
}

func (l *eventLog) add(e Event) {
	l.mu.Lock()
	l.ev = append(l.ev, e)
	l.mu.Unlock()
}

func (l *eventLog) kinds(k EventKind) []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Event
	for _, e := range l.ev {
		if e.Kind == k {
			out = append(out, e)
		}
	}
	return out
}

func noJitter() *Policy { return &Policy{NoJitter: true} }

var _ = os.Getenv

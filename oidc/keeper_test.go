package oidc

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"golang.org/x/oauth2"
)

// memStore is a tokenkeeper.Store that remembers every access token it
// was given.
type memStore struct {
	mu    sync.Mutex
	cur   map[string]*oauth2.Token
	saved map[string]bool
}

func newMemStore() *memStore {
	return &memStore{cur: map[string]*oauth2.Token{}, saved: map[string]bool{}}
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
	m.saved[tok.AccessToken] = true
	return nil
}

func (m *memStore) Delete(_ context.Context, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.cur, name)
	return nil
}

func (m *memStore) wasSaved(access string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.saved[access]
}

// eventLog collects a keeper's events.
type eventLog struct {
	mu     sync.Mutex
	events []tokenkeeper.Event
}

func (l *eventLog) add(e tokenkeeper.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

func (l *eventLog) count(kind tokenkeeper.EventKind) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.events {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

// The keeper and the Source together: a rotating refresh token is renewed
// in the background for ten (virtual) minutes, every token handed out was
// saved first, and the server never sees a reuse.
func TestKeeperWithRotation(t *testing.T) {
	tests := []struct {
		name      string
		lifetime  int
		refreshIn int
		min, max  int           // refreshes expected in 10 minutes
		opens     time.Duration // refresh window's start after issue
	}{
		// Window from L/3 to L/4 before expiry (20 s to 15 s): busy all
		// the time, the token is refreshed at the window's end, every 45 s.
		{"expires_in 60", 60, 0, 13, 15, 40 * time.Second},
		// refresh_in opens the window at 30 s after issue.
		{"refresh_in 30", 60, 30, 13, 15, 30 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				idp := newFakeIdP()
				idp.lifetime = tt.lifetime
				idp.refreshIn = tt.refreshIn
				idp.issuer = "https://idp.example"
				store := newMemStore()
				var events eventLog
				k, err := tokenkeeper.New(tokenkeeper.Config{Store: store, OnEvent: events.add,
					Policy: tokenkeeper.Policy{NoJitter: true}})
				if err != nil {
					t.Fatal(err)
				}
				defer k.Close()
				src := mustNew(t, Config{ClientID: idp.clientID, ClientSecret: idp.secret,
					Issuer: "https://idp.example", HTTPClient: handlerClient(idp)})
				h, err := k.Add(tokenkeeper.TokenConfig{Name: "user", Source: src,
					Token: &oauth2.Token{RefreshToken: idp.grant()}})
				if err != nil {
					t.Fatal(err)
				}
				var last string
				changes := 0
				for range 600 {
					start := time.Now()
					tok, err := h.TokenContext(context.Background())
					if err != nil {
						t.Fatal(err)
					}
					if tok.AccessToken != last {
						changes++
						last = tok.AccessToken
						if changes > 1 && time.Since(start) != 0 {
							t.Errorf("a fetch waited %v for a refresh while a valid token existed", time.Since(start))
						}
					}
					if !store.wasSaved(tok.AccessToken) {
						t.Fatalf("token handed out before it was saved")
					}
					time.Sleep(time.Second)
				}
				requests, reuses := idp.stats()
				if st := h.Status(); st.WindowStart.Sub(st.Issued) != tt.opens {
					t.Errorf("window opens %v after issue, want %v", st.WindowStart.Sub(st.Issued), tt.opens)
				}
				if reuses != 0 {
					t.Errorf("server detected %d refresh-token reuses", reuses)
				}
				if requests < tt.min || requests > tt.max {
					t.Errorf("refreshes in 10 minutes = %d, want %d..%d", requests, tt.min, tt.max)
				}
				if f := events.count(tokenkeeper.EventFailed); f != 0 {
					t.Errorf("%d failed refreshes", f)
				}
			})
		})
	}
}

// A revoked grant ends in re-authentication, once, and no further attempt.
func TestKeeperRevokedGrant(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		idp := newFakeIdP()
		idp.lifetime = 60
		var events eventLog
		k, err := tokenkeeper.New(tokenkeeper.Config{OnEvent: events.add})
		if err != nil {
			t.Fatal(err)
		}
		defer k.Close()
		src := mustNew(t, Config{ClientID: idp.clientID, ClientSecret: idp.secret,
			Endpoint: oauth2.Endpoint{TokenURL: "https://idp.example/token"}, HTTPClient: handlerClient(idp)})
		h, err := k.Add(tokenkeeper.TokenConfig{Name: "user", Source: src, Token: &oauth2.Token{RefreshToken: idp.grant()}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.TokenContext(context.Background()); err != nil {
			t.Fatal(err)
		}
		idp.mu.Lock()
		for fam := 1; fam <= idp.next; fam++ {
			idp.revoked[fam] = true
		}
		idp.mu.Unlock()
		time.Sleep(5 * time.Minute)
		synctest.Wait()
		_, err = h.TokenContext(context.Background())
		if !errors.Is(err, tokenkeeper.ErrReauthRequired) {
			t.Fatalf("after revocation: %v, want ErrReauthRequired", err)
		}
		requests, _ := idp.stats()
		if requests != 2 {
			t.Errorf("token requests = %d, want 2 (one grant, one refused refresh)", requests)
		}
		if n := events.count(tokenkeeper.EventReauthRequired); n != 1 {
			t.Errorf("reauth events = %d, want 1", n)
		}
	})
}

// Client credentials tokens are fetched at first use and renewed ahead of
// expiry.
func TestKeeperClientCredentials(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		idp := newFakeIdP()
		idp.lifetime = 300
		k, err := tokenkeeper.New(tokenkeeper.Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer k.Close()
		src := mustNew(t, Config{Grant: GrantClientCredentials, ClientID: idp.clientID, ClientSecret: idp.secret,
			Endpoint: oauth2.Endpoint{TokenURL: "https://idp.example/token"}, HTTPClient: handlerClient(idp)})
		h, err := k.Add(tokenkeeper.TokenConfig{Name: "svc", Source: src})
		if err != nil {
			t.Fatal(err)
		}
		for range 60 {
			start := time.Now()
			if _, err := h.TokenContext(context.Background()); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d != 0 && h.Status().Refreshes > 1 {
				t.Errorf("fetch waited %v", d)
			}
			time.Sleep(30 * time.Second)
		}
		if n, _ := idp.stats(); n < 6 {
			t.Errorf("token requests in 30 minutes = %d, want at least 6", n)
		}
	})
}

// An unknown outcome without a grace period: the keeper keeps serving the
// valid access token and asks for re-authentication; the refresh token is
// never sent again.
func TestKeeperUnknownOutcome(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		idp := newFakeIdP()
		idp.lifetime = 60
		var lose bool
		var mu sync.Mutex
		inner := handlerClient(idp).Transport
		client := handlerClient(nil)
		client.Transport = roundTripper(func(r *http.Request) (*http.Response, error) {
			resp, err := inner.RoundTrip(r)
			mu.Lock()
			defer mu.Unlock()
			if lose && err == nil {
				resp.Body.Close()
				return nil, errors.New("connection reset by peer (simulated)")
			}
			return resp, err
		})
		var events eventLog
		k, err := tokenkeeper.New(tokenkeeper.Config{OnEvent: events.add})
		if err != nil {
			t.Fatal(err)
		}
		defer k.Close()
		src := mustNew(t, Config{ClientID: idp.clientID, ClientSecret: idp.secret,
			Endpoint: oauth2.Endpoint{TokenURL: "https://idp.example/token"}, HTTPClient: client})
		h, err := k.Add(tokenkeeper.TokenConfig{Name: "user", Source: src, Token: &oauth2.Token{RefreshToken: idp.grant()}})
		if err != nil {
			t.Fatal(err)
		}
		tok, err := h.TokenContext(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		lose = true
		mu.Unlock()
		time.Sleep(50 * time.Second) // the planned refresh ran and its answer was lost
		synctest.Wait()
		got, err := h.TokenContext(context.Background())
		if err != nil || got.AccessToken != tok.AccessToken {
			t.Errorf("still-valid token not served: %v", err)
		}
		time.Sleep(time.Minute)
		if _, err := h.TokenContext(context.Background()); !errors.Is(err, tokenkeeper.ErrReauthRequired) || !errors.Is(err, ErrOutcomeUnknown) {
			t.Errorf("after expiry: %v, want ErrReauthRequired wrapping ErrOutcomeUnknown", err)
		}
		requests, reuses := idp.stats()
		if requests != 2 || reuses != 0 {
			t.Errorf("requests %d reuses %d, want 2 and 0", requests, reuses)
		}
	})
}

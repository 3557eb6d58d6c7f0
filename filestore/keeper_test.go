package filestore_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/filestore"
	"golang.org/x/oauth2"
)

// journal is an ordered log of what happened to tokens, by access token.
type journal struct {
	mu      sync.Mutex
	entries []string
}

func (j *journal) add(format string, args ...any) {
	j.mu.Lock()
	j.entries = append(j.entries, fmt.Sprintf(format, args...))
	j.mu.Unlock()
}

func (j *journal) all() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.entries)
}

func (j *journal) index(e string) int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Index(j.entries, e)
}

// journaledStore notes each completed (durable) Save.
type journaledStore struct {
	*filestore.Store
	j *journal
}

func (s journaledStore) Save(ctx context.Context, name string, tok *oauth2.Token) error {
	err := s.Store.Save(ctx, name, tok)
	if err == nil {
		s.j.add("saved %s", tok.AccessToken)
	}
	return err
}

// rotatingSource issues a new access and refresh token at each refresh and
// accepts only the latest refresh token, like a server with refresh token
// rotation and reuse detection.
type rotatingSource struct {
	t      *testing.T
	j      *journal
	mu     sync.Mutex
	n      int
	latest string // the refresh token the server accepts
	seen   []string
}

func (s *rotatingSource) Refresh(_ context.Context, cur *oauth2.Token) (*oauth2.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur == nil || cur.RefreshToken != s.latest {
		got := "<nil>"
		if cur != nil {
			got = cur.RefreshToken
		}
		s.t.Errorf("refresh with %q, want the latest refresh token %q", got, s.latest)
		return nil, tokenkeeper.Permanent(fmt.Errorf("invalid_grant"))
	}
	s.seen = append(s.seen, cur.RefreshToken)
	s.n++
	s.latest = fmt.Sprintf("rt-%d", s.n)
	tok := (&oauth2.Token{
		AccessToken:  fmt.Sprintf("at-%d", s.n),
		TokenType:    "Bearer",
		RefreshToken: s.latest,
		Expiry:       time.Now().Add(time.Hour),
	}).WithExtra(map[string]any{"id_token": fmt.Sprintf("id-%d", s.n)})
	s.j.add("issued %s", tok.AccessToken)
	return tok, nil
}

// TestKeeperSavesBeforeHandingOut runs a real Keeper on a filestore: every
// token the keeper hands out was durably saved first, and after a restart
// the session resumes with the last rotated refresh token.
func TestKeeperSavesBeforeHandingOut(t *testing.T) {
	path := tempPath(t)
	opts := filestore.Options{Key: key(2)}
	j := &journal{}
	src := &rotatingSource{t: t, j: j, latest: "rt-0"}

	// The session starts from a refresh token put in the store by a login.
	st, err := filestore.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Save(t.Context(), "api", &oauth2.Token{RefreshToken: "rt-0"}); err != nil {
		t.Fatal(err)
	}
	var storeFailures []error
	var evMu sync.Mutex
	k, err := tokenkeeper.New(tokenkeeper.Config{
		Store:    journaledStore{st, j},
		Location: time.UTC,
		OnEvent: func(e tokenkeeper.Event) {
			if e.Kind == tokenkeeper.EventStoreFailed {
				evMu.Lock()
				storeFailures = append(storeFailures, e.Err)
				evMu.Unlock()
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Add(tokenkeeper.TokenConfig{Name: "api", Source: src}); err != nil {
		t.Fatal(err)
	}

	handOut := func(tok *oauth2.Token, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		handed := "handed " + tok.AccessToken
		j.add("%s", handed)
		saved := j.index("saved " + tok.AccessToken)
		if saved < 0 || saved > j.index(handed) {
			t.Fatalf("%s was handed out before it was saved: %q", tok.AccessToken, j.all())
		}
		// And it is what the file holds.
		got, err := st.Load(t.Context(), "api")
		if err != nil {
			t.Fatal(err)
		}
		if d := diffTokens(tok, got); d != "" {
			t.Errorf("store holds another token (-handed +stored):\n%s", d)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	handOut(k.Token(ctx, "api")) // the first refresh, from the stored refresh token
	const rotations = 5
	for range rotations {
		handOut(k.Refresh(ctx, "api"))
	}
	last, err := k.Token(ctx, "api")
	if err != nil {
		t.Fatal(err)
	}
	k.Close()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	evMu.Lock()
	if len(storeFailures) > 0 {
		t.Errorf("store failures: %v", storeFailures)
	}
	evMu.Unlock()
	if want := fmt.Sprintf("rt-%d", rotations+1); last.RefreshToken != want {
		t.Fatalf("last refresh token %q, want %q", last.RefreshToken, want)
	}

	// A fresh process: the file holds the last rotated refresh token, and a
	// new keeper resumes the session with it, no re-authentication.
	st2 := open(t, path, opts)
	got, err := st2.Load(t.Context(), "api")
	if err != nil {
		t.Fatal(err)
	}
	if d := diffTokens(last, got); d != "" {
		t.Errorf("after reopen (-last handed out +on disk):\n%s", d)
	}
	k2, err := tokenkeeper.New(tokenkeeper.Config{Store: st2, Location: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	defer k2.Close()
	if _, err := k2.Add(tokenkeeper.TokenConfig{Name: "api", Source: src}); err != nil {
		t.Fatal(err)
	}
	resumed, err := k2.Token(ctx, "api")
	if err != nil {
		t.Fatal(err)
	}
	if resumed.AccessToken != last.AccessToken {
		t.Errorf("restarted keeper hands out %q, want the stored %q", resumed.AccessToken, last.AccessToken)
	}
	next, err := k2.Refresh(ctx, "api")
	if err != nil {
		t.Fatal(err)
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	if src.seen[len(src.seen)-1] != last.RefreshToken || next.AccessToken != fmt.Sprintf("at-%d", rotations+2) {
		t.Errorf("resumed refresh used %q and gave %q", src.seen[len(src.seen)-1], next.AccessToken)
	}
	if len(src.seen) != rotations+2 || len(slices.Compact(slices.Clone(src.seen))) != len(src.seen) {
		t.Errorf("refresh tokens sent: %q, want each once", src.seen)
	}
}

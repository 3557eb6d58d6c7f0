package redisstore

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
	"github.com/tokenkeeper/tokenkeeper"
	"golang.org/x/oauth2"
)

var testKey = bytes.Repeat([]byte{7}, KeySize)

func tokenFields(t *oauth2.Token) map[string]any {
	if t == nil {
		return nil
	}
	return map[string]any{
		"access": t.AccessToken, "type": t.TokenType, "refresh": t.RefreshToken,
		"expiry": t.Expiry.UnixNano(), "id_token": t.Extra("id_token"),
	}
}

func TestNewValidates(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"short key", Options{Key: []byte("short")}, "Key must be 32 bytes"},
		{"negative ttl", Options{LockTTL: -time.Second}, "LockTTL is negative"},
		{"tiny ttl", Options{LockTTL: time.Millisecond}, "under 10ms"},
		{"negative poll", Options{PollInterval: -1}, "PollInterval is negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(c, tc.opts)
			if err == nil {
				s.Close()
				t.Fatal("New accepted invalid options")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
	if _, err := New(nil, Options{}); err == nil {
		t.Error("New accepted a nil client")
	}
}

func TestDefaults(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 50 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	s, err := New(c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	o := s.opts
	if o.Prefix != DefaultPrefix || o.LockTTL != DefaultLockTTL || o.PollInterval != time.Second ||
		o.ResyncInterval != DefaultResyncInterval || o.ProbeInterval != DefaultProbeInterval ||
		o.OpTimeout != DefaultOpTimeout || len(o.Extras) != len(DefaultExtras) {
		t.Errorf("defaults not applied: %+v", o)
	}
	if got := s.tokKey("a"); got != "tokenkeeper:{a}:tok" {
		t.Errorf("tokKey = %q", got)
	}
}

// A store whose Redis is unreachable starts degraded and says so.
func TestUnreachableIsDegraded(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 50 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	var log eventLog
	s, err := New(c, Options{ProbeInterval: 20 * time.Millisecond, OnEvent: log.add})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	eventually(t, 5*time.Second, "degraded", s.Degraded)
	if _, err := s.Load(context.Background(), "a"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Load: %v, want ErrUnavailable", err)
	}
	err = s.Save(context.Background(), "a", &oauth2.Token{AccessToken: "x"})
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("Save: %v, want ErrUnavailable", err)
	}
	st := s.Status()
	if !st.Degraded || st.Since.IsZero() || st.LastError == "" {
		t.Errorf("status %+v", st)
	}
	eventually(t, time.Second, "degraded event", func() bool { return log.count(EventDegraded) == 1 })
}

func TestLoadSaveDelete(t *testing.T) {
	srv := startRedis(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		key  []byte
	}{{"plain", nil}, {"encrypted", testKey}} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t, srv, Options{Prefix: "lsd-" + tc.name + ":", Key: tc.key})
			if _, err := s.Load(ctx, "a"); !errors.Is(err, tokenkeeper.ErrNotFound) {
				t.Fatalf("Load of nothing: %v, want ErrNotFound", err)
			}
			tok := (&oauth2.Token{AccessToken: "secret-access", TokenType: "Bearer", RefreshToken: "secret-refresh",
				Expiry: time.Now().Add(time.Hour).Round(0)}).WithExtra(map[string]any{"id_token": "secret-id", "other": "dropped"})
			if err := s.Save(ctx, "a", tok); err != nil {
				t.Fatal(err)
			}
			// Another process reads it back.
			s2 := newStore(t, srv, Options{Prefix: "lsd-" + tc.name + ":", Key: tc.key})
			got, err := s2.Load(ctx, "a")
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tokenFields(tok), tokenFields(got)); d != "" {
				t.Errorf("loaded token differs (-saved +loaded):\n%s", d)
			}
			if got.Extra("other") != nil {
				t.Error("an extra field not in Options.Extras was stored")
			}
			raw, err := s.c.HGet(ctx, s.tokKey("a"), "d").Bytes()
			if err != nil {
				t.Fatal(err)
			}
			leaks := bytes.Contains(raw, []byte("secret"))
			if tc.key != nil && leaks {
				t.Error("encrypted value contains a token in clear")
			}
			if tc.key == nil && !leaks {
				t.Error("plain value should be readable JSON")
			}
			if err := s.Delete(ctx, "a"); err != nil {
				t.Fatal(err)
			}
			if _, err := s2.Load(ctx, "a"); !errors.Is(err, tokenkeeper.ErrNotFound) {
				t.Fatalf("Load after Delete: %v, want ErrNotFound", err)
			}
			v, _ := s.c.HGet(ctx, s.tokKey("a"), "v").Int64()
			if v != 2 {
				t.Errorf("version after delete = %d, want 2 (a tombstone)", v)
			}
			if err := s.Delete(ctx, "a"); err != nil {
				t.Fatalf("second Delete: %v", err)
			}
			// Saved again after deletion, at the next version.
			if err := s.Save(ctx, "a", tok); err != nil {
				t.Fatal(err)
			}
			if v, _ := s.c.HGet(ctx, s.tokKey("a"), "v").Int64(); v != 3 {
				t.Errorf("version after re-save = %d, want 3", v)
			}
		})
	}
}

func TestEncryptionBindsNameAndVersion(t *testing.T) {
	srv := startRedis(t)
	ctx := context.Background()
	s := newStore(t, srv, Options{Prefix: "enc:", Key: testKey})
	tok1 := &oauth2.Token{AccessToken: "one", Expiry: time.Now().Add(time.Hour)}
	tok2 := &oauth2.Token{AccessToken: "two", Expiry: time.Now().Add(time.Hour)}
	if err := s.Save(ctx, "a", tok1); err != nil {
		t.Fatal(err)
	}
	old, _ := s.c.HGet(ctx, s.tokKey("a"), "d").Bytes()
	if err := s.Save(ctx, "a", tok2); err != nil {
		t.Fatal(err)
	}
	reader := newStore(t, srv, Options{Prefix: "enc:", Key: testKey})

	// A value moved to another name does not open.
	s.c.HSet(ctx, s.tokKey("b"), "v", 1, "d", old)
	if _, err := reader.Load(ctx, "b"); !errors.Is(err, ErrUndecodable) {
		t.Errorf("value moved to another name: %v, want ErrUndecodable", err)
	}
	// A value moved to another prefix does not open.
	cur2, _ := s.c.HGet(ctx, s.tokKey("a"), "d").Bytes()
	elsewhere := newStore(t, srv, Options{Prefix: "enc2:", Key: testKey})
	s.c.HSet(ctx, elsewhere.tokKey("a"), "v", 2, "d", cur2)
	if _, err := elsewhere.Load(ctx, "a"); !errors.Is(err, ErrUndecodable) {
		t.Errorf("value moved to another prefix: %v, want ErrUndecodable", err)
	}
	if _, err := reader.Load(ctx, "a"); err != nil {
		t.Errorf("the value itself: %v", err)
	}
	// An old value replayed at a newer version does not open.
	s.c.HSet(ctx, s.tokKey("a"), "d", old)
	if _, err := reader.Load(ctx, "a"); !errors.Is(err, ErrUndecodable) {
		t.Errorf("old value at a newer version: %v, want ErrUndecodable", err)
	}
	if st := reader.Status(); st.Errors == 0 {
		t.Error("decoding errors not counted")
	}
	// Another key, and no key, do not open it either; a plain value is
	// refused when a key is set.
	s.c.HSet(ctx, s.tokKey("c"), "v", 1, "d", old)
	other := newStore(t, srv, Options{Prefix: "enc:", Key: bytes.Repeat([]byte{8}, KeySize)})
	plain := newStore(t, srv, Options{Prefix: "enc:"})
	for _, st := range []*Store{other, plain} {
		if _, err := st.Load(ctx, "c"); !errors.Is(err, ErrUndecodable) {
			t.Errorf("wrong key: %v, want ErrUndecodable", err)
		}
	}
	if err := plain.Save(ctx, "p", tok1); err != nil {
		t.Fatal(err)
	}
	if _, err := reader.Load(ctx, "p"); !errors.Is(err, ErrUndecodable) {
		t.Errorf("plain value with a key set: %v, want ErrUndecodable", err)
	}
	// Errors never show the value.
	_, err := reader.Load(ctx, "p")
	if strings.Contains(err.Error(), "one") {
		t.Errorf("error shows the token: %v", err)
	}
}

func TestCodecRejectsGarbage(t *testing.T) {
	plain, _ := newCodec(nil, "p:", DefaultExtras)
	sealed, _ := newCodec(testKey, "p:", nil)
	for _, tc := range []struct {
		c   *codec
		raw string
	}{
		{plain, ""}, {plain, "x{}"}, {plain, "p{"}, {sealed, "s"}, {sealed, "sshort"},
	} {
		if _, err := tc.c.decode("a", 1, []byte(tc.raw)); !errors.Is(err, ErrUndecodable) {
			t.Errorf("decode(%q) = %v, want ErrUndecodable", tc.raw, err)
		}
	}
	if _, err := plain.encode("a", 1, (&oauth2.Token{AccessToken: "x"}).WithExtra(map[string]any{"id_token": func() {}})); err == nil {
		t.Error("encoding an unencodable extra succeeded")
	}
}

// Saving the stored token writes nothing; saving over a version another
// process moved on fails with ErrConflict and keeps the newer token.
func TestSaveIdempotentAndFenced(t *testing.T) {
	srv := startRedis(t)
	ctx := context.Background()
	a := newStore(t, srv, Options{Prefix: "fence:"})
	b := newStore(t, srv, Options{Prefix: "fence:"})
	t1 := &oauth2.Token{AccessToken: "t1", Expiry: time.Now().Add(time.Hour)}
	t2 := &oauth2.Token{AccessToken: "t2", Expiry: time.Now().Add(time.Hour)}
	t3 := &oauth2.Token{AccessToken: "t3", Expiry: time.Now().Add(time.Hour)}
	if err := a.Save(ctx, "x", t1); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Load(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	w := a.Status().Writes
	filled := *t1
	filled.RefreshToken = "filled-in-by-the-keeper"
	if err := a.Save(ctx, "x", &filled); err != nil {
		t.Fatal(err)
	}
	if got := a.Status().Writes; got != w {
		t.Errorf("saving the stored token wrote it again (%d writes, want %d)", got, w)
	}
	if err := a.Save(ctx, "x", t2); err != nil {
		t.Fatal(err)
	}
	err := b.Save(ctx, "x", t3) // b still believes version 1 is current
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("stale Save: %v, want ErrConflict", err)
	}
	got, err := a.Load(ctx, "x")
	if err != nil || got.AccessToken != "t2" {
		t.Fatalf("stored %v (%v), want t2", got, err)
	}
	if b.Status().Conflicts != 1 {
		t.Errorf("conflicts = %d, want 1", b.Status().Conflicts)
	}
}

func TestCloseIsIdempotent(t *testing.T) {
	srv := startRedis(t)
	s, err := New(srv.client(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s.Close()
	ctx := context.Background()
	if _, err := s.Load(ctx, "a"); !errors.Is(err, ErrClosed) {
		t.Errorf("Load after Close: %v", err)
	}
	if err := s.Save(ctx, "a", &oauth2.Token{AccessToken: "x"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Save after Close: %v", err)
	}
	if err := s.Delete(ctx, "a"); !errors.Is(err, ErrClosed) {
		t.Errorf("Delete after Close: %v", err)
	}
	if _, err := s.Coordinate(tokenkeeper.SourceFunc(nil), "a").Refresh(ctx, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Refresh after Close: %v", err)
	}
	k, _ := tokenkeeper.New(tokenkeeper.Config{})
	defer k.Close()
	if err := s.Attach(k); !errors.Is(err, ErrClosed) {
		t.Errorf("Attach after Close: %v", err)
	}
}

func TestOrder(t *testing.T) {
	now := time.Now()
	tok := func(a string, exp time.Duration) *oauth2.Token {
		return &oauth2.Token{AccessToken: a, Expiry: now.Add(exp)}
	}
	for _, tc := range []struct {
		name string
		st   stored
		cur  rel
		want int
	}{
		{"nothing stored", stored{}, rel{tok: tok("a", time.Hour)}, -1},
		{"nothing held", stored{version: 1, tok: tok("a", time.Hour)}, rel{}, +1},
		{"refresh-token-only held", stored{version: 1, tok: tok("a", time.Hour)}, rel{tok: &oauth2.Token{RefreshToken: "r"}}, +1},
		{"same", stored{version: 3, tok: tok("a", time.Hour)}, rel{tok: tok("a", time.Hour), version: 3, known: true}, 0},
		{"newer version", stored{version: 4, tok: tok("b", time.Minute)}, rel{tok: tok("a", time.Hour), version: 3, known: true}, +1},
		{"versions restarted, earlier expiry", stored{version: 1, tok: tok("b", time.Minute)}, rel{tok: tok("a", time.Hour), version: 3, known: true}, -1},
		{"versions restarted, later expiry", stored{version: 1, tok: tok("b", 2*time.Hour)}, rel{tok: tok("a", time.Hour), version: 3, known: true}, +1},
		{"unknown held, later stored", stored{version: 1, tok: tok("b", 2*time.Hour)}, rel{tok: tok("a", time.Hour)}, +1},
		{"unknown held, earlier stored", stored{version: 1, tok: tok("b", time.Minute)}, rel{tok: tok("a", time.Hour)}, -1},
		{"pending, fleet moved on", stored{version: 4, tok: tok("b", time.Minute)}, rel{tok: tok("a", time.Hour), version: 3, pending: true}, +1},
		{"pending, fleet did not", stored{version: 3, tok: tok("b", 2*time.Hour)}, rel{tok: tok("a", time.Hour), version: 3, pending: true}, -1},
		{"stored never expires", stored{version: 1, tok: &oauth2.Token{AccessToken: "b"}}, rel{tok: tok("a", time.Hour)}, +1},
		{"held never expires", stored{version: 1, tok: tok("b", time.Hour)}, rel{tok: &oauth2.Token{AccessToken: "a"}}, -1},
	} {
		if got := order(tc.st, tc.cur); got != tc.want {
			t.Errorf("%s: order = %d, want %d", tc.name, got, tc.want)
		}
	}
	if !sameToken(&oauth2.Token{RefreshToken: "r"}, &oauth2.Token{RefreshToken: "r"}) || sameToken(nil, &oauth2.Token{}) {
		t.Error("sameToken")
	}
	if usable(tok("a", time.Second), now, 2*time.Second) || !usable(&oauth2.Token{AccessToken: "a"}, now, time.Hour) {
		t.Error("usable")
	}
	if got := withRefresh(&oauth2.Token{AccessToken: "a"}, &oauth2.Token{RefreshToken: "r"}); got.RefreshToken != "r" {
		t.Error("withRefresh did not fill in the refresh token")
	}
}

func TestEventKindString(t *testing.T) {
	if EventAdopted.String() != "adopted" || EventKind(200).String() != "unknown" {
		t.Error("EventKind.String")
	}
}

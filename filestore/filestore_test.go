package filestore_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/filestore"
	"golang.org/x/oauth2"
)

func TestRoundTrip(t *testing.T) {
	berlin := time.FixedZone("CET", 3600)
	full := (&oauth2.Token{
		AccessToken:  "at-full",
		TokenType:    "Bearer",
		RefreshToken: "rt-full",
		Expiry:       time.Date(2031, 5, 6, 7, 8, 9, 123456789, berlin),
		ExpiresIn:    3600,
	}).WithExtra(map[string]any{
		"id_token":   "eyJ.header.sig",
		"scope":      "openid offline_access",
		"refresh_in": float64(2700),
		"custom":     "dropped unless asked for",
		"not_kept":   true,
	})
	// x/oauth2 parses a form-encoded answer into url.Values; Extra then
	// gives int64 for integers, which come back as float64.
	form := (&oauth2.Token{AccessToken: "at-form", TokenType: "bearer"}).WithExtra(url.Values{
		"refresh_in": {"60"},
		"scope":      {"read"},
	})
	formWant := (&oauth2.Token{AccessToken: "at-form", TokenType: "bearer"}).WithExtra(map[string]any{
		"refresh_in": float64(60),
		"scope":      "read",
	})
	fullWant := (&oauth2.Token{
		AccessToken:  "at-full",
		TokenType:    "Bearer",
		RefreshToken: "rt-full",
		Expiry:       full.Expiry,
		ExpiresIn:    3600,
	}).WithExtra(map[string]any{
		"id_token":   "eyJ.header.sig",
		"scope":      "openid offline_access",
		"refresh_in": float64(2700),
	})
	tests := []struct {
		name      string
		tokName   string
		tok, want *oauth2.Token
		extraKeys []string
	}{
		{name: "full with extras", tokName: "full", tok: full, want: fullWant},
		{name: "custom extra keys", tokName: "custom", tok: full, extraKeys: []string{"custom"},
			want: (&oauth2.Token{AccessToken: "at-full", TokenType: "Bearer", RefreshToken: "rt-full", Expiry: full.Expiry, ExpiresIn: 3600}).
				WithExtra(map[string]any{"custom": "dropped unless asked for"})},
		{name: "no extras kept", tokName: "none", tok: full, extraKeys: []string{},
			want: &oauth2.Token{AccessToken: "at-full", TokenType: "Bearer", RefreshToken: "rt-full", Expiry: full.Expiry, ExpiresIn: 3600}},
		{name: "zero expiry", tokName: "forever", tok: &oauth2.Token{AccessToken: "at", TokenType: "Bearer"},
			want: &oauth2.Token{AccessToken: "at", TokenType: "Bearer"}},
		{name: "refresh token only", tokName: "seed", tok: &oauth2.Token{RefreshToken: "rt-only"},
			want: &oauth2.Token{RefreshToken: "rt-only"}},
		{name: "form extras", tokName: "form", tok: form, want: formWant},
		{name: "unicode name", tokName: "tøken/ü 1", tok: full, want: fullWant},
	}
	for _, enc := range []bool{false, true} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s/encrypted=%v", tt.name, enc), func(t *testing.T) {
				opts := filestore.Options{ExtraKeys: tt.extraKeys}
				if enc {
					opts.Key = key(7)
				}
				s := open(t, tempPath(t), opts)
				if s.Encrypted() != enc {
					t.Errorf("Encrypted() = %v, want %v", s.Encrypted(), enc)
				}
				if err := s.Save(t.Context(), tt.tokName, tt.tok); err != nil {
					t.Fatal(err)
				}
				got, err := s.Load(t.Context(), tt.tokName)
				if err != nil {
					t.Fatal(err)
				}
				if d := diffTokens(tt.want, got); d != "" {
					t.Errorf("Load (-want +got):\n%s", d)
				}
				if !got.Expiry.Equal(tt.want.Expiry) {
					t.Errorf("expiry %v, want %v", got.Expiry, tt.want.Expiry)
				}
			})
		}
	}
}

func TestPersistsAcrossReopen(t *testing.T) {
	for _, enc := range []bool{false, true} {
		t.Run(fmt.Sprintf("encrypted=%v", enc), func(t *testing.T) {
			path := tempPath(t)
			var opts filestore.Options
			if enc {
				opts.Key = key(3)
			}
			s, err := filestore.Open(path, opts)
			if err != nil {
				t.Fatal(err)
			}
			if s.Path() != path {
				t.Errorf("Path() = %q, want %q", s.Path(), path)
			}
			names := []string{"b", "a", "c"}
			for _, n := range names {
				if err := s.Save(t.Context(), n, sampleToken("at-"+n)); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Save(t.Context(), "a", sampleToken("at-a2")); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}

			s2 := open(t, path, opts)
			list, err := s2.List(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff([]string{"a", "b", "c"}, list); d != "" {
				t.Errorf("List (-want +got):\n%s", d)
			}
			for n, want := range map[string]string{"a": "at-a2", "b": "at-b", "c": "at-c"} {
				got, err := s2.Load(t.Context(), n)
				if err != nil {
					t.Fatal(err)
				}
				if d := diffTokens(sampleToken(want), got); d != "" {
					t.Errorf("Load(%q) (-want +got):\n%s", n, d)
				}
			}
		})
	}
}

func TestFileMode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "dir")
	path := filepath.Join(dir, "tokens.db")
	s := open(t, path, filestore.Options{})
	s.Close()
	for p, want := range map[string]os.FileMode{path: 0o600, dir: 0o700} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("mode of %s = %04o, want %04o", p, got, want)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the store (no temporary file left)", len(entries))
	}

	for _, mode := range []os.FileMode{0o640, 0o604, 0o660, 0o666} {
		t.Run(fmt.Sprintf("%04o", mode), func(t *testing.T) {
			if err := os.Chmod(path, mode); err != nil {
				t.Fatal(err)
			}
			before := fileHash(t, path)
			_, err := filestore.Open(path, filestore.Options{LockTimeout: 100 * time.Millisecond})
			if !errors.Is(err, filestore.ErrInsecureFile) {
				t.Fatalf("Open = %v, want ErrInsecureFile", err)
			}
			if fileHash(t, path) != before {
				t.Error("refused file was modified")
			}
			s, err := filestore.Open(path, filestore.Options{FixPermissions: true})
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
			fi, _ := os.Stat(path)
			if got := fi.Mode().Perm(); got != 0o600 {
				t.Errorf("mode after FixPermissions = %04o, want 0600", got)
			}
		})
	}
}

func TestSecondOpenerIsLockedOut(t *testing.T) {
	path := tempPath(t)
	first := open(t, path, filestore.Options{})
	if err := first.Save(t.Context(), "x", sampleToken("at")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	s, err := filestore.Open(path, filestore.Options{LockTimeout: 150 * time.Millisecond})
	elapsed := time.Since(start)
	if err == nil {
		s.Close()
		t.Fatal("second Open succeeded while the first Store holds the file")
	}
	if !errors.Is(err, filestore.ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), "locked") {
		t.Errorf("error %q does not say the file is locked", err)
	}
	if elapsed > 2*time.Second {
		t.Errorf("second Open took %v, want about the lock timeout", elapsed)
	}
	// While the first store writes (reusing pages), a second opener still
	// sees the lock, never damage: the file is only inspected under the lock.
	done := make(chan struct{})
	writerErr := make(chan error, 1)
	go func() {
		defer close(writerErr)
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			if err := first.Save(t.Context(), fmt.Sprintf("w%d", i%20), sampleToken(fmt.Sprint(i))); err != nil {
				writerErr <- err
				return
			}
		}
	}()
	for range 5 {
		s, err := filestore.Open(path, filestore.Options{LockTimeout: 30 * time.Millisecond})
		if err == nil {
			s.Close()
			t.Fatal("Open succeeded while another Store holds the file")
		}
		if !errors.Is(err, filestore.ErrLocked) {
			t.Errorf("Open during writes = %v, want ErrLocked", err)
		}
	}
	close(done)
	if err := <-writerErr; err != nil {
		t.Fatal(err)
	}
	// The first store is unaffected; once it is closed the file opens.
	if _, err := first.Load(t.Context(), "x"); err != nil {
		t.Fatal(err)
	}
	first.Close()
	open(t, path, filestore.Options{})
}

func TestKeyMismatch(t *testing.T) {
	encPath, plainPath := tempPath(t), tempPath(t)
	for _, c := range []struct {
		path string
		key  []byte
	}{{encPath, key(1)}, {plainPath, nil}} {
		s := open(t, c.path, filestore.Options{Key: c.key})
		if err := s.Save(t.Context(), "t", sampleToken("secret-at")); err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	tests := []struct {
		name string
		path string
		key  []byte
		want error
	}{
		{"encrypted file, no key", encPath, nil, filestore.ErrKeyRequired},
		{"encrypted file, wrong key", encPath, key(2), filestore.ErrWrongKey},
		{"unencrypted file, a key", plainPath, key(1), filestore.ErrNotEncrypted},
		{"short key", encPath, key(1)[:16], filestore.ErrBadKey},
		{"empty non-nil key", encPath, []byte{}, filestore.ErrBadKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := fileHash(t, tt.path)
			s, err := filestore.Open(tt.path, filestore.Options{Key: tt.key, LockTimeout: 100 * time.Millisecond})
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Open = %v, want %v", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "tokenkeeper: filestore: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
			if fileHash(t, tt.path) != before {
				t.Error("refused file was modified")
			}
		})
	}
	// The right key still works.
	s := open(t, encPath, filestore.Options{Key: key(1)})
	if _, err := s.Load(t.Context(), "t"); err != nil {
		t.Fatal(err)
	}
}

func TestNotFound(t *testing.T) {
	s := open(t, tempPath(t), filestore.Options{})
	_, err := s.Load(t.Context(), "missing")
	if !errors.Is(err, tokenkeeper.ErrNotFound) {
		t.Fatalf("Load = %v, want tokenkeeper.ErrNotFound", err)
	}
	if !strings.Contains(err.Error(), `"missing"`) {
		t.Errorf("error %q does not name the token", err)
	}
}

func TestDelete(t *testing.T) {
	s := open(t, tempPath(t), filestore.Options{Key: key(9)})
	ctx := t.Context()
	for _, n := range []string{"a", "b"} {
		if err := s.Save(ctx, n, sampleToken(n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx, "a"); !errors.Is(err, tokenkeeper.ErrNotFound) {
		t.Errorf("Load after Delete = %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, "a"); err != nil {
		t.Errorf("second Delete = %v, want nil", err)
	}
	if err := s.Delete(ctx, "never"); err != nil {
		t.Errorf("Delete of an absent name = %v, want nil", err)
	}
	if _, err := s.Load(ctx, "b"); err != nil {
		t.Errorf("Load(b) = %v", err)
	}
	list, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"b"}, list); d != "" {
		t.Errorf("List (-want +got):\n%s", d)
	}
}

func TestClosed(t *testing.T) {
	s, err := filestore.Open(tempPath(t), filestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	ctx := t.Context()
	_, lerr := s.Load(ctx, "x")
	_, lsErr := s.List(ctx)
	for name, err := range map[string]error{
		"Load":   lerr,
		"Save":   s.Save(ctx, "x", sampleToken("a")),
		"Delete": s.Delete(ctx, "x"),
		"List":   lsErr,
	} {
		if !errors.Is(err, filestore.ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
}

func TestBadArguments(t *testing.T) {
	s := open(t, tempPath(t), filestore.Options{})
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	ctx := t.Context()
	_, loadCancelled := s.Load(cancelled, "x")
	_, listCancelled := s.List(cancelled)
	_, loadEmpty := s.Load(ctx, "")
	tests := []struct {
		name string
		err  error
		is   error
		text string
	}{
		{"Load cancelled", loadCancelled, context.Canceled, "load"},
		{"Save cancelled", s.Save(cancelled, "x", sampleToken("a")), context.Canceled, "save"},
		{"Delete cancelled", s.Delete(cancelled, "x"), context.Canceled, "delete"},
		{"List cancelled", listCancelled, context.Canceled, "list"},
		{"Load empty name", loadEmpty, nil, "empty token name"},
		{"Save nil token", s.Save(ctx, "x", nil), nil, "nil token"},
		{"Save unencodable extra", s.Save(ctx, "x", (&oauth2.Token{AccessToken: "a"}).WithExtra(map[string]any{"id_token": make(chan int)})), nil, `"id_token"`},
		{"Save expiry beyond year 9999", s.Save(ctx, "x", &oauth2.Token{AccessToken: "a", Expiry: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}), nil, "cannot be encoded"},
		{"Save name too long for bbolt", s.Save(ctx, strings.Repeat("n", 40000), sampleToken("a")), nil, "key too large"},
		{"Open empty path", openErr("", filestore.Options{}), nil, "empty path"},
		{"Open negative timeout", openErr(tempPath(t), filestore.Options{LockTimeout: -1}), nil, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.err == nil {
				t.Fatal("no error")
			}
			if tt.is != nil && !errors.Is(tt.err, tt.is) {
				t.Errorf("error %v does not match %v", tt.err, tt.is)
			}
			if !strings.Contains(tt.err.Error(), tt.text) {
				t.Errorf("error %q does not contain %q", tt.err, tt.text)
			}
			if !strings.HasPrefix(tt.err.Error(), "tokenkeeper: filestore: ") {
				t.Errorf("error %q lacks the package prefix", tt.err)
			}
		})
	}
	if _, err := s.Load(ctx, "x"); !errors.Is(err, tokenkeeper.ErrNotFound) {
		t.Errorf("a failed Save stored something: Load = %v", err)
	}
}

func openErr(path string, opts filestore.Options) error {
	s, err := filestore.Open(path, opts)
	if err == nil {
		s.Close()
	}
	return err
}

func TestConcurrentSaveLoad(t *testing.T) {
	s := open(t, tempPath(t), filestore.Options{Key: key(5)})
	const workers, rounds = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds)
	for w := range workers {
		wg.Go(func() {
			shared, own := "shared", fmt.Sprintf("own-%d", w)
			for i := range rounds {
				at := fmt.Sprintf("at-%d-%d", w, i)
				for _, n := range []string{shared, own} {
					if err := s.Save(t.Context(), n, sampleToken(at)); err != nil {
						errs <- err
						return
					}
				}
				got, err := s.Load(t.Context(), own)
				if err != nil {
					errs <- err
					return
				}
				if got.AccessToken != at {
					errs <- fmt.Errorf("%s: loaded %q, want %q", own, got.AccessToken, at)
				}
				got, err = s.Load(t.Context(), shared)
				if err != nil {
					errs <- err
					return
				}
				if !strings.HasPrefix(got.AccessToken, "at-") || got.RefreshToken != "refresh-"+got.AccessToken {
					errs <- fmt.Errorf("shared: inconsistent token %q/%q", got.AccessToken, got.RefreshToken)
				}
				if _, err := s.List(t.Context()); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	list, err := s.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != workers+1 {
		t.Errorf("List has %d names, want %d", len(list), workers+1)
	}
}

package filestore_test

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tokenkeeper/tokenkeeper/filestore"
	"go.uber.org/goleak"
	"golang.org/x/oauth2"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode))
	}
	goleak.VerifyTestMain(m)
}

// key returns a deterministic test key.
func key(b byte) []byte { return bytes.Repeat([]byte{b}, filestore.KeySize) }

// open opens a store that the test closes at its end.
func open(t testing.TB, path string, opts filestore.Options) *filestore.Store {
	t.Helper()
	if opts.LockTimeout == 0 {
		opts.LockTimeout = 200 * time.Millisecond
	}
	s, err := filestore.Open(path, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func tempPath(t testing.TB) string {
	return filepath.Join(t.TempDir(), "tokens.db")
}

// tokenView is what a test compares of a token: its fields, with the
// expiry as an instant, and the extras under the keys asked for.
type tokenView struct {
	AccessToken, TokenType, RefreshToken string
	Expiry                               time.Time
	ExpiresIn                            int64
	Extra                                map[string]any
}

var extraKeysSeen = []string{"id_token", "scope", "refresh_in", "refresh_expires_in", "refresh_token_expires_in", "custom", "not_kept"}

func view(tok *oauth2.Token) tokenView {
	v := tokenView{
		AccessToken:  tok.AccessToken,
		TokenType:    tok.TokenType,
		RefreshToken: tok.RefreshToken,
		Expiry:       tok.Expiry,
		ExpiresIn:    tok.ExpiresIn,
	}
	for _, k := range extraKeysSeen {
		if x := tok.Extra(k); x != nil {
			if v.Extra == nil {
				v.Extra = map[string]any{}
			}
			v.Extra[k] = x
		}
	}
	return v
}

// diffTokens compares two tokens' views (time.Time by Equal).
func diffTokens(want, got *oauth2.Token) string {
	return cmp.Diff(view(want), view(got))
}

func fileHash(t testing.TB, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func sampleToken(access string) *oauth2.Token {
	return (&oauth2.Token{
		AccessToken:  access,
		TokenType:    "Bearer",
		RefreshToken: "refresh-" + access,
		Expiry:       time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC),
	}).WithExtra(map[string]any{"id_token": "idtok-" + access, "refresh_in": float64(1800)})
}

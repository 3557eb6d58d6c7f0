package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/cognito"
	"github.com/tokenkeeper/tokenkeeper/filestore"
)

// fakePool is the part of a Cognito user pool's API (AWS JSON 1.1) that a
// cognito source uses to refresh: InitiateAuth with REFRESH_TOKEN_AUTH,
// whose SECRET_HASH it checks over the user's internal user name, and
// GetTokensFromRefreshToken, which rotates refresh tokens and refuses a
// spent one. Its tokens are opaque (not JWTs), so a refresh of a client
// with a secret needs the user name the token carries as an extra
// (cognito.WithUsername), which the store must keep.
type fakePool struct {
	t                              *testing.T
	clientID, clientSecret, userID string

	mu       sync.Mutex
	live     map[string]bool // refresh token -> still usable
	seq      int
	calls    int
	reuses   int
	badHashs int
}

func newFakePool(t *testing.T, firstRT string) (*fakePool, *httptest.Server) {
	f := &fakePool{t: t, clientID: "app", clientSecret: "app-secret", userID: "0f8e-user-sub",
		live: map[string]bool{firstRT: true}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakePool) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, op, _ := strings.Cut(r.Header.Get("X-Amz-Target"), ".")
	body, _ := io.ReadAll(r.Body)
	var in struct {
		AuthFlow       string
		ClientId       string
		ClientSecret   string
		RefreshToken   string
		AuthParameters map[string]string
	}
	if err := json.Unmarshal(body, &in); err != nil {
		fakeError(w, "SerializationException")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if in.ClientId != f.clientID {
		fakeError(w, "ResourceNotFoundException")
		return
	}
	rt, rotate := in.RefreshToken, true
	switch op {
	case "GetTokensFromRefreshToken":
		if in.ClientSecret != f.clientSecret {
			fakeError(w, "NotAuthorizedException")
			return
		}
	case "InitiateAuth":
		rt, rotate = in.AuthParameters["REFRESH_TOKEN"], false
		if in.AuthFlow != "REFRESH_TOKEN_AUTH" {
			fakeError(w, "InvalidParameterException")
			return
		}
		if in.AuthParameters["SECRET_HASH"] != cognito.SecretHash(f.userID, f.clientID, f.clientSecret) {
			f.badHashs++
			fakeError(w, "NotAuthorizedException")
			return
		}
	default:
		fakeError(w, "UnknownOperationException")
		return
	}
	live, known := f.live[rt]
	switch {
	case !known:
		fakeError(w, "NotAuthorizedException")
		return
	case !live:
		f.reuses++
		fakeError(w, "RefreshTokenReuseException")
		return
	}
	f.seq++
	res := map[string]any{
		"AccessToken": fmt.Sprintf("access-%d", f.seq),
		"IdToken":     fmt.Sprintf("id-%d", f.seq),
		"ExpiresIn":   3600,
		"TokenType":   "Bearer",
	}
	if rotate {
		f.live[rt] = false
		next := fmt.Sprintf("refresh-%d", f.seq)
		f.live[next] = true
		res["RefreshToken"] = next
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	json.NewEncoder(w).Encode(map[string]any{"AuthenticationResult": res})
}

func fakeError(w http.ResponseWriter, typ string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-Errortype", typ)
	w.WriteHeader(http.StatusBadRequest)
	json.NewEncoder(w).Encode(map[string]string{"__type": typ, "message": "fake: " + typ})
}

func (f *fakePool) stats() (calls, reuses, badHashes int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls, f.reuses, f.badHashs
}

func TestCognitoSource(t *testing.T) {
	for _, rotation := range []bool{false, true} {
		t.Run(fmt.Sprintf("rotation=%v", rotation), func(t *testing.T) {
			e := newEnv(t, time.Hour)
			f, srv := newFakePool(t, "first-refresh")
			e.write("app.secret", f.clientSecret)
			e.write("user.rt", "first-refresh")
			user := ""
			if !rotation {
				user = "\n      username: " + f.userID // for the first SECRET_HASH
			}
			cfg := e.config(e.unixHead(), fmt.Sprintf(`
  - name: pool
    source:
      type: cognito
      region: local
      endpoint: %s
      client_id: app
      client_secret_file: app.secret
      refresh_token_file: user.rt
      rotation: %v%s
`, srv.URL, rotation, user))
			if g := cfg.Tokens[0].Group; g != "cognito-idp:local" {
				t.Errorf("group %q", g)
			}
			d := start(t, cfg, Options{})
			tok := fetch(t, clientFor(t, d), "pool")
			if tok.AccessToken != "access-1" || tok.IDToken != "id-1" {
				t.Fatalf("first token: %q, id %q", tok.AccessToken, tok.IDToken)
			}
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}

			// The store kept what the next refresh needs: the rotated
			// refresh token, the ID token, and the user name.
			st, err := filestore.Open(cfg.Store.Path, filestore.Options{ExtraKeys: extraKeys()})
			if err != nil {
				t.Fatal(err)
			}
			stored, err := st.Load(context.Background(), "pool")
			st.Close()
			if err != nil {
				t.Fatal(err)
			}
			if u, err := cognito.InternalUsername(stored); !rotation && (err != nil || u != f.userID) {
				t.Errorf("stored user name %q, %v", u, err)
			}
			if cognito.IDToken(stored) != "id-1" {
				t.Error("the ID token was not stored")
			}

			// A restart resumes the session: the same token, then a
			// refresh from the stored refresh token.
			d2 := start(t, cfg, Options{})
			c2 := clientFor(t, d2)
			if got := fetch(t, c2, "pool"); got.AccessToken != "access-1" || got.IDToken != "id-1" {
				t.Errorf("after a restart: %q, id %q", got.AccessToken, got.IDToken)
			}
			if _, err := c2.Refresh(context.Background(), "pool"); err != nil {
				t.Fatal(err)
			}
			if got := fetch(t, c2, "pool"); got.AccessToken != "access-2" || got.IDToken != "id-2" {
				t.Errorf("after a refresh: %q, id %q", got.AccessToken, got.IDToken)
			}
			h, _ := d2.Keeper().Handle("pool")
			if st := h.Status(); st.State != tokenkeeper.StateValid || st.Group != "cognito-idp:local" {
				t.Errorf("status %v, group %q", st.State, st.Group)
			}
			if calls, reuses, bad := f.stats(); calls != 2 || reuses != 0 || bad != 0 {
				t.Errorf("pool: %d calls, %d reused refresh tokens, %d bad SECRET_HASHes", calls, reuses, bad)
			}
		})
	}
}

// Command interceptor calls a protected API through tokenkeeper's
// interceptor while the keeper renews the token in the background.
//
// It is self-contained: it starts a tiny OpenID provider (discovery, a token
// endpoint that rotates refresh tokens and revokes the previous access token
// at every refresh) and a tiny API on loopback, signs in once, then sends
// requests from several goroutines for a while. Tokens live a few seconds,
// so several refreshes happen during the run. It prints what happened:
//
//	go run ./examples/interceptor -duration 10s -lifetime 3s
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/oidc"
	"golang.org/x/oauth2"
)

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "how long to send requests")
	flag.DurationVar(&o.lifetime, "lifetime", 3*time.Second, "access token lifetime")
	flag.IntVar(&o.workers, "workers", 8, "concurrent callers")
	flag.Parse()
	if _, err := run(context.Background(), os.Stdout, o); err != nil {
		log.Fatal(err)
	}
}

type options struct {
	duration, lifetime time.Duration
	workers            int
}

// summary is what a run observed.
type summary struct {
	requests, failures, refreshes int
	reuses                        int
}

func run(ctx context.Context, w io.Writer, o options) (summary, error) {
	out := &lockedWriter{w: w} // written by the callers and the event consumer
	var sum summary
	idp, err := startIssuer(o.lifetime)
	if err != nil {
		return sum, err
	}
	defer idp.close()
	apiURL, closeAPI, err := startAPI(idp)
	if err != nil {
		return sum, err
	}
	defer closeAPI()

	// Sign in once, the way an application would (x/oauth2's password
	// grant keeps the example short; a real one uses the authorization
	// code flow).
	signIn := &oauth2.Config{ClientID: "demo", ClientSecret: "demo-secret",
		Endpoint: oauth2.Endpoint{TokenURL: idp.url + "/token", AuthStyle: oauth2.AuthStyleInHeader}}
	first, err := signIn.PasswordCredentialsToken(ctx, "alice", "wonderland")
	if err != nil {
		return sum, fmt.Errorf("sign-in: %w", err)
	}

	// The source discovers the token endpoint from the issuer.
	src, err := oidc.New(oidc.Config{ClientID: "demo", ClientSecret: "demo-secret", Issuer: idp.url})
	if err != nil {
		return sum, err
	}
	var refreshes atomic.Int32
	k, err := tokenkeeper.New(tokenkeeper.Config{
		OnEvent: func(e tokenkeeper.Event) {
			switch e.Kind {
			case tokenkeeper.EventSucceeded:
				refreshes.Add(1)
				fmt.Fprintf(out, "refreshed in %v, new token valid until %s\n",
					e.Latency.Round(time.Microsecond), e.Expiry.Format("15:04:05.000"))
			case tokenkeeper.EventFailed, tokenkeeper.EventReauthRequired:
				fmt.Fprintf(out, "%s: %v\n", e.Kind, e.Err)
			}
		},
		// Short tokens need a short retry step and an idle gap shorter
		// than their lifetime.
		Policy: tokenkeeper.Policy{IdleGap: o.lifetime / 10, RetryBase: 100 * time.Millisecond, RetryMax: time.Second},
	})
	if err != nil {
		return sum, err
	}
	defer k.Close()
	h, err := k.Add(tokenkeeper.TokenConfig{Name: "alice", Source: src, Token: first})
	if err != nil {
		return sum, err
	}

	client := tokenkeeper.NewClient(h, nil)
	var requests, failures atomic.Int32
	deadline := time.Now().Add(o.duration)
	var wg sync.WaitGroup
	for w := range o.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				resp, err := client.Get(apiURL + "/hello?n=" + strconv.Itoa(w*1000000+i))
				requests.Add(1)
				if err != nil {
					failures.Add(1)
					fmt.Fprintln(out, "request failed:", err)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					failures.Add(1)
					fmt.Fprintln(out, "request got", resp.Status)
				}
				time.Sleep(20 * time.Millisecond) // a busy but not frantic user
			}
		}()
	}
	wg.Wait()
	sum = summary{requests: int(requests.Load()), failures: int(failures.Load()),
		refreshes: int(refreshes.Load()), reuses: idp.reuses()}
	fmt.Fprintf(out, "%d requests, %d failed, %d refreshes, %d refresh-token reuses seen by the issuer\n",
		sum.requests, sum.failures, sum.refreshes, sum.reuses)
	return sum, nil
}

// issuer is a tiny OpenID provider: it rotates refresh tokens, revokes the
// previous access token at each refresh and revokes everything when a
// refresh token is reused.
type issuer struct {
	url      string
	srv      *http.Server
	lifetime time.Duration

	mu       sync.Mutex
	n        int
	access   map[string]time.Time // access token -> expiry
	refresh  map[string]string    // live refresh token -> its access token
	spent    map[string]bool
	reuseCnt int
}

func startIssuer(lifetime time.Duration) (*issuer, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	is := &issuer{url: "http://" + l.Addr().String(), lifetime: lifetime,
		access: map[string]time.Time{}, refresh: map[string]string{}, spent: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"issuer": is.url, "token_endpoint": is.url + "/token",
			"token_endpoint_auth_methods_supported": []string{"client_secret_basic"}})
	})
	mux.HandleFunc("POST /token", is.token)
	is.srv = &http.Server{Handler: mux}
	go func() { _ = is.srv.Serve(l) }()
	return is, nil
}

func (is *issuer) close() { _ = is.srv.Close() }

func (is *issuer) reuses() int {
	is.mu.Lock()
	defer is.mu.Unlock()
	return is.reuseCnt
}

func (is *issuer) valid(access string) bool {
	is.mu.Lock()
	defer is.mu.Unlock()
	exp, ok := is.access[access]
	return ok && time.Now().Before(exp)
}

func (is *issuer) token(w http.ResponseWriter, r *http.Request) {
	if id, secret, ok := r.BasicAuth(); !ok || id != "demo" || secret != "demo-secret" {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
		return
	}
	is.mu.Lock()
	defer is.mu.Unlock()
	switch r.PostFormValue("grant_type") {
	case "password":
		if r.PostFormValue("username") != "alice" || r.PostFormValue("password") != "wonderland" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant"})
			return
		}
	case "refresh_token":
		old := r.PostFormValue("refresh_token")
		at, live := is.refresh[old]
		if !live {
			if is.spent[old] {
				is.reuseCnt++
				clear(is.refresh) // reuse: revoke the whole grant
				clear(is.access)
			}
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant"})
			return
		}
		delete(is.refresh, old)
		delete(is.access, at) // the previous access token dies with the rotation
		is.spent[old] = true
	default:
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unsupported_grant_type"})
		return
	}
	is.n++
	at, rt := fmt.Sprintf("at-%d", is.n), fmt.Sprintf("rt-%d", is.n)
	is.access[at] = time.Now().Add(is.lifetime)
	is.refresh[rt] = at
	writeJSON(w, http.StatusOK, map[string]any{"access_token": at, "token_type": "Bearer",
		"expires_in": int(is.lifetime / time.Second), "refresh_token": rt})
}

// startAPI serves /hello to callers with a valid access token. It
// returns the API's URL and a function that stops it.
func startAPI(is *issuer) (string, func(), error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || !is.valid(tok) {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		fmt.Fprintln(w, "hello")
	})}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Print(err)
		}
	}()
	return "http://" + l.Addr().String(), func() { _ = srv.Close() }, nil
}

// lockedWriter serializes writes.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

package redisstore

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tokenkeeper/tokenkeeper"
	"golang.org/x/oauth2"
)

// The agent-process test re-executes the test binary as child processes
// (the standard helper-process pattern): with helperEnv set, TestMain runs
// helperMain instead of the tests.
const helperEnv = "TOKENKEEPER_REDISSTORE_HELPER"

// Settings shared by the parent and its children.
const (
	agentPrefix   = "agents:"
	agentToken    = "api"
	agentLifetime = 2 * time.Second
	agentLockTTL  = 400 * time.Millisecond
)

func agentPolicy() tokenkeeper.Policy {
	return tokenkeeper.Policy{StartLead: 1200 * time.Millisecond, EndLead: time.Second, NoJitter: true,
		ExpiryMargin: 100 * time.Millisecond, AttemptTimeout: 5 * time.Second,
		RetryBase: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond}
}

// httpSource refreshes through the parent's fake identity provider.
func httpSource(base, name, caller string) tokenkeeper.Source {
	return tokenkeeper.SourceFunc(func(ctx context.Context, cur *oauth2.Token) (*oauth2.Token, error) {
		if cur == nil {
			return nil, tokenkeeper.Permanent(errors.New("no token"))
		}
		form := url.Values{"refresh_token": {cur.RefreshToken}, "name": {name}, "caller": {caller},
			"expiry": {cur.Expiry.Format(time.RFC3339Nano)}}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/token", strings.NewReader(form.Encode()))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		var body struct {
			Error        string    `json:"error"`
			AccessToken  string    `json:"access_token"`
			RefreshToken string    `json:"refresh_token"`
			Expiry       time.Time `json:"expiry"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			re := &tokenkeeper.RefreshError{Status: resp.StatusCode, Code: body.Error}
			re.Permanent = tokenkeeper.IsPermanentCode(body.Error)
			return nil, re
		}
		return &oauth2.Token{AccessToken: body.AccessToken, RefreshToken: body.RefreshToken,
			TokenType: "Bearer", Expiry: body.Expiry}, nil
	})
}

// idpHandler serves p over HTTP.
func idpHandler(p *idp) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
			return
		}
		exp, _ := time.Parse(time.RFC3339Nano, r.PostForm.Get("expiry"))
		cur := &oauth2.Token{RefreshToken: r.PostForm.Get("refresh_token"), Expiry: exp}
		tok, err := p.refresh(r.Context(), r.PostForm.Get("name"), r.PostForm.Get("caller"), cur)
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			code := "temporarily_unavailable"
			if re := tokenkeeper.Classify(err); re.Permanent {
				code = "invalid_grant"
			}
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, `{"error":%q}`, code)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": tok.AccessToken,
			"refresh_token": tok.RefreshToken, "expiry": tok.Expiry})
	})
}

// helperMain is an agent process: a keeper on a Redis store, fetching its
// token continuously. It prints READY, then BAD lines for any error or
// expired token, and DONE <fetches> <errors> <expired> <max stall ms> when
// its stdin closes.
func helperMain() int {
	id := os.Getenv("TK_AGENT_ID")
	out := bufio.NewWriter(os.Stdout)
	var outMu sync.Mutex
	say := func(format string, args ...any) {
		outMu.Lock()
		fmt.Fprintf(out, format+"\n", args...)
		out.Flush()
		outMu.Unlock()
	}
	client := redis.NewClient(&redis.Options{Addr: os.Getenv("TK_REDIS_ADDR"), DialTimeout: 250 * time.Millisecond,
		ReadTimeout: 500 * time.Millisecond, WriteTimeout: 500 * time.Millisecond, MaxRetries: 1})
	defer client.Close()
	s, err := New(client, Options{Prefix: agentPrefix, LockTTL: agentLockTTL})
	if err != nil {
		say("BAD %v", err)
		return 1
	}
	defer s.Close()
	k, err := tokenkeeper.New(tokenkeeper.Config{Store: s, Policy: agentPolicy()})
	if err != nil {
		say("BAD %v", err)
		return 1
	}
	defer k.Close()
	if err := s.Attach(k); err != nil {
		say("BAD %v", err)
		return 1
	}
	h, err := k.Add(tokenkeeper.TokenConfig{Name: agentToken,
		Source: s.Coordinate(httpSource(os.Getenv("TK_IDP_URL"), agentToken, id), agentToken)})
	if err != nil {
		say("BAD %v", err)
		return 1
	}
	var fetches, errs, expired, maxStall atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			last := time.Now()
			for {
				select {
				case <-stop:
					return
				case now := <-tick.C:
					if late := now.Sub(last) - time.Millisecond; late > time.Duration(maxStall.Load()) {
						maxStall.Store(int64(late))
					}
					last = now
				}
				asked := time.Now()
				tok, err := h.TokenContext(context.Background())
				fetches.Add(1)
				switch {
				case err != nil:
					errs.Add(1)
					say("BAD %s: %v", id, err)
				case !tok.Expiry.After(asked):
					expired.Add(1)
					say("BAD %s: expired token (expiry %s, asked at %s)", id, tok.Expiry.Format("05.000"), asked.Format("05.000"))
				}
			}
		})
	}
	say("READY")
	_, _ = io.Copy(io.Discard, os.Stdin)
	close(stop)
	wg.Wait()
	say("DONE %d %d %d %d", fetches.Load(), errs.Load(), expired.Load(), time.Duration(maxStall.Load()).Milliseconds())
	return 0
}

// agent is a child process seen from the test.
type agent struct {
	id    string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	ready chan struct{}
	done  chan string // the DONE line
	exit  chan struct{}
	mu    sync.Mutex
	bad   []string
}

func startAgent(t *testing.T, id, redisAddr, idpURL string) *agent {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1", "TK_AGENT_ID="+id, "TK_REDIS_ADDR="+redisAddr, "TK_IDP_URL="+idpURL)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a := &agent{id: id, cmd: cmd, stdin: stdin, ready: make(chan struct{}), done: make(chan string, 1), exit: make(chan struct{})}
	go func() {
		defer close(a.exit)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "READY":
				close(a.ready)
			case strings.HasPrefix(line, "DONE "):
				a.done <- line
			case strings.HasPrefix(line, "BAD "):
				a.mu.Lock()
				a.bad = append(a.bad, line)
				a.mu.Unlock()
			}
		}
		_ = cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = a.cmd.Process.Kill()
		<-a.exit
	})
	select {
	case <-a.ready:
	case <-a.exit:
		t.Fatalf("agent %s exited before it was ready", id)
	case <-time.After(20 * time.Second):
		t.Fatalf("agent %s not ready", id)
	}
	return a
}

// finish closes the agent's stdin and returns its counts.
func (a *agent) finish(t *testing.T) (fetches, errs, expired int64, stall time.Duration) {
	t.Helper()
	a.stdin.Close()
	select {
	case line := <-a.done:
		var ms int64
		if _, err := fmt.Sscanf(line, "DONE %d %d %d %d", &fetches, &errs, &expired, &ms); err != nil {
			t.Fatalf("agent %s: %q: %v", a.id, line, err)
		}
		return fetches, errs, expired, time.Duration(ms) * time.Millisecond
	case <-a.exit:
		t.Fatalf("agent %s exited without a report", a.id)
	case <-time.After(20 * time.Second):
		t.Fatalf("agent %s did not finish", a.id)
	}
	return
}

// (b), agent processes: three processes share a token through Redis; the
// one holding the lock is killed (SIGKILL) in the middle of a refresh.
// Another takes over within one lease and refreshes before the token
// expires; no caller in the surviving processes ever gets an expired token
// and no refresh token is used twice.
func TestAgentProcessesKillLockHolder(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	srv := startRedis(t)
	p := newIDP(agentLifetime, true)
	var armed atomic.Bool
	victim := make(chan string, 1)
	release := make(chan struct{})
	p.before = func(ctx context.Context, name, caller string) error {
		if armed.CompareAndSwap(true, false) {
			victim <- caller
			select { // the caller dies while its request is in flight
			case <-ctx.Done():
			case <-release:
			}
			return errors.New("caller gone")
		}
		return nil
	}
	idpSrv := httptest.NewServer(idpHandler(p))
	t.Cleanup(idpSrv.Close)
	t.Cleanup(func() { close(release) })

	seed(t, newStore(t, srv, Options{Prefix: agentPrefix}), p, agentToken)
	start := time.Now()
	agents := make(map[string]*agent)
	for i := range 3 {
		id := fmt.Sprintf("agent%d", i)
		agents[id] = startAgent(t, id, srv.addr, idpSrv.URL)
	}
	eventually(t, 15*time.Second, "two cycles", func() bool { return len(p.callsOf(agentToken)) >= 2 })
	before := len(p.callsOf(agentToken))
	armed.Store(true)
	var dead *agent
	select {
	case id := <-victim:
		dead = agents[id]
	case <-time.After(15 * time.Second):
		t.Fatal("no refresh reached the identity provider")
	}
	if err := dead.cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	<-dead.exit
	killed := time.Now()
	eventually(t, 15*time.Second, "another agent to refresh", func() bool { return len(p.callsOf(agentToken)) > before })
	calls := p.callsOf(agentToken)
	takeover := calls[before]
	t.Logf("%s held the lock and was killed; %s refreshed %v later, %v before the token expired",
		dead.id, takeover.caller, takeover.at.Sub(killed).Round(time.Millisecond), takeover.prevExp.Sub(takeover.at).Round(time.Millisecond))
	eventually(t, 15*time.Second, "two more cycles", func() bool { return len(p.callsOf(agentToken)) >= before+3 })

	var stall time.Duration
	for id, a := range agents {
		if a == dead {
			continue
		}
		fetches, errs, expired, st := a.finish(t)
		stall = max(stall, st)
		a.mu.Lock()
		bad := a.bad
		a.mu.Unlock()
		t.Logf("%s: %d fetches, %d errors, %d expired", id, fetches, errs, expired)
		if fetches == 0 {
			t.Errorf("%s made no fetch", id)
		}
		if errs != 0 || (expired != 0 && stall <= 300*time.Millisecond) {
			t.Errorf("%s: %d errors, %d expired tokens; first: %v", id, errs, expired, bad[:min(len(bad), 3)])
		}
	}
	if takeover.caller == dead.id {
		t.Errorf("the killed agent refreshed")
	}
	if !takeover.at.Before(takeover.prevExp) && stall <= 300*time.Millisecond {
		t.Errorf("takeover at %v, after the token expired at %v", takeover.at, takeover.prevExp)
	}
	if n := p.reused.Load(); n != 0 {
		t.Errorf("%d refresh tokens reused", n)
	}
	for i := 1; i < len(calls); i++ {
		if calls[i].at.Sub(calls[i-1].at) < 500*time.Millisecond && stall <= 300*time.Millisecond {
			t.Errorf("calls %d and %d %v apart: two refreshes in one cycle", i-1, i, calls[i].at.Sub(calls[i-1].at))
		}
	}
	if stall > 300*time.Millisecond {
		t.Logf("an agent stalled for %v (machine overloaded): timing assertions relaxed", stall)
	}
	if el := time.Since(start); el > 60*time.Second {
		t.Errorf("took %v", el)
	}
}

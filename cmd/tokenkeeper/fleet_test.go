package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper/internal/testredis"

	"github.com/tokenkeeper/tokenkeeper/cmd/tokenkeeper/internal/client"
	"github.com/tokenkeeper/tokenkeeper/internal/devissuer"
)

// Timing of the fleet test. Tokens live 3 s; under constant load (never
// idle) each is refreshed at its window's end, 1.5 s before expiry, so a
// cycle lasts about 1.5 s, and a refresh can never legitimately happen
// before the window opens, 1.2 s after the previous token was issued.
// A takeover after the lock holder dies costs at most the lease (0.5 s) +
// the waiter's poll (lease/10) + one issuer call, well inside the 1.5 s left.
const (
	fleetLifetime  = 3 * time.Second
	fleetLockTTL   = 500 * time.Millisecond
	fleetCycles    = 10
	fleetMinGap    = time.Second // refreshes closer than this: two in one cycle
	fleetPolicy    = "{start_lead: 1800ms, end_lead: 1500ms, idle_gap: 200ms, expiry_margin: 100ms}"
	fleetFetchers  = 3                    // goroutines per agent
	fleetFetchTick = 5 * time.Millisecond // each fetcher's pace
)

// TestFleetOfAgentsOneRefreshPerCycle runs three `tokenkeeper agent`
// processes sharing one redis-server, one grant of a rotating,
// reuse-detecting issuer and one refresh token file, each on its own Unix
// socket, with goroutines fetching the token from all three at once:
//
//   - over fleetCycles cycles the issuer answers exactly one refresh per
//     cycle in total (each refresh comes after the previous token's refresh
//     window opened and before it expired, and the issuer's count equals
//     the refreshes seen), with zero refresh-token reuse, and every agent
//     serves every new token;
//   - no caller ever receives an expired token;
//   - then the issuer holds the token endpoint, the agent whose refresh is
//     held (the lock holder, found from the held request's TCP connection)
//     is SIGKILLed, the issuer is released, and one of the two surviving
//     agents completes the refresh before the token expires, while callers
//     of the survivors keep getting valid tokens.
func TestFleetOfAgentsOneRefreshPerCycle(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three agents and a redis-server for about 25 s")
	}
	if runtime.GOOS != "linux" {
		t.Skip("finds the lock holder's process through /proc (Linux only)")
	}
	start := time.Now()
	redisAddr := testredis.Start(t)
	f := newFleetIssuer(t)

	dir, err := os.MkdirTemp("", "tkf") // short: Unix socket paths
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	e := &env{t: t, dir: dir, iss: f.iss, grants: make(map[string]string)}
	e.write("client.secret", "cli-secret")
	e.write("store.key", strings.Repeat("5a", 32))
	e.grant("api", fleetLifetime)

	// Three agents, identical but for their socket, started together.
	names := []string{"agent0", "agent1", "agent2"}
	agents := make([]*fleetAgent, len(names))
	for i, n := range names {
		cfg := filepath.Join(dir, n+".yaml")
		head := fmt.Sprintf("listen: unix:%s\nstore: {type: redis, address: %q, prefix: \"fleet:\", key_file: store.key, lock_ttl: %v}\nlog: {level: debug}\n",
			filepath.Join(dir, fmt.Sprintf("a%d.sock", i)), redisAddr, fleetLockTTL)
		if err := os.WriteFile(cfg, []byte(head+"\ntokens:"+e.token("api", "    policy: "+fleetPolicy+"\n")), 0o600); err != nil {
			t.Fatal(err)
		}
		agents[i] = &fleetAgent{name: n, p: startProc(t, "agent", "--config", cfg)}
	}
	for _, a := range agents {
		a.c = e.waitAgent(a.p)
	}
	logs := func() string {
		var b strings.Builder
		for _, a := range agents {
			fmt.Fprintf(&b, "--- %s (pid %d) stderr, last lines:\n%s\n", a.name, a.p.cmd.Process.Pid, lastLines(a.p.stderr.String(), 40))
		}
		return b.String()
	}

	// Load: fetchers on every agent, from now to the end.
	res := &fleetResults{f: f}
	for _, a := range agents {
		a.startFetching(res)
	}
	t.Cleanup(func() {
		for _, a := range agents {
			a.stopFetching()
		}
	})
	loadFrom := f.count()

	// Phase 1: fleetCycles cycles under load.
	phase1 := time.Now()
	waitFor(t, fmt.Sprintf("%d refresh cycles", fleetCycles), time.Duration(fleetCycles+8)*fleetLifetime/2+5*time.Second, func() bool {
		for _, a := range agents {
			if a.p.exited() {
				t.Fatalf("%s exited\n%s", a.name, logs())
			}
		}
		if st := f.iss.Stats(); st.ReuseDetected != 0 || st.GrantsRevoked != 0 || st.Rejected != 0 {
			t.Fatalf("after %d refreshes the issuer saw a reused refresh token or refused a request: %+v\nrefresh gaps: %s\n%s",
				f.count(), st, f.gaps(), logs())
		}
		return f.count() >= loadFrom+fleetCycles
	})
	phase1Took := time.Since(phase1)
	if st := f.iss.Stats(); st.ReuseDetected != 0 || st.GrantsRevoked != 0 || st.Rejected != 0 {
		t.Fatalf("issuer after %d cycles: %+v\n%s", fleetCycles, st, logs())
	}

	// Phase 2: catch the lock holder in the middle of a refresh, kill it.
	f.iss.Hold()
	holdAt := time.Now()
	var remote string
	waitFor(t, "a refresh held at the issuer", 2*fleetLifetime, func() bool {
		inflight := f.inflightAddrs()
		if f.iss.Held() == 1 && len(inflight) == 1 {
			remote = inflight[0]
			return true
		}
		return false
	})
	heldAfter := time.Since(holdAt)
	beforeKill := f.count() // a refresh that passed the gate just before Hold counts
	pids := make(map[int]*fleetAgent)
	for _, a := range agents {
		pids[a.p.cmd.Process.Pid] = a
	}
	victimPid, err := socketOwner(remote, f.port, pids)
	if err != nil {
		t.Fatalf("finding the agent whose refresh is held (%s): %v", remote, err)
	}
	victim := pids[victimPid]
	// What each agent's API says at that moment (waiters are "refreshing"
	// too: they wait for the holder's token).
	var states []string
	for _, a := range agents {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		l, err := a.c.List(ctx)
		cancel()
		if err != nil || len(l) != 1 {
			t.Fatalf("%s: status: %v %v", a.name, l, err)
		}
		states = append(states, fmt.Sprintf("%s=%s", a.name, l[0].State))
		if a == victim && l[0].RefreshingSince.IsZero() {
			t.Errorf("%s holds the lock with its request at the issuer, but its status shows no refresh in flight: %+v", a.name, l[0])
		}
	}
	victim.stopFetching() // its callers would see the connection refused
	victim.p.signal(syscall.SIGKILL)
	killedAt := time.Now()
	if code := victim.p.wait(10 * time.Second); code != -1 {
		t.Fatalf("%s: exit code %d after SIGKILL", victim.name, code)
	}
	waitFor(t, "the held request abandoned", 5*time.Second, func() bool {
		return f.iss.Stats().Abandoned == 1 && f.iss.Held() == 0
	})
	f.iss.Release()
	releasedAt := time.Now()
	waitFor(t, "a surviving agent to take the refresh over", 2*fleetLifetime, func() bool { return f.count() > beforeKill })
	takeover, prev := f.record(beforeKill), f.record(beforeKill-1)
	taker := "unknown (connection closed)"
	if pid, err := socketOwner(takeover.remote, f.port, pids); err == nil {
		taker = pids[pid].name
		if pids[pid] == victim {
			t.Errorf("the killed agent refreshed")
		}
	}
	if !takeover.at.Before(prev.realExp) {
		t.Errorf("the takeover refresh completed at %v, after the token expired at %v", takeover.at.Format("05.000"), prev.realExp.Format("05.000"))
	}
	// Two more cycles by the survivors, still under load.
	waitFor(t, "two more cycles after the takeover", 3*fleetLifetime, func() bool { return f.count() >= beforeKill+3 })
	for _, a := range agents {
		a.stopFetching()
	}
	elapsed := time.Since(start)

	// The issuer: every refresh it answered went through the recording
	// handler, one grant, no reuse, one request cut off (the victim's).
	recs := f.all()
	st := f.iss.Stats()
	if st.Refreshes != len(recs) || st.ReuseDetected != 0 || st.GrantsRevoked != 0 || st.Rejected != 0 ||
		st.Abandoned != 1 || st.Grants != 1 {
		t.Errorf("issuer: %+v, %d refreshes recorded: want them equal, no reuse, no revocation, no rejection, 1 abandoned, 1 grant", st, len(recs))
	}
	// One refresh per cycle: each after the previous token's window opened
	// (so never a second refresh of a token just issued) and before that
	// token expired.
	minGap, maxGap := time.Hour, time.Duration(0)
	for i := 1; i < len(recs); i++ {
		gap := recs[i].at.Sub(recs[i-1].at)
		minGap, maxGap = min(minGap, gap), max(maxGap, gap)
		if gap < fleetMinGap {
			t.Errorf("refreshes %d and %d only %v apart: two refreshes in one cycle", i-1, i, gap.Round(time.Millisecond))
		}
		if !recs[i].at.Before(recs[i-1].realExp) {
			t.Errorf("refresh %d completed at %v, after the previous token expired at %v", i, recs[i].at.Format("05.000"), recs[i-1].realExp.Format("05.000"))
		}
	}
	// Every agent installed every new token: the tokens issued under load
	// and replaced before the kill were served by all three, those issued
	// after the takeover (and replaced) by both survivors.
	for i := loadFrom + 1; i < beforeKill-1; i++ {
		for _, a := range agents {
			if !a.served(recs[i].access) {
				t.Errorf("token of refresh %d (of %d) never served by %s", i, len(recs), a.name)
			}
		}
	}
	for i := beforeKill; i < len(recs)-1; i++ {
		for _, a := range agents {
			if a != victim && !a.served(recs[i].access) {
				t.Errorf("token of refresh %d (after the takeover) never served by %s", i, a.name)
			}
		}
	}
	// Callers.
	res.mu.Lock()
	defer res.mu.Unlock()
	for _, a := range agents {
		t.Logf("%s: %d fetches, %d errors", a.name, a.fetches.Load(), a.errs.Load())
		if a.fetches.Load() == 0 {
			t.Errorf("%s: no fetch", a.name)
		}
	}
	if len(res.bad) > 0 {
		t.Errorf("%d bad fetches (errors, unknown or expired tokens); first: %s", res.nbad, strings.Join(res.bad, "\n\t"))
	}

	t.Logf("%d agents, %d refreshes (%d cycles under load before the kill, in %v), gaps between refreshes %v..%v, issuer %+v",
		len(agents), len(recs), beforeKill-loadFrom, phase1Took.Round(time.Millisecond), minGap.Round(time.Millisecond), maxGap.Round(time.Millisecond), st)
	t.Logf("fetches: %d, expired: 0 by the issuer's expiry; least life left at receipt %v; expires_at (truncated to the second) at or before receipt: %d",
		res.n, res.minLeft.Round(time.Millisecond), res.truncPast)
	t.Logf("kill: held %v after Hold (states %s); %s held the lock (pid %d, request from %s) and was SIGKILLed; released %v after the kill; %s refreshed %v after the kill, %v before the token expired",
		heldAfter.Round(time.Millisecond), strings.Join(states, " "), victim.name, victimPid, remote, releasedAt.Sub(killedAt).Round(time.Millisecond),
		taker, takeover.at.Sub(killedAt).Round(time.Millisecond), prev.realExp.Sub(takeover.at).Round(time.Millisecond))
	t.Logf("whole test %v", elapsed.Round(time.Millisecond))
	if t.Failed() {
		t.Log(logs())
	}
}

// fleetIssuer is a devissuer served through a handler that records every
// answered refresh (when, from which connection, the access token and its
// real expiry) and the token requests in flight.
type fleetIssuer struct {
	iss  *devissuer.Issuer
	port int

	mu       sync.Mutex
	inflight map[string]int // remote address -> requests
	recs     []fleetRefresh
	expiry   map[string]time.Time // access token -> the issuer's expiry
}

type fleetRefresh struct {
	at      time.Time // the answer was about to be sent
	remote  string
	access  string
	realExp time.Time
}

func newFleetIssuer(t *testing.T) *fleetIssuer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	iss, err := devissuer.New(devissuer.Config{
		URL:       "http://" + ln.Addr().String(),
		Clients:   []devissuer.Client{{ID: "cli", Secret: "cli-secret"}},
		AccessTTL: fleetLifetime,
	})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	f := &fleetIssuer{iss: iss, port: ln.Addr().(*net.TCPAddr).Port, inflight: make(map[string]int), expiry: make(map[string]time.Time)}
	srv := &http.Server{Handler: http.HandlerFunc(f.serve), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		iss.Release()
		srv.Close()
		<-done
	})
	return f
}

func (f *fleetIssuer) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != devissuer.PathToken {
		f.iss.Handler().ServeHTTP(w, r)
		return
	}
	f.mu.Lock()
	f.inflight[r.RemoteAddr]++
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		if f.inflight[r.RemoteAddr]--; f.inflight[r.RemoteAddr] == 0 {
			delete(f.inflight, r.RemoteAddr)
		}
		f.mu.Unlock()
	}()
	// The answer is buffered, and recorded before the agent can see it, so
	// a token is known here before any caller can receive it.
	cw := &captureWriter{h: w.Header()}
	f.iss.Handler().ServeHTTP(cw, r)
	if cw.status == 0 && cw.body.Len() == 0 {
		return // abandoned
	}
	if cw.status == 0 {
		cw.status = http.StatusOK
	}
	if cw.status == http.StatusOK {
		var body struct {
			AccessToken string `json:"access_token"`
		}
		if err := json.Unmarshal(cw.body.Bytes(), &body); err == nil && body.AccessToken != "" {
			in := f.iss.Introspect(body.AccessToken)
			f.mu.Lock()
			f.recs = append(f.recs, fleetRefresh{at: time.Now(), remote: r.RemoteAddr, access: body.AccessToken, realExp: in.Expiry})
			f.expiry[body.AccessToken] = in.Expiry
			f.mu.Unlock()
		}
	}
	w.WriteHeader(cw.status)
	_, _ = w.Write(cw.body.Bytes())
}

func (f *fleetIssuer) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.recs)
}

func (f *fleetIssuer) record(i int) fleetRefresh {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.recs[i]
}

func (f *fleetIssuer) all() []fleetRefresh {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fleetRefresh(nil), f.recs...)
}

// gaps describes the time between consecutive refreshes.
func (f *fleetIssuer) gaps() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b strings.Builder
	for i := 1; i < len(f.recs); i++ {
		fmt.Fprintf(&b, "%v ", f.recs[i].at.Sub(f.recs[i-1].at).Round(time.Millisecond))
	}
	return b.String()
}

func (f *fleetIssuer) inflightAddrs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var a []string
	for addr := range f.inflight {
		a = append(a, addr)
	}
	return a
}

func (f *fleetIssuer) expiryOf(access string) (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	exp, ok := f.expiry[access]
	return exp, ok
}

type captureWriter struct {
	h      http.Header
	status int
	body   bytes.Buffer
}

func (c *captureWriter) Header() http.Header { return c.h }
func (c *captureWriter) WriteHeader(s int) {
	if c.status == 0 {
		c.status = s
	}
}
func (c *captureWriter) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	return c.body.Write(p)
}

// fleetAgent is one agent process and its fetchers.
type fleetAgent struct {
	name string
	p    *proc
	c    *client.Client

	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
	fetches  atomic.Int64
	errs     atomic.Int64

	mu   sync.Mutex
	seen map[string]bool // access tokens served
}

func (a *fleetAgent) served(access string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.seen[access]
}

// fleetResults collects what the callers saw.
type fleetResults struct {
	f         *fleetIssuer
	mu        sync.Mutex
	n         int
	nbad      int
	bad       []string // the first few
	minLeft   time.Duration
	truncPast int // expires_at (truncated) not after the receipt, the token still valid
}

func (r *fleetResults) add(a *fleetAgent, tok *client.Token, err error, asked, received time.Time) {
	var problem string
	var left time.Duration
	truncPast := false
	if err == nil {
		realExp, known := r.f.expiryOf(tok.AccessToken)
		left = realExp.Sub(received)
		switch {
		case !known:
			problem = "a token the issuer never issued"
		case tok.ExpiresAt.IsZero():
			problem = "no expires_at"
		case !realExp.After(received):
			problem = fmt.Sprintf("expired token: the issuer's expiry %s, received at %s", realExp.Format("05.000"), received.Format("05.000"))
		case !tok.ExpiresAt.Add(time.Second).After(received):
			// expires_at is truncated to the second: the agent's own
			// expiry is before expires_at + 1 s.
			problem = fmt.Sprintf("expired token: expires_at %s (truncated to the second), received at %s", tok.ExpiresAt.Format("05.000"), received.Format("05.000"))
		case tok.ExpiresAt.After(realExp.Add(200 * time.Millisecond)):
			problem = fmt.Sprintf("expires_at %s after the issuer's expiry %s", tok.ExpiresAt.Format("05.000"), realExp.Format("05.000"))
		}
		truncPast = !tok.ExpiresAt.After(received)
		a.mu.Lock()
		a.seen[tok.AccessToken] = true
		a.mu.Unlock()
	} else {
		problem = "error: " + err.Error()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n++
	if err == nil && (r.n == 1 || left < r.minLeft) {
		r.minLeft = left
	}
	if truncPast && problem == "" {
		r.truncPast++
	}
	if problem != "" {
		r.nbad++
		if len(r.bad) < 5 {
			r.bad = append(r.bad, fmt.Sprintf("%s at %s (asked %s): %s", a.name, received.Format("15:04:05.000"), asked.Format("05.000"), problem))
		}
	}
}

func (a *fleetAgent) startFetching(r *fleetResults) {
	a.stop = make(chan struct{})
	a.seen = make(map[string]bool)
	for range fleetFetchers {
		a.wg.Go(func() {
			tick := time.NewTicker(fleetFetchTick)
			defer tick.Stop()
			for {
				select {
				case <-a.stop:
					return
				case <-tick.C:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				asked := time.Now()
				tok, err := a.c.Token(ctx, "api", 0)
				received := time.Now()
				cancel()
				a.fetches.Add(1)
				if err != nil {
					a.errs.Add(1)
				}
				r.add(a, tok, err, asked, received)
			}
		})
	}
}

// stopFetching stops the agent's fetchers and waits for them (a fetch
// takes at most its 10 s timeout).
func (a *fleetAgent) stopFetching() {
	if a.stop == nil {
		return
	}
	a.stopOnce.Do(func() { close(a.stop) })
	a.wg.Wait()
}

// socketOwner returns which of pids holds the client end of the TCP
// connection from remote (as the server saw it) to the server's port,
// through /proc/net/tcp{,6} and /proc/PID/fd.
func socketOwner(remote string, serverPort int, pids map[int]*fleetAgent) (int, error) {
	_, p, err := net.SplitHostPort(remote)
	if err != nil {
		return 0, err
	}
	clientPort, err := strconv.Atoi(p)
	if err != nil {
		return 0, err
	}
	var inodes []string
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		fh, err := os.Open(table)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || fields[0] == "sl" {
				continue
			}
			if hexPort(fields[1]) == clientPort && hexPort(fields[2]) == serverPort {
				inodes = append(inodes, fields[9])
			}
		}
		fh.Close()
	}
	if len(inodes) == 0 {
		return 0, fmt.Errorf("no socket from port %d to port %d", clientPort, serverPort)
	}
	for pid := range pids {
		fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
			if err != nil {
				continue
			}
			for _, ino := range inodes {
				if link == "socket:["+ino+"]" {
					return pid, nil
				}
			}
		}
	}
	return 0, fmt.Errorf("socket inode %v from port %d belongs to none of the agents", inodes, clientPort)
}

// hexPort reads the port of a /proc/net/tcp address ("0100007F:1F90").
func hexPort(addr string) int {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return -1
	}
	n, err := strconv.ParseInt(addr[i+1:], 16, 32)
	if err != nil {
		return -1
	}
	return int(n)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

package redisstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tokenkeeper/tokenkeeper"
	"go.uber.org/goleak"
	"golang.org/x/oauth2"
)

func TestMain(m *testing.M) {
	redis.SetLogger(quietLogger{}) // outages are part of the tests
	if os.Getenv(helperEnv) == "1" {
		os.Exit(helperMain())
	}
	goleak.VerifyTestMain(m)
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// redisServer is a redis-server process of a test's own.
type redisServer struct {
	t    testing.TB
	bin  string
	dir  string
	port int
	addr string

	mu   sync.Mutex
	cmd  *exec.Cmd
	exit chan struct{}
}

const installHint = "redis-server is not installed; install it with `apt-get update && apt-get install -y redis-server` (Debian/Ubuntu)"

// startRedis starts a redis-server on a free loopback port with an empty
// data directory, stopped at the end of the test. Without redis-server the
// test is skipped, or fails if TOKENKEEPER_REQUIRE_REDIS=1.
func startRedis(t testing.TB) *redisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("TOKENKEEPER_REQUIRE_REDIS") == "1" {
			t.Fatal(installHint)
		}
		t.Skip(installHint)
	}
	r := &redisServer{t: t, bin: bin, dir: t.TempDir()}
	var last error
	for range 5 {
		r.port = freePort(t)
		r.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port))
		if last = r.start(); last == nil {
			t.Cleanup(r.stop)
			return r
		}
	}
	t.Fatalf("starting redis-server: %v", last)
	return nil
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// start runs redis-server on r.port and waits until it answers.
func (r *redisServer) start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	log, err := os.OpenFile(r.dir+"/redis.log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(r.bin, "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", r.dir, "--daemonize", "no")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return err
	}
	exit := make(chan struct{})
	go func() { _ = cmd.Wait(); log.Close(); close(exit) }()
	r.cmd, r.exit = cmd, exit

	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", r.addr, 100*time.Millisecond)
		if err == nil {
			_, _ = c.Write([]byte("PING\r\n"))
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			buf := make([]byte, 7)
			n, _ := c.Read(buf)
			c.Close()
			if string(buf[:n]) == "+PONG\r\n" {
				return nil
			}
		}
		select {
		case <-exit:
			r.cmd = nil
			return fmt.Errorf("redis-server on port %d exited (see %s/redis.log)", r.port, r.dir)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exit
			r.cmd = nil
			return fmt.Errorf("redis-server on port %d did not answer", r.port)
		}
	}
}

// stop kills redis-server (as a crash would) and waits for it to exit.
func (r *redisServer) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	<-r.exit
	r.cmd = nil
}

// restart starts redis-server again on the same port, with no data.
func (r *redisServer) restart() {
	r.t.Helper()
	if err := r.start(); err != nil {
		r.t.Fatal(err)
	}
}

// client returns a client with short timeouts, closed at the end of the test.
func (r *redisServer) client(t testing.TB) *redis.Client {
	c := redis.NewClient(&redis.Options{
		Addr:            r.addr,
		DialTimeout:     250 * time.Millisecond,
		ReadTimeout:     500 * time.Millisecond,
		WriteTimeout:    500 * time.Millisecond,
		MaxRetries:      1,
		MinRetryBackoff: 5 * time.Millisecond,
		MaxRetryBackoff: 20 * time.Millisecond,
		PoolTimeout:     time.Second,
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// newStore returns a store on its own client, closed at the end of the test.
func newStore(t testing.TB, r *redisServer, opts Options) *Store {
	t.Helper()
	s, err := New(r.client(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

// idp is a fake identity provider shared by all the keepers of a test. It
// rotates refresh tokens (unless rotate is false), counts calls per token,
// and rejects and counts any refresh token presented twice.
type idp struct {
	lifetime time.Duration
	rotate   bool

	mu     sync.Mutex
	n      int
	issued map[string]string // refresh token → token name
	used   map[string]bool
	calls  map[string][]idpCall
	reused atomic.Int64
	// before, if set, runs at the start of each refresh, before the refresh
	// token is sent; after runs once the token is issued, before the answer
	// is returned.
	before func(ctx context.Context, name, caller string) error
	after  func(name, caller string)
}

type idpCall struct {
	at      time.Time
	caller  string
	rt      string
	access  string
	expiry  time.Time
	prevExp time.Time
}

func newIDP(lifetime time.Duration, rotate bool) *idp {
	return &idp{lifetime: lifetime, rotate: rotate, issued: make(map[string]string),
		used: make(map[string]bool), calls: make(map[string][]idpCall)}
}

// seed issues the first token of name.
func (p *idp) seed(name string) *oauth2.Token {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.issueLocked(name, "")
}

func (p *idp) issueLocked(name, rt string) *oauth2.Token {
	p.n++
	if rt == "" || p.rotate {
		rt = fmt.Sprintf("rt-%s-%d", name, p.n)
		p.issued[rt] = name
	}
	return &oauth2.Token{
		AccessToken:  fmt.Sprintf("at-%s-%d", name, p.n),
		TokenType:    "Bearer",
		RefreshToken: rt,
		Expiry:       time.Now().Add(p.lifetime),
	}
}

var errReused = errors.New("refresh token reused")

func (p *idp) refresh(ctx context.Context, name, caller string, cur *oauth2.Token) (*oauth2.Token, error) {
	if p.before != nil {
		if err := p.before(ctx, name, caller); err != nil {
			return nil, err
		}
	}
	// Like an HTTP client, do not send once the context is done.
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if cur == nil || cur.RefreshToken == "" {
		return nil, tokenkeeper.Permanent(errors.New("no refresh token"))
	}
	p.mu.Lock()
	if p.issued[cur.RefreshToken] != name {
		p.mu.Unlock()
		return nil, tokenkeeper.Permanent(errors.New("unknown refresh token"))
	}
	if p.rotate {
		if p.used[cur.RefreshToken] {
			p.reused.Add(1)
			p.mu.Unlock()
			return nil, &tokenkeeper.RefreshError{Code: "invalid_grant", Permanent: true, Err: errReused}
		}
		p.used[cur.RefreshToken] = true
	}
	tok := p.issueLocked(name, cur.RefreshToken)
	p.calls[name] = append(p.calls[name], idpCall{at: time.Now(), caller: caller, rt: cur.RefreshToken,
		access: tok.AccessToken, expiry: tok.Expiry, prevExp: cur.Expiry})
	after := p.after
	p.mu.Unlock()
	if after != nil {
		after(name, caller)
	}
	return tok, nil
}

func (p *idp) source(name, caller string) tokenkeeper.Source {
	return tokenkeeper.SourceFunc(func(ctx context.Context, cur *oauth2.Token) (*oauth2.Token, error) {
		return p.refresh(ctx, name, caller, cur)
	})
}

func (p *idp) callsOf(name string) []idpCall {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]idpCall(nil), p.calls[name]...)
}

func (p *idp) total() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, c := range p.calls {
		n += len(c)
	}
	return n
}

// latest returns the access token of name's last issued token.
func (p *idp) latest(name string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.calls[name]
	if len(c) == 0 {
		return ""
	}
	return c[len(c)-1].access
}

// counter counts the commands a client sends.
type counter struct{ n atomic.Int64 }

func (c *counter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *counter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}
func (c *counter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// freezer makes a client hang, as if its process were paused: while frozen,
// every command waits until it is thawed or its ctx ends.
type freezer struct {
	mu     sync.Mutex
	frozen chan struct{} // nil: not frozen
}

func (f *freezer) freeze() {
	f.mu.Lock()
	if f.frozen == nil {
		f.frozen = make(chan struct{})
	}
	f.mu.Unlock()
}

func (f *freezer) thaw() {
	f.mu.Lock()
	if f.frozen != nil {
		close(f.frozen)
		f.frozen = nil
	}
	f.mu.Unlock()
}

func (f *freezer) wait(ctx context.Context) error {
	f.mu.Lock()
	ch := f.frozen
	f.mu.Unlock()
	if ch == nil {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *freezer) DialHook(next redis.DialHook) redis.DialHook { return next }
func (f *freezer) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if err := f.wait(ctx); err != nil {
			return err
		}
		return next(ctx, cmd)
	}
}
func (f *freezer) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if err := f.wait(ctx); err != nil {
			return err
		}
		return next(ctx, cmds)
	}
}

// eventLog collects a store's events.
type eventLog struct {
	mu sync.Mutex
	ev []Event
}

func (l *eventLog) add(e Event) {
	l.mu.Lock()
	l.ev = append(l.ev, e)
	l.mu.Unlock()
}

func (l *eventLog) count(k EventKind) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.ev {
		if e.Kind == k {
			n++
		}
	}
	return n
}

// newKeeper starts a keeper on s, attached to it, closed at the end of the
// test (before s).
func newKeeper(t testing.TB, s *Store, pol tokenkeeper.Policy) *tokenkeeper.Keeper {
	t.Helper()
	k, err := tokenkeeper.New(tokenkeeper.Config{Store: s, Policy: pol, Location: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	if err := s.Attach(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// stallWatch measures how late a 10 ms ticker fires: on a machine so loaded
// that the whole test process stops for a while, the tests' timing
// assertions (which assume the process runs) cannot hold, whatever the code
// does.
type stallWatch struct {
	max  atomic.Int64
	stop chan struct{}
	done chan struct{}
}

func watchStalls(t testing.TB) *stallWatch {
	w := &stallWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		const period = 10 * time.Millisecond
		tick := time.NewTicker(period)
		defer tick.Stop()
		last := time.Now()
		for {
			select {
			case <-w.stop:
				return
			case now := <-tick.C:
				if late := now.Sub(last) - period; late > time.Duration(w.max.Load()) {
					w.max.Store(int64(late))
				}
				last = now
			}
		}
	}()
	t.Cleanup(w.close)
	return w
}

func (w *stallWatch) close() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// stalled reports whether the process stopped for longer than limit, and logs it.
func (w *stallWatch) stalled(t testing.TB, limit time.Duration) bool {
	t.Helper()
	m := time.Duration(w.max.Load())
	if m > limit {
		t.Logf("the test process stalled for %v (machine overloaded): timing assertions relaxed", m.Round(time.Millisecond))
		return true
	}
	return false
}

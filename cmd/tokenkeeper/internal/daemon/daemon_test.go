package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/agent"
	"github.com/tokenkeeper/tokenkeeper/cmd/tokenkeeper/internal/client"
	"github.com/tokenkeeper/tokenkeeper/filestore"
	"github.com/tokenkeeper/tokenkeeper/internal/config"
	"github.com/tokenkeeper/tokenkeeper/internal/devissuer"
	"go.uber.org/goleak"
	"golang.org/x/oauth2"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// env is a test's issuer and directory.
type env struct {
	t      *testing.T
	dir    string
	iss    *devissuer.Issuer
	grants map[string]string // token -> grant ID
}

func newEnv(t *testing.T, ttl time.Duration) *env {
	t.Helper()
	// Short: a Unix socket path must fit in 104 bytes.
	dir, err := os.MkdirTemp("", "tkd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	iss, err := devissuer.Start(devissuer.Config{
		Clients:   []devissuer.Client{{ID: "cli", Secret: "cli-secret"}},
		AccessTTL: ttl,
	}, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { iss.Close() })
	e := &env{t: t, dir: dir, iss: iss, grants: make(map[string]string)}
	e.write("client.secret", "cli-secret")
	return e
}

func (e *env) write(name, content string) {
	e.t.Helper()
	if err := os.WriteFile(filepath.Join(e.dir, name), []byte(content+"\n"), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// grant makes a grant for token name and writes its refresh token file.
func (e *env) grant(name string) {
	e.t.Helper()
	rt, gid, err := e.iss.Issue(devissuer.GrantOptions{ClientID: "cli", Scopes: []string{"openid", "api"}})
	if err != nil {
		e.t.Fatal(err)
	}
	e.grants[name] = gid
	e.write(name+".rt", rt)
}

func (e *env) oidcToken(name, policy string) string {
	return fmt.Sprintf(`
  - name: %[1]s
    source:
      type: oidc
      issuer: %[2]s
      client_id: cli
      client_secret_file: client.secret
      refresh_token_file: %[1]s.rt
      scopes: [openid, api]
%[3]s`, name, e.iss.URL(), policy)
}

// config writes and loads a configuration.
func (e *env) config(head string, tokens ...string) *config.Config {
	e.t.Helper()
	body := head + "\ntokens:" + strings.Join(tokens, "")
	if len(tokens) == 0 {
		body = head + "\ntokens: []\n"
	}
	path := filepath.Join(e.dir, "agent.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		e.t.Fatal(err)
	}
	cfg, err := config.Load(path, config.Options{})
	if err != nil {
		e.t.Fatalf("config: %v\n%s", err, body)
	}
	return cfg
}

func (e *env) unixHead() string {
	return "listen: unix:" + filepath.Join(e.dir, "a.sock") + "\nstore: {path: tokens.db}\n"
}

func start(t *testing.T, cfg *config.Config, opts Options) *Daemon {
	t.Helper()
	d, err := Start(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func clientFor(t *testing.T, d *Daemon) *client.Client {
	c := client.New(d.Network(), d.Address(), d.Secret())
	t.Cleanup(c.Close)
	return c
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %v", what, limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func fetch(t *testing.T, c *client.Client, name string) *client.Token {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tok, err := c.Token(ctx, name, 0)
	if err != nil {
		t.Fatalf("token %s: %v", name, err)
	}
	return tok
}

func TestStartServeRestartResumes(t *testing.T) {
	e := newEnv(t, time.Hour)
	e.grant("a")
	e.grant("b")
	cmd := filepath.Join(e.dir, "cmd.sh")
	os.WriteFile(cmd, []byte("#!/bin/sh\necho '{\"access_token\":\"from-command\",\"expires_in\":3600}'\n"), 0o700)
	cfg := e.config(e.unixHead(), e.oidcToken("a", ""), e.oidcToken("b", ""),
		fmt.Sprintf(`
  - name: cc
    source: {type: client_credentials, token_url: %s/token, client_id: cli, client_secret_file: client.secret, auth_style: post}
  - name: cmd
    source: {type: command, command: [%s]}
`, e.iss.URL(), cmd))
	evc := make(chan tokenkeeper.Event, 1000)
	d := start(t, cfg, Options{Version: "test", OnEvent: func(ev tokenkeeper.Event) {
		select {
		case evc <- ev:
		default:
		}
	}})
	c := clientFor(t, d)
	if !strings.HasPrefix(d.Addr(), "unix:") || d.Secret() != "" || d.Config() != cfg {
		t.Errorf("addr %q secret %q", d.Addr(), d.Secret())
	}
	for _, name := range []string{"a", "b", "cc"} {
		tok := fetch(t, c, name)
		if in := e.iss.Introspect(tok.AccessToken); !in.Active {
			t.Errorf("token %s is not active at the issuer", name)
		}
	}
	if tok := fetch(t, c, "cmd"); tok.AccessToken != "from-command" {
		t.Errorf("command token = %q", tok.AccessToken)
	}
	if tok := fetch(t, c, "a"); tok.IDToken == "" {
		t.Error("no id_token")
	}
	if ev := <-evc; ev.Kind == 0 {
		t.Error("OnEvent got a zero event")
	}
	sts, err := c.List(context.Background())
	if err != nil || len(sts) != 4 {
		t.Fatalf("list: %v %v", sts, err)
	}
	before := e.iss.Stats()
	aTok := fetch(t, c, "a").AccessToken
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "a.sock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind: %v", err)
	}

	// A new agent resumes every session from the store: the same access
	// tokens, no request to the issuer, no reuse.
	d2 := start(t, cfg, Options{})
	c2 := clientFor(t, d2)
	if got := fetch(t, c2, "a").AccessToken; got != aTok {
		t.Error("the restarted agent did not resume token a")
	}
	after := e.iss.Stats()
	if after.Refreshes != before.Refreshes || after.ReuseDetected != 0 || after.Grants != 2 {
		t.Errorf("issuer stats before %+v after %+v", before, after)
	}
	// Forcing refreshes rotates from the stored refresh tokens.
	for _, name := range []string{"a", "b"} {
		if _, err := c2.Refresh(context.Background(), name); err != nil {
			t.Fatalf("refresh %s: %v", name, err)
		}
	}
	if st := e.iss.Stats(); st.ReuseDetected != 0 || st.Refreshes != before.Refreshes+2 {
		t.Errorf("after forced refreshes: %+v", st)
	}
}

func TestNewRefreshTokenStartsNewSession(t *testing.T) {
	e := newEnv(t, time.Hour)
	e.grant("a")
	cfg := e.config(e.unixHead(), e.oidcToken("a", ""))
	d := start(t, cfg, Options{})
	old := fetch(t, clientFor(t, d), "a").AccessToken
	d.Close()
	oldGrant := e.grants["a"]

	// The user logged in again: a new grant, a new refresh token file.
	e.grant("a")
	cfg = e.config(e.unixHead(), e.oidcToken("a", ""))
	d2 := start(t, cfg, Options{})
	tok := fetch(t, clientFor(t, d2), "a")
	if tok.AccessToken == old {
		t.Fatal("the agent kept the old session")
	}
	if in := e.iss.Introspect(tok.AccessToken); in.GrantID != e.grants["a"] || in.GrantID == oldGrant {
		t.Errorf("token from grant %s, want %s", in.GrantID, e.grants["a"])
	}
}

func TestReload(t *testing.T) {
	e := newEnv(t, time.Hour)
	for _, n := range []string{"keep", "change", "drop", "new"} {
		e.grant(n)
	}
	cfg := e.config(e.unixHead(), e.oidcToken("keep", ""), e.oidcToken("change", ""), e.oidcToken("drop", ""))
	d := start(t, cfg, Options{})
	c := clientFor(t, d)
	keepTok := fetch(t, c, "keep").AccessToken
	changeTok := fetch(t, c, "change").AccessToken
	fetch(t, c, "drop") // its first refresh must be counted before the baseline
	keepHandle, _ := d.Keeper().Handle("keep")
	refreshes := e.iss.Stats().Refreshes

	// A config whose new token cannot be built is rejected whole.
	bad := *e.config(e.unixHead(), e.oidcToken("keep", ""), e.oidcToken("new", ""))
	bad.Tokens = append([]config.Token(nil), bad.Tokens...)
	bad.Tokens[1].Source.Issuer = "::not a url"
	if _, err := d.Reload(&bad); err == nil {
		t.Fatal("a config with a broken source was accepted")
	}
	if names := len(d.Keeper().Names()); names != 3 {
		t.Fatalf("the rejected reload changed the tokens: %d", names)
	}

	next := e.config("listen: unix:"+filepath.Join(e.dir, "other.sock")+"\nstore: {path: other.db}\nkeeper: {workers: 2}\nlog: {level: debug}\nagent: {history: 1h}\n",
		e.oidcToken("keep", ""), e.oidcToken("change", "    policy: {idle_gap: 7s}\n"), e.oidcToken("new", ""))
	ch, err := d.Reload(next)
	if err != nil {
		t.Fatal(err)
	}
	want := Change{Added: []string{"new"}, Removed: []string{"drop"}, Replaced: []string{"change"},
		Unchanged: []string{"keep"}, NeedRestart: []string{"listen", "store", "keeper", "log", "agent.history"}}
	if fmt.Sprint(ch) != fmt.Sprint(want) {
		t.Errorf("change = %+v, want %+v", ch, want)
	}
	if s := ch.String(); !strings.Contains(s, "added new; removed drop; replaced change; need a restart: listen,store,keeper,log,agent.history") {
		t.Errorf("Change.String = %q", s)
	}
	if h, _ := d.Keeper().Handle("keep"); h != keepHandle {
		t.Error("an unchanged token was replaced")
	}
	if got := fetch(t, c, "keep").AccessToken; got != keepTok {
		t.Error("an unchanged token lost its token")
	}
	if got := fetch(t, c, "change").AccessToken; got != changeTok {
		t.Error("a changed token did not keep its current token")
	}
	if _, err := c.Token(context.Background(), "drop", 0); err == nil {
		t.Error("a removed token is still served")
	}
	fetch(t, c, "new")
	if st := e.iss.Stats(); st.Refreshes != refreshes+1 || st.ReuseDetected != 0 {
		t.Errorf("issuer: %+v (want exactly one refresh, for the new token)", st)
	}
	h, _ := d.Keeper().Handle("change")
	if h.Status().State != tokenkeeper.StateValid {
		t.Errorf("changed token state %v", h.Status().State)
	}
	if got := d.Config(); got.Listen != cfg.Listen || got.Store.Path != cfg.Store.Path || len(got.Tokens) != 3 {
		t.Errorf("config in force: listen %v store %v", got.Listen, got.Store)
	}

	// The changed token still rotates from the right refresh token.
	if _, err := c.Refresh(context.Background(), "change"); err != nil {
		t.Fatal(err)
	}
	// Reloading the same file changes nothing.
	ch, err = d.Reload(next)
	if err != nil || len(ch.Added)+len(ch.Removed)+len(ch.Replaced) != 0 || ch.String() != "need a restart: listen,store,keeper,log,agent.history" {
		t.Errorf("same config again: %+v %v", ch, err)
	}
	if (Change{}).String() != "no change" {
		t.Error("empty Change.String")
	}
	if st := e.iss.Stats(); st.ReuseDetected != 0 {
		t.Errorf("reuse detected: %+v", st)
	}
	d.Close()
	if _, err := d.Reload(next); err == nil {
		t.Error("Reload after Close succeeded")
	}
}

func TestReloadWaitsForRefreshInFlight(t *testing.T) {
	e := newEnv(t, time.Hour)
	e.grant("a")
	cfg := e.config(e.unixHead(), e.oidcToken("a", ""))
	d := start(t, cfg, Options{})
	c := clientFor(t, d)
	fetch(t, c, "a")

	e.iss.Hold()
	done := make(chan error, 1)
	go func() {
		_, err := c.Refresh(context.Background(), "a")
		done <- err
	}()
	waitFor(t, "refresh held", 5*time.Second, func() bool { return e.iss.Held() == 1 })
	reloaded := make(chan error, 1)
	go func() {
		_, err := d.Reload(e.config(e.unixHead(), e.oidcToken("a", "    policy: {idle_gap: 9s}\n")))
		reloaded <- err
	}()
	select {
	case err := <-reloaded:
		t.Fatalf("Reload did not wait for the refresh in flight: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	e.iss.Release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := <-reloaded; err != nil {
		t.Fatal(err)
	}
	// The replacement holds the rotated refresh token: refreshing works.
	if _, err := c.Refresh(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	if st := e.iss.Stats(); st.ReuseDetected != 0 || st.Refreshes != 3 {
		t.Errorf("issuer: %+v", st)
	}
}

func TestReaddWaitsForRemovedTokensRefresh(t *testing.T) {
	e := newEnv(t, time.Hour)
	e.grant("a")
	e.grant("b")
	withA := e.config(e.unixHead(), e.oidcToken("a", ""), e.oidcToken("b", ""))
	d := start(t, withA, Options{})
	c := clientFor(t, d)
	fetch(t, c, "a")
	fetch(t, c, "b") // its first refresh is done: only a's is held below

	e.iss.Hold()
	done := make(chan error, 1)
	go func() {
		_, err := c.Refresh(context.Background(), "a")
		done <- err
	}()
	waitFor(t, "refresh held", 5*time.Second, func() bool { return e.iss.Held() == 1 })
	// Removing "a" does not wait for its refresh.
	if _, err := d.Reload(e.config(e.unixHead(), e.oidcToken("b", ""))); err != nil {
		t.Fatal(err)
	}
	// Adding it back must wait for that refresh: until it has saved the
	// rotated refresh token, the store holds a spent one.
	reloaded := make(chan error, 1)
	go func() {
		_, err := d.Reload(e.config(e.unixHead(), e.oidcToken("a", ""), e.oidcToken("b", "")))
		reloaded <- err
	}()
	select {
	case err := <-reloaded:
		t.Fatalf("Reload added the token back while its old refresh was running: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	e.iss.Release()
	if err := <-reloaded; err != nil {
		t.Fatal(err)
	}
	// The refresh's caller learns that the token was removed under it.
	var ce *client.Error
	if err := <-done; !errors.As(err, &ce) || ce.Code != agent.CodeUnknownToken {
		t.Errorf("refresh of a removed token: %v", err)
	}
	// The new token resumes from the refresh token the removed one saved.
	if _, err := c.Refresh(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	if st := e.iss.Stats(); st.ReuseDetected != 0 || st.Refreshes != 4 {
		t.Errorf("issuer: %+v", st)
	}
}

func TestCloseLetsRefreshFinish(t *testing.T) {
	e := newEnv(t, time.Hour)
	e.grant("a")
	cfg := e.config(e.unixHead(), e.oidcToken("a", ""))
	d := start(t, cfg, Options{})
	c := clientFor(t, d)
	fetch(t, c, "a")
	e.iss.Hold()
	go c.Refresh(context.Background(), "a")
	waitFor(t, "refresh held", 5*time.Second, func() bool { return e.iss.Held() == 1 })
	closed := make(chan error, 1)
	go func() { closed <- d.Close() }()
	select {
	case <-closed:
		t.Fatal("Close did not wait for the refresh in flight")
	case <-time.After(100 * time.Millisecond):
	}
	e.iss.Release()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	// The refreshed token was saved: a new agent resumes with it, and its
	// next refresh is no reuse.
	d2 := start(t, cfg, Options{})
	c2 := clientFor(t, d2)
	if _, err := c2.Refresh(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	if st := e.iss.Stats(); st.ReuseDetected != 0 || st.Refreshes != 3 {
		t.Errorf("issuer: %+v", st)
	}
}

func TestCloseCancelsRefreshAfterDrainTimeout(t *testing.T) {
	defer func(d time.Duration) { DrainTimeout = d }(DrainTimeout)
	DrainTimeout = 200 * time.Millisecond
	e := newEnv(t, time.Hour)
	e.grant("a")
	d := start(t, e.config(e.unixHead(), e.oidcToken("a", "")), Options{})
	c := clientFor(t, d)
	fetch(t, c, "a")
	e.iss.Hold()
	defer e.iss.Release()
	done := make(chan error, 1)
	go func() {
		_, err := c.Refresh(context.Background(), "a")
		done <- err
	}()
	waitFor(t, "refresh held", 5*time.Second, func() bool { return e.iss.Held() == 1 })
	start := time.Now()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("Close took %v with DrainTimeout %v", el, DrainTimeout)
	}
	if err := <-done; err == nil {
		t.Error("a refresh cancelled at shutdown reported success")
	}
}

func TestTCPWithSecret(t *testing.T) {
	e := newEnv(t, time.Hour)
	e.grant("a")
	cfg := e.config("listen: 127.0.0.1:0\nsecret_file: sec/agent.secret\nstore: {type: memory}\n", e.oidcToken("a", ""))
	d := start(t, cfg, Options{})
	if d.Network() != "tcp" || d.Secret() == "" || !strings.HasPrefix(d.Addr(), "127.0.0.1:") {
		t.Fatalf("network %s addr %s", d.Network(), d.Addr())
	}
	fi, err := os.Stat(filepath.Join(e.dir, "sec", "agent.secret"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret file: %v %v", fi, err)
	}
	fetch(t, clientFor(t, d), "a")
	anon := client.New("tcp", d.Address(), "")
	defer anon.Close()
	_, err = anon.Token(context.Background(), "a", 0)
	var ae *client.Error
	if !errors.As(err, &ae) || ae.Status != 401 {
		t.Errorf("without the secret: %v", err)
	}
}

func TestStartFailuresLeaveNothing(t *testing.T) {
	e := newEnv(t, time.Hour)
	e.grant("a")
	cfg := e.config(e.unixHead(), e.oidcToken("a", ""))
	d := start(t, cfg, Options{})

	// A second agent on the same socket.
	if _, err := Start(cfg, Options{}); !errors.Is(err, agent.ErrSocketInUse) {
		t.Errorf("second agent on the socket: %v", err)
	}
	// Another socket, same store: the store is locked.
	cfg2 := *cfg
	cfg2.Listen = config.Listen{Network: "unix", Address: filepath.Join(e.dir, "b.sock")}
	if _, err := Start(&cfg2, Options{}); !errors.Is(err, filestore.ErrLocked) {
		t.Errorf("second agent on the store: %v", err)
	}
	if _, err := os.Stat(cfg2.Listen.Address); !errors.Is(err, os.ErrNotExist) {
		t.Error("a failed start left its socket behind")
	}
	d.Close()

	// A store file that is not a store.
	e.write("foreign.db", "this is not a database")
	cfg3 := *cfg
	cfg3.Store.Path = filepath.Join(e.dir, "foreign.db")
	if _, err := Start(&cfg3, Options{}); !errors.Is(err, filestore.ErrForeignFile) {
		t.Errorf("foreign store: %v", err)
	}
	// A source that cannot be built.
	cfg4 := *cfg
	cfg4.Tokens = []config.Token{cfg.Tokens[0]}
	cfg4.Tokens[0].Source.Issuer = "::bad"
	if _, err := Start(&cfg4, Options{}); err == nil || !strings.Contains(err.Error(), `token "a"`) {
		t.Errorf("broken source: %v", err)
	}
	if err := Check(&cfg4); err == nil {
		t.Error("Check accepted a broken source")
	}
	if err := Check(cfg); err != nil {
		t.Error(err)
	}
	// A cognito source in no region.
	cfg5 := *cfg
	cfg5.Tokens = []config.Token{{Name: "x", Source: config.Source{Type: "cognito", Region: "nowhere", ClientID: "x"}}}
	if err := Check(&cfg5); err == nil {
		t.Error("Check accepted a cognito source without a region")
	}
	// A TCP listener whose secret file cannot be created.
	cfg6 := *cfg
	cfg6.Listen = config.Listen{Network: "tcp", Address: "127.0.0.1:0"}
	e.write("notadir", "x")
	cfg6.SecretFile = filepath.Join(e.dir, "notadir", "agent.secret")
	if _, err := Start(&cfg6, Options{}); err == nil {
		t.Error("unusable secret file accepted")
	}
	// The sessions are intact: a normal start works.
	d2 := start(t, cfg, Options{})
	fetch(t, clientFor(t, d2), "a")
	if st := e.iss.Stats(); st.ReuseDetected != 0 {
		t.Errorf("issuer: %+v", st)
	}
}

func TestMemoryStore(t *testing.T) {
	s := newMemoryStore()
	ctx := context.Background()
	if _, err := s.Load(ctx, "a"); !errors.Is(err, tokenkeeper.ErrNotFound) {
		t.Errorf("Load of a missing token: %v", err)
	}
	tok := &oauth2.Token{AccessToken: "x"}
	if err := s.Save(ctx, "a", tok); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Load(ctx, "a"); err != nil || got != tok {
		t.Errorf("Load = %v, %v", got, err)
	}
	if err := s.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx, "a"); !errors.Is(err, tokenkeeper.ErrNotFound) {
		t.Errorf("Load after Delete: %v", err)
	}
}

func TestStoredSessionWithoutSeedRecordIsKept(t *testing.T) {
	e := newEnv(t, time.Hour)
	e.grant("a")
	cfg := e.config(e.unixHead(), e.oidcToken("a", ""))
	d := start(t, cfg, Options{})
	tok := fetch(t, clientFor(t, d), "a").AccessToken
	d.Close()
	// A store written before seed records existed holds only the token.
	st, err := filestore.Open(cfg.Store.Path, filestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(context.Background(), seedPrefix+"a"); err != nil {
		t.Fatal(err)
	}
	st.Close()
	d2 := start(t, cfg, Options{})
	if got := fetch(t, clientFor(t, d2), "a").AccessToken; got != tok {
		t.Error("the stored session was not resumed")
	}
	d2.Close()
	st, _ = filestore.Open(cfg.Store.Path, filestore.Options{})
	defer st.Close()
	if rec, err := st.Load(context.Background(), seedPrefix+"a"); err != nil || rec.AccessToken != config.SecretHash(cfg.Tokens[0].Source.RefreshToken) {
		t.Errorf("seed record not rewritten: %v %v", rec, err)
	}
}

func TestSourceOptions(t *testing.T) {
	e := newEnv(t, time.Hour)
	e.grant("a")
	e.grant("b")
	cfg := e.config(e.unixHead(),
		e.oidcToken("a", "")[:len(e.oidcToken("a", ""))-1]+"\n      auth_style: basic\n      params: {resource: y}\n      reuse_grace: 5s\n",
		e.oidcToken("b", "")[:len(e.oidcToken("b", ""))-1]+"\n      auth_style: post\n")
	d := start(t, cfg, Options{})
	c := clientFor(t, d)
	fetch(t, c, "a")
	fetch(t, c, "b")
}

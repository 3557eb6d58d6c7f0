package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestTokenAndStatusCommands(t *testing.T) {
	e := newEnv(t, time.Hour)
	e.grant("api", 0)
	cfg := e.writeConfig(e.unixHead(), e.token("api", ""))
	p, c := e.startAgent(cfg)
	addr := "unix:" + e.sock()

	stdout, stderr, code := runCmd(t, "token", "--addr", addr, "api")
	tok := strings.TrimSpace(stdout)
	if code != 0 || !e.iss.Introspect(tok).Active {
		t.Fatalf("token: exit %d, %q, stderr %s", code, stdout, stderr)
	}
	if fetch(t, c, "api").AccessToken != tok {
		t.Error("token printed another token than the API hands out")
	}
	// The config file tells where the agent is.
	if stdout, _, code := runCmd(t, "token", "--config", cfg, "--min-valid", "10m", "api"); code != 0 || strings.TrimSpace(stdout) != tok {
		t.Errorf("token --config --min-valid: %d %q", code, stdout)
	}
	stdout, _, code = runCmd(t, "token", "--addr", addr, "--json", "api")
	var j map[string]any
	if code != 0 || json.Unmarshal([]byte(stdout), &j) != nil || j["access_token"] != tok || j["expires_at"] == nil || j["id_token"] == nil {
		t.Errorf("token --json: %d %s", code, stdout)
	}
	if stdout, _, code := runCmd(t, "token", "--addr", addr, "--id-token", "api"); code != 0 || strings.Count(stdout, ".") != 2 {
		t.Errorf("token --id-token: %d %q", code, stdout)
	}
	_, stderr, code = runCmd(t, "token", "--addr", addr, "nope")
	if code != 1 || !strings.Contains(stderr, `unknown token: "nope"`) || !strings.Contains(stderr, "unknown_token") {
		t.Errorf("unknown token: %d %q", code, stderr)
	}
	if _, stderr, code := runCmd(t, "token", "--addr", addr, "--min-valid", "2h", "api"); code != 1 || !strings.Contains(stderr, "min_valid") {
		t.Errorf("unsatisfiable --min-valid: %d %q", code, stderr)
	}

	stdout, stderr, code = runCmd(t, "status", "--addr", addr)
	if code != 0 {
		t.Fatalf("status: %d %s", code, stderr)
	}
	lines := strings.Split(stdout, "\n")
	if !regexp.MustCompile(`^TOKEN\s+STATE\s+EXPIRES IN\s+NEXT REFRESH\s+WHY\s+REFRESHES$`).MatchString(lines[0]) ||
		!regexp.MustCompile(`^api\s+valid\s+(1h0m0s|59m\d+s)\s+in \d+m\d+s \(\d\d:\d\d:\d\d\)\s+window-opens \(waits for its refresh window to open\)\s+1$`).MatchString(lines[1]) {
		t.Errorf("status:\n%s", stdout)
	}
	stdout, _, code = runCmd(t, "status", "--addr", addr, "--json")
	var list struct {
		Tokens []map[string]any `json:"tokens"`
	}
	if code != 0 || json.Unmarshal([]byte(stdout), &list) != nil || len(list.Tokens) != 1 || list.Tokens[0]["state"] != "valid" {
		t.Errorf("status --json: %d %s", code, stdout)
	}
	if strings.Contains(stdout, tok) {
		t.Error("status --json shows the token")
	}

	// --watch prints a progress line while a refresh is in flight.
	e.iss.Hold()
	w := startProc(t, "status", "--addr", addr, "--watch", "--interval", "20ms")
	go c.Refresh(context.Background(), "api")
	waitFor(t, "progress line", 10*time.Second, func() bool {
		return regexp.MustCompile(`\d\d:\d\d:\d\d ~ api refreshing for \d+\.\ds \[=*> *\] usually \d+\.\d\ds`).MatchString(w.stdout.String())
	})
	e.iss.Release()
	waitFor(t, "refreshed line", 10*time.Second, func() bool {
		return regexp.MustCompile(`api refreshed in \d+\.\d\ds; expires in (1h0m0s|59m\d+s); next: in `).MatchString(w.stdout.String())
	})
	w.signal(syscall.SIGINT)
	if code := w.wait(10 * time.Second); code != 0 {
		t.Errorf("status --watch after SIGINT: exit %d\n%s", code, w.stderr.String())
	}
	// The watch ends with an error when the agent goes away.
	w2 := startProc(t, "status", "--addr", addr, "--watch", "--interval", "20ms")
	waitFor(t, "watch started", 10*time.Second, func() bool { return strings.Contains(w2.stdout.String(), "TOKEN") })
	p.signal(syscall.SIGTERM)
	if code := p.wait(20 * time.Second); code != 0 {
		t.Errorf("agent after SIGTERM: exit %d", code)
	}
	if code := w2.wait(10 * time.Second); code != 1 || !strings.Contains(w2.stderr.String(), "agent not reachable") {
		t.Errorf("watch of a stopped agent: %d %q", code, w2.stderr.String())
	}
}

func TestTCPAgentWithSecret(t *testing.T) {
	e := newEnv(t, time.Hour)
	e.grant("api", 0)
	cfg := e.writeConfig("listen: 127.0.0.1:0\nsecret_file: agent.secret\nstore: {path: tokens.db}\n", e.token("api", ""))
	p, c := e.startAgent(cfg)
	fi, err := os.Stat(e.path("agent.secret"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret file: %v %v", fi, err)
	}
	// Not a terminal: the log names the page and the secret file, never the
	// secret.
	if !strings.Contains(p.stderr.String(), "status page: open the address with #secret= and the secret file's content appended") ||
		!strings.Contains(p.stderr.String(), "secret_file="+e.path("agent.secret")) {
		t.Errorf("no status page hint:\n%s", p.stderr.String())
	}
	if secret, err := os.ReadFile(e.path("agent.secret")); err != nil || len(bytes.TrimSpace(secret)) == 0 ||
		bytes.Contains([]byte(p.stderr.String()+p.stdout.String()), bytes.TrimSpace(secret)) {
		t.Errorf("the secret was printed (or unreadable: %v)", err)
	}
	tok := fetch(t, c, "api")
	addr := listenRe.FindStringSubmatch(p.stderr.String())[1]
	stdout, stderr, code := runCmd(t, "token", "--addr", addr, "--secret-file", e.path("agent.secret"), "api")
	if code != 0 || strings.TrimSpace(stdout) != tok.AccessToken {
		t.Errorf("token over TCP: %d %q %s", code, stdout, stderr)
	}
	e.write("wrong.secret", strings.Repeat("x", 40))
	_, stderr, code = runCmd(t, "token", "--addr", addr, "--secret-file", e.path("wrong.secret"), "api")
	if code != 1 || !strings.Contains(stderr, "wrong bearer secret") || !strings.Contains(stderr, "check --secret-file") {
		t.Errorf("wrong secret: %d %q", code, stderr)
	}
	// Environment variables locate the agent too.
	cmd := startProcWith(t, []string{"TOKENKEEPER_ADDR=" + addr, "TOKENKEEPER_SECRET_FILE=" + e.path("agent.secret")}, "token", "api")
	if code := cmd.wait(20 * time.Second); code != 0 || strings.TrimSpace(cmd.stdout.String()) != tok.AccessToken {
		t.Errorf("token from the environment: %d %q", code, cmd.stderr.String())
	}
	p.signal(syscall.SIGINT)
	if code := p.wait(20 * time.Second); code != 0 {
		t.Errorf("SIGINT: exit %d", code)
	}
	if !strings.Contains(p.stderr.String(), `msg="tokenkeeper agent: shutting down" signal=interrupt`) ||
		!strings.Contains(p.stderr.String(), "tokenkeeper agent stopped") {
		t.Errorf("shutdown log:\n%s", p.stderr.String())
	}
}

func TestSIGHUPReloadsWithoutDroppingTokens(t *testing.T) {
	e := newEnv(t, time.Hour)
	e.grant("a", 0)
	e.grant("b", 0)
	e.grant("c", 0)
	cfg := e.writeConfig(e.unixHead(), e.token("a", ""), e.token("b", ""))
	p, c := e.startAgent(cfg)
	aTok, bTok := fetch(t, c, "a").AccessToken, fetch(t, c, "b").AccessToken
	refreshes := e.iss.Stats().Refreshes

	// Add c, drop b, change a's policy.
	e.writeConfig(e.unixHead(), e.token("a", "    policy: {idle_gap: 3s}\n"), e.token("c", ""))
	p.signal(syscall.SIGHUP)
	waitFor(t, "reload", 10*time.Second, func() bool { return strings.Contains(p.stderr.String(), `msg="config reloaded"`) })
	if !strings.Contains(p.stderr.String(), `added=c removed=b replaced=a unchanged=0`) {
		t.Errorf("reload log:\n%s", p.stderr.String())
	}
	if got := fetch(t, c, "a").AccessToken; got != aTok {
		t.Error("the changed token lost its current token")
	}
	fetch(t, c, "c")
	if _, err := c.Token(context.Background(), "b", 0); err == nil {
		t.Error("the removed token is still served")
	}
	if st := e.iss.Stats(); st.Refreshes != refreshes+1 {
		t.Errorf("reload cost %d refreshes, want 1 (the new token)", st.Refreshes-refreshes)
	}

	// A broken config is rejected; the running one stays.
	e.write("agent.yaml", "listen: unix:"+e.sock()+"\ntokens:\n  - name: a\n    sauce: {}\n")
	p.signal(syscall.SIGHUP)
	waitFor(t, "rejection", 10*time.Second, func() bool {
		return strings.Contains(p.stderr.String(), "config reload rejected; the running configuration stays in force")
	})
	if !strings.Contains(p.stderr.String(), `agent.yaml:4:5: unknown key \"sauce\" in token (did you mean \"source\"?)`) {
		t.Errorf("rejection log lacks the position:\n%s", p.stderr.String())
	}
	if got := fetch(t, c, "a").AccessToken; got != aTok {
		t.Error("token a changed after a rejected reload")
	}
	fetch(t, c, "c")

	// Adding b back resumes its stored session.
	e.writeConfig(e.unixHead()+"keeper: {workers: 2}\n", e.token("a", "    policy: {idle_gap: 3s}\n"), e.token("b", ""), e.token("c", ""))
	p.signal(syscall.SIGHUP)
	waitFor(t, "second reload", 10*time.Second, func() bool {
		return strings.Count(p.stderr.String(), `msg="config reloaded"`) == 2
	})
	if got := fetch(t, c, "b").AccessToken; got != bTok {
		t.Error("token b did not resume its stored session")
	}
	if !strings.Contains(p.stderr.String(), "settings=keeper") {
		t.Errorf("no restart warning for the keeper settings:\n%s", p.stderr.String())
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(20 * time.Second); code != 0 {
		t.Errorf("exit %d", code)
	}
	if st := e.iss.Stats(); st.ReuseDetected != 0 {
		t.Errorf("issuer: %+v", st)
	}
}

func TestSecondSignalExitsAtOnce(t *testing.T) {
	e := newEnv(t, time.Hour)
	e.grant("a", 0)
	cfg := e.writeConfig(e.unixHead(), e.token("a", ""))
	p, c := e.startAgent(cfg)
	fetch(t, c, "a")
	// A refresh the issuer holds keeps the graceful shutdown waiting.
	e.iss.Hold()
	go c.Refresh(context.Background(), "a")
	waitFor(t, "refresh held", 10*time.Second, func() bool { return e.iss.Held() == 1 })
	p.signal(syscall.SIGTERM)
	waitFor(t, "shutdown started", 10*time.Second, func() bool { return strings.Contains(p.stderr.String(), "shutting down") })
	p.signal(syscall.SIGINT)
	if code := p.wait(10 * time.Second); code != 1 {
		t.Errorf("second signal: exit %d, want 1\n%s", code, p.stderr.String())
	}
	if !strings.Contains(p.stderr.String(), "second signal; exiting at once") {
		t.Errorf("log:\n%s", p.stderr.String())
	}
	e.iss.Release()
}

func TestAgentRefusesBadConfig(t *testing.T) {
	e := newEnv(t, time.Hour)
	cfg := e.writeConfig("listen: 192.168.1.1:8080\nstore: {path: tokens.db}\n", e.token("a", ""))
	_, stderr, code := runCmd(t, "agent", "--config", cfg)
	if code != 1 || !strings.Contains(stderr, "agent.yaml:1:9: listen address \"192.168.1.1:8080\" is not a loopback address") {
		t.Errorf("exit %d\n%s", code, stderr)
	}
	if _, err := os.Stat(e.path("tokens.db")); !os.IsNotExist(err) {
		t.Error("a refused config created the store")
	}
	// A store file that is not a store: the agent does not start.
	e.grant("a", 0)
	e.write("tokens.db", "not a database at all")
	cfg = e.writeConfig(e.unixHead(), e.token("a", ""))
	_, stderr, code = runCmd(t, "agent", "--config", cfg, "--log-format", "json", "--log-level", "warn")
	if code != 1 || !strings.Contains(stderr, `"msg":"tokenkeeper agent: cannot start"`) || !strings.Contains(stderr, "not a bbolt database") {
		t.Errorf("foreign store: exit %d\n%s", code, stderr)
	}
	if b, _ := os.ReadFile(e.path("tokens.db")); string(b) != "not a database at all\n" {
		t.Error("the foreign file was modified")
	}
}

func TestDevSmoke(t *testing.T) {
	stdout, stderr, code := runCmd(t, "dev", "--for", "5s")
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	for _, want := range []string{"status page        http://127.0.0.1:", "/#secret=", "curl -s -H \"Authorization: Bearer $(cat ",
		"api-fast    refreshed in", "(first token)", "after 5s: 3 refreshes (3 first tokens", " 0 failed", "0 rejected", "0 reuses detected, 3 grants"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	dir := regexp.MustCompile(`removes\s+(\S+)\.`).FindStringSubmatch(stdout)
	if dir == nil {
		t.Fatalf("no directory in:\n%s", stdout)
	}
	if _, err := os.Stat(dir[1]); !os.IsNotExist(err) {
		t.Errorf("the dev directory %s survived", dir[1])
	}
}

func TestShowPageLink(t *testing.T) {
	var out, logBuf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logBuf, nil))
	showPageLink(&out, logger, "127.0.0.1:8377", "s3cret", "/run/agent.secret")
	if out.Len() != 0 || strings.Contains(logBuf.String(), "s3cret") ||
		!strings.Contains(logBuf.String(), "url=http://127.0.0.1:8377/ secret_file=/run/agent.secret") {
		t.Errorf("not a terminal: stdout %q, log %q", out.String(), logBuf.String())
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if isTerminal(f) || isTerminal(&out) {
		t.Error("a file or a buffer counts as a terminal")
	}
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Skip(err)
	}
	defer null.Close()
	if !isTerminal(null) {
		t.Errorf("%s is not a character device", os.DevNull)
	}
}

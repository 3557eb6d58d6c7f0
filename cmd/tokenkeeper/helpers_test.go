package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper/cmd/tokenkeeper/internal/client"
	"github.com/tokenkeeper/tokenkeeper/internal/devissuer"
)

// binary is the tokenkeeper command, built once by TestMain.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tokenkeeper-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "tokenkeeper")
	args := []string{"build", "-o", binary}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, ".")...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the binary:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// syncBuffer collects a process's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is a running tokenkeeper process.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan struct{}
	err    error
}

func startProc(t *testing.T, args ...string) *proc {
	t.Helper()
	return startProcWith(t, nil, args...)
}

// startProcWith starts the binary with extra environment variables.
func startProcWith(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, cmd: exec.Command(binary, args...), stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if env != nil {
		p.cmd.Env = append(os.Environ(), env...)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(limit time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(limit):
		p.cmd.Process.Kill()
		<-p.done
		p.t.Fatalf("%v did not exit within %v\nstderr:\n%s", p.cmd.Args, limit, p.stderr.String())
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		p.t.Fatal(p.err)
	}
	return 0
}

func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
}

// runCmd runs the binary to completion.
func runCmd(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	p := startProc(t, args...)
	code = p.wait(30 * time.Second)
	return p.stdout.String(), p.stderr.String(), code
}

// waitFor polls cond until it holds or the limit passes.
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

// env is a test setup: an issuer and a short directory (a Unix socket path
// must fit in 104 bytes).
type env struct {
	t      *testing.T
	dir    string
	iss    *devissuer.Issuer
	grants map[string]string
}

func newEnv(t *testing.T, ttl time.Duration) *env {
	t.Helper()
	dir, err := os.MkdirTemp("", "tkm")
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
	e.write("store.key", strings.Repeat("5a", 32))
	return e
}

func (e *env) path(name string) string { return filepath.Join(e.dir, name) }

func (e *env) write(name, content string) {
	e.t.Helper()
	if err := os.WriteFile(e.path(name), []byte(content+"\n"), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// grant makes a grant and writes its refresh token to NAME.rt.
func (e *env) grant(name string, ttl time.Duration) {
	e.t.Helper()
	rt, gid, err := e.iss.Issue(devissuer.GrantOptions{ClientID: "cli", Scopes: []string{"openid", "api"}, AccessTTL: ttl})
	if err != nil {
		e.t.Fatal(err)
	}
	e.grants[name] = gid
	e.write(name+".rt", rt)
}

func (e *env) token(name, policy string) string {
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

func (e *env) sock() string { return e.path("a.sock") }

// writeConfig writes agent.yaml and returns its path.
func (e *env) writeConfig(head string, tokens ...string) string {
	e.t.Helper()
	e.write("agent.yaml", head+"\ntokens:"+strings.Join(tokens, ""))
	return e.path("agent.yaml")
}

func (e *env) unixHead() string {
	return "listen: unix:" + e.sock() + "\nstore: {path: tokens.db, key_file: store.key}\nlog: {level: debug}\n"
}

// startAgent starts `tokenkeeper agent` and waits until it answers.
func (e *env) startAgent(cfgPath string) (*proc, *client.Client) {
	e.t.Helper()
	p := startProc(e.t, "agent", "--config", cfgPath)
	c := e.waitAgent(p)
	return p, c
}

var listenRe = regexp.MustCompile(`msg="tokenkeeper agent started" listen=(\S+)`)

func (e *env) waitAgent(p *proc) *client.Client {
	e.t.Helper()
	var addr string
	waitFor(e.t, "agent start", 20*time.Second, func() bool {
		if p.exited() {
			e.t.Fatalf("the agent exited:\n%s", p.stderr.String())
		}
		m := listenRe.FindStringSubmatch(p.stderr.String())
		if m != nil {
			addr = m[1]
		}
		return m != nil
	})
	var c *client.Client
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		c = client.New("unix", path, "")
	} else {
		secret, err := os.ReadFile(e.path("agent.secret"))
		if err != nil {
			e.t.Fatal(err)
		}
		c = client.New("tcp", addr, strings.TrimSpace(string(secret)))
	}
	e.t.Cleanup(c.Close)
	waitFor(e.t, "agent healthy", 10*time.Second, func() bool { return c.Healthz(context.Background()) == nil })
	return c
}

func fetch(t *testing.T, c *client.Client, name string) *client.Token {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	tok, err := c.Token(ctx, name, 0)
	if err != nil {
		t.Fatalf("token %s: %v", name, err)
	}
	return tok
}

package demo

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper/cmd/tokenkeeper/internal/workload"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
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

// A scaled-down demo: seconds instead of minutes.
func fastOptions(out *syncBuffer) Options {
	return Options{
		Out: out,
		Tokens: []Token{
			{Name: "short", Lifetime: 3 * time.Second, StartLead: 2 * time.Second, EndLead: 500 * time.Millisecond},
			{Name: "long", Lifetime: time.Hour, StartLead: 20 * time.Minute, EndLead: 15 * time.Minute},
		},
		IdleGap:       time.Second,
		IssuerLatency: 5 * time.Millisecond,
		Workload: workload.Config{
			SessionMin: 200 * time.Millisecond, SessionMax: 400 * time.Millisecond,
			GapMin: 1500 * time.Millisecond, GapMax: 2 * time.Second,
			ThinkMin: 10 * time.Millisecond, ThinkMax: 30 * time.Millisecond,
		},
	}
}

func TestDemoRefreshes(t *testing.T) {
	var out syncBuffer
	d, err := Start(fastOptions(&out))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var banner strings.Builder
	d.Banner(&banner)
	b := banner.String()
	for _, want := range []string{"status page        http://127.0.0.1:", "/#secret=" + d.Daemon.Secret(),
		"curl -s -H \"Authorization: Bearer $(cat " + filepath.Join(d.Dir, "agent.secret") + ")\"",
		"/v1/tokens/short", "short (3s), long (1h0m0s)", d.ConfigPath} {
		if !strings.Contains(b, want) {
			t.Errorf("banner lacks %q:\n%s", want, b)
		}
	}
	// Wait for two planned refreshes of the short token.
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := d.Summary()
		if s.Refreshes-s.Initial >= 2 && s.Workload.Sessions >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("summary after 20s: %+v\n%s", s, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	s := d.Summary()
	if !s.OK() || s.Initial != 2 || s.Issuer.ReuseDetected != 0 || s.Issuer.Grants != 2 {
		t.Errorf("summary: %+v", s)
	}
	if s.Quiet+s.DuringBurst != s.Refreshes-s.Initial {
		t.Errorf("refreshes do not add up: %+v", s)
	}
	str := s.String()
	if !strings.Contains(str, "reuses detected") || !strings.Contains(str, "token fetches") {
		t.Errorf("summary string: %s", str)
	}
	narration := out.String()
	for _, want := range []string{"short       refreshed in", "(first token)", "workload    burst 1:", "next refresh window opens at"} {
		if !strings.Contains(narration, want) {
			t.Errorf("narration lacks %q:\n%s", want, narration)
		}
	}
	dir := d.Dir
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the demo directory survived Close: %v", err)
	}
}

func TestDemoOnUnixSocket(t *testing.T) {
	var out syncBuffer
	opts := fastOptions(&out)
	dir, _ := os.MkdirTemp("", "tkdemo")
	defer os.RemoveAll(dir)
	opts.Listen = "unix:" + filepath.Join(dir, "a.sock")
	d, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var banner strings.Builder
	d.Banner(&banner)
	if !strings.Contains(banner.String(), "curl -s --unix-socket "+filepath.Join(dir, "a.sock")) {
		t.Errorf("banner:\n%s", banner.String())
	}
}

func TestDemoStartFailure(t *testing.T) {
	opts := Options{Listen: "10.1.2.3:80"} // not loopback: the config is refused
	if _, err := Start(opts); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("Start with a public listen address: %v", err)
	}
}

func TestSummaryNotOK(t *testing.T) {
	s := Summary{}
	s.Workload.APIRejected = 1
	if s.OK() {
		t.Error("a rejected API call is OK")
	}
	s = Summary{}
	s.Workload.LastError = "boom"
	if !strings.Contains(s.String(), "last error: boom") {
		t.Error(s.String())
	}
}

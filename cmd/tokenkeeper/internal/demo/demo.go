// Package demo is `tokenkeeper dev`: a demo identity provider with
// short-lived, rotating tokens, an agent keeping three tokens of different
// lifetimes through the oidc source, and a bursty synthetic user, all in
// one process and a temporary directory. It narrates what happens, so that
// a new user sees, within a few minutes, refreshes landing in the
// workload's quiet moments.
package demo

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/agent"
	"github.com/tokenkeeper/tokenkeeper/cmd/tokenkeeper/internal/client"
	"github.com/tokenkeeper/tokenkeeper/cmd/tokenkeeper/internal/daemon"
	"github.com/tokenkeeper/tokenkeeper/cmd/tokenkeeper/internal/workload"
	"github.com/tokenkeeper/tokenkeeper/internal/config"
	"github.com/tokenkeeper/tokenkeeper/internal/devissuer"
)

// Token describes one of the demo's tokens.
type Token struct {
	Name     string
	Lifetime time.Duration // the access token's lifetime at the issuer
	// StartLead and EndLead place the refresh window before expiry.
	StartLead, EndLead time.Duration
}

// DefaultTokens are the demo's three tokens: two, three and five minutes,
// with refresh windows wide enough to contain a quiet moment of the
// default workload.
var DefaultTokens = []Token{
	{Name: "api-fast", Lifetime: 2 * time.Minute, StartLead: 75 * time.Second, EndLead: 15 * time.Second},
	{Name: "api-medium", Lifetime: 3 * time.Minute, StartLead: 110 * time.Second, EndLead: 20 * time.Second},
	{Name: "api-slow", Lifetime: 5 * time.Minute, StartLead: 3 * time.Minute, EndLead: 30 * time.Second},
}

// Options configures a demo. The zero value is the `tokenkeeper dev`
// default.
type Options struct {
	// Listen is the agent's listen address. If empty, 127.0.0.1:0 (a free
	// loopback port, so that the status page opens in a browser).
	Listen string
	// Out receives the narration. If nil, it is discarded.
	Out io.Writer
	// Logger receives the agent's log. If nil, warnings and errors go to
	// Out.
	Logger *slog.Logger
	// Version is the agent's version string.
	Version string
	// Tokens replaces DefaultTokens.
	Tokens []Token
	// IdleGap is the tokens' idle gap. If zero, 5 seconds.
	IdleGap time.Duration
	// IssuerLatency is the demo issuer's response time. If zero, 150 ms.
	IssuerLatency time.Duration
	// Workload overrides the workload's timings (Client and Tokens are set
	// by the demo).
	Workload workload.Config
	// Command is how the user runs tokenkeeper, for the commands the banner
	// suggests. If empty, "go run ./cmd/tokenkeeper".
	Command string
}

// Demo is a running demo.
type Demo struct {
	Dir        string // the temporary directory (removed by Close)
	ConfigPath string
	Issuer     *devissuer.Issuer
	Daemon     *daemon.Daemon
	Workload   *workload.Workload
	Client     *client.Client
	Started    time.Time

	opts   Options
	tokens []Token
	out    *lockedWriter
	cancel context.CancelFunc
	wg     sync.WaitGroup
	grants map[string]string // token name -> grant ID

	mu      sync.Mutex        // guards the fields below, and the assignment of Workload
	pending map[string]string // token -> reason of the refresh about to start
	started map[string]startInfo
	sum     Summary
}

type startInfo struct {
	reason string
	busy   bool
	quiet  time.Duration // how long the workload had been quiet
}

// Start sets up and starts the demo. Close it.
func Start(opts Options) (*Demo, error) {
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	if opts.IdleGap == 0 {
		opts.IdleGap = 5 * time.Second
	}
	if opts.IssuerLatency == 0 {
		opts.IssuerLatency = 150 * time.Millisecond
	}
	tokens := opts.Tokens
	if tokens == nil {
		tokens = DefaultTokens
	}
	out := opts.Out
	if out == nil {
		out = io.Discard
	}
	d := &Demo{opts: opts, tokens: tokens, out: &lockedWriter{w: out}, grants: make(map[string]string),
		pending: make(map[string]string), started: make(map[string]startInfo)}
	d.sum.Reasons = make(map[string]int)
	ok := false
	defer func() {
		if !ok {
			d.Close()
		}
	}()
	var err error

	d.Dir, err = os.MkdirTemp("", "tokenkeeper-dev-")
	if err != nil {
		return nil, err
	}
	clientSecret := randomText(24)
	d.Issuer, err = devissuer.Start(devissuer.Config{
		Clients: []devissuer.Client{{ID: "tokenkeeper-dev", Secret: clientSecret}},
		Latency: opts.IssuerLatency,
	}, "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	files := map[string]string{
		"client.secret": clientSecret,
		"store.key":     randomText(32),
	}
	for _, t := range tokens {
		rt, gid, err := d.Issuer.Issue(devissuer.GrantOptions{ClientID: "tokenkeeper-dev",
			Scopes: []string{"openid", "api"}, AccessTTL: t.Lifetime})
		if err != nil {
			return nil, err
		}
		files[t.Name+".refresh_token"] = rt
		d.grants[t.Name] = gid
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(d.Dir, name), []byte(content+"\n"), 0o600); err != nil {
			return nil, err
		}
	}
	d.ConfigPath = filepath.Join(d.Dir, "agent.yaml")
	if err := d.writeConfig(); err != nil {
		return nil, err
	}
	cfg, err := config.Load(d.ConfigPath, config.Options{})
	if err != nil {
		return nil, fmt.Errorf("the demo's own config is invalid (a bug): %w", err)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(d.out, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	d.Daemon, err = daemon.Start(cfg, daemon.Options{Logger: logger, Version: opts.Version, OnEvent: d.event})
	if err != nil {
		return nil, err
	}
	d.Started = time.Now()
	d.Client = client.New(d.Daemon.Network(), d.Daemon.Address(), d.Daemon.Secret())
	// The user starts once the agent holds its first tokens, as a user
	// starts once logged in.
	if err := d.waitReady(30 * time.Second); err != nil {
		return nil, err
	}

	wc := opts.Workload
	wc.Client = d.Client
	wc.API = d.Issuer.URL() + devissuer.PathResource
	for _, t := range tokens {
		wc.Tokens = append(wc.Tokens, t.Name)
	}
	user := wc.OnSession
	wc.OnSession = func(s workload.Session) {
		d.say("workload", "burst %d: %d token fetches in %.1fs, then quiet for %s",
			s.N, s.Fetches, s.Duration.Seconds(), s.NextGap.Round(time.Second))
		if user != nil {
			user(s)
		}
	}
	// Events of the first refreshes may still be on their way to d.event,
	// which reads d.Workload.
	d.mu.Lock()
	d.Workload = workload.New(wc)
	d.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.Workload.Run(ctx)
	}()
	ok = true
	return d, nil
}

// waitReady waits until every token has a valid access token.
func (d *Demo) waitReady(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		ready := true
		now := time.Now()
		for _, st := range d.Daemon.Keeper().Status() {
			// A token that holds only its refresh token has no expiry yet.
			if st.Expiry.Before(now) || st.State == tokenkeeper.StateEmpty || st.State == tokenkeeper.StateExpired {
				ready = false
			}
			if st.State == tokenkeeper.StateReauthRequired {
				return fmt.Errorf("token %s: %s", st.Name, st.LastError)
			}
		}
		if ready {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the demo's tokens are not ready after %s", limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var configTemplate = template.Must(template.New("").Parse(`# Written by "tokenkeeper dev": a demo configuration (see docs/agent.md).
# Paths are relative to this file's directory.
listen: {{.Listen}}
secret_file: agent.secret
store:
  path: tokens.db
  key_file: store.key
policy:
  idle_gap: {{.IdleGap}}
tokens:
{{- range .Tokens}}
  - name: {{.Name}}
    source:
      type: oidc
      issuer: {{$.Issuer}}
      client_id: tokenkeeper-dev
      client_secret_file: client.secret
      refresh_token_file: {{.Name}}.refresh_token
      scopes: [openid, api]
    policy:
      start_lead: {{.StartLead}}
      end_lead: {{.EndLead}}
{{- end}}
`))

func (d *Demo) writeConfig() error {
	var b strings.Builder
	err := configTemplate.Execute(&b, map[string]any{
		"Listen": d.opts.Listen, "IdleGap": d.opts.IdleGap, "Issuer": d.Issuer.URL(), "Tokens": d.tokens,
	})
	if err != nil {
		return err
	}
	return os.WriteFile(d.ConfigPath, []byte(b.String()), 0o600)
}

// Banner writes how to look at the demo.
func (d *Demo) Banner(w io.Writer) {
	var names []string
	for _, t := range d.tokens {
		names = append(names, fmt.Sprintf("%s (%s)", t.Name, t.Lifetime))
	}
	first := d.tokens[0].Name
	self := d.opts.Command
	if self == "" {
		self = "go run ./cmd/tokenkeeper"
	}
	fmt.Fprintf(w, "tokenkeeper dev: a demo identity provider, an agent keeping %d tokens, and a bursty user.\n\n", len(d.tokens))
	fmt.Fprintf(w, "  identity provider  %s  (rotating refresh tokens, reuse detection on)\n", d.Issuer.URL())
	fmt.Fprintf(w, "  tokens             %s\n", strings.Join(names, ", "))
	if d.Daemon.Network() == "unix" {
		sock := d.Daemon.Address()
		fmt.Fprintf(w, "  agent              unix:%s  (run with --listen 127.0.0.1:0 for the status page)\n", sock)
		fmt.Fprintf(w, "  fetch a token      curl -s --unix-socket %s http://localhost/v1/tokens/%s\n", sock, first)
		fmt.Fprintf(w, "  watch it           %s status --addr unix:%s --watch\n", self, sock)
	} else {
		base := "http://" + d.Daemon.Address()
		secretFile := filepath.Join(d.Dir, "agent.secret")
		fmt.Fprintf(w, "  status page        %s\n", agent.PageLink(base, d.Daemon.Secret()))
		fmt.Fprintf(w, "  fetch a token      curl -s -H \"Authorization: Bearer $(cat %s)\" %s/v1/tokens/%s\n", secretFile, base, first)
		fmt.Fprintf(w, "  watch it           %s status --addr %s --secret-file %s --watch\n", self, d.Daemon.Address(), secretFile)
	}
	fmt.Fprintf(w, "  config             %s\n\n", d.ConfigPath)
	if d.Daemon.Network() != "unix" {
		fmt.Fprintf(w, "Open the status page link in a browser (the page trades the secret in it for a cookie).\n")
	}
	fmt.Fprintf(w, "The first planned refreshes come about a minute in, each at a quiet moment of the\n")
	fmt.Fprintf(w, "workload (or at its window's end if none comes). Ctrl-C stops the demo and removes\n%s.\n\n", d.Dir)
	d.out.open()
}

// event narrates keeper events and counts refreshes. It runs on the
// keeper's event goroutine.
func (d *Demo) event(e tokenkeeper.Event) {
	switch e.Kind {
	case tokenkeeper.EventScheduled:
		d.mu.Lock()
		d.pending[e.Token] = e.Reason
		d.mu.Unlock()
		if e.Reason == "window-opens" {
			d.say(e.Token, "next refresh window opens at %s (in %s)", clock(e.At), until(e.At))
		}
	case tokenkeeper.EventStarted:
		d.mu.Lock()
		w := d.Workload
		d.mu.Unlock()
		busy, since := false, time.Now() // before the user starts: quiet
		if w != nil {
			busy, since = w.Busy()
		}
		d.mu.Lock()
		si := startInfo{reason: d.pending[e.Token], busy: busy}
		if !busy {
			si.quiet = time.Since(since)
		}
		d.started[e.Token] = si
		d.mu.Unlock()
	case tokenkeeper.EventSucceeded:
		d.mu.Lock()
		si := d.started[e.Token]
		d.sum.Refreshes++
		d.sum.Reasons[si.reason]++
		var when string
		switch {
		case initialReason(si.reason):
			d.sum.Initial++
			when = "first token"
		case si.busy:
			d.sum.DuringBurst++
			when = si.reason + ", during a burst"
		default:
			d.sum.Quiet++
			when = fmt.Sprintf("%s, workload quiet for %.1fs", si.reason, si.quiet.Seconds())
		}
		d.mu.Unlock()
		d.say(e.Token, "refreshed in %s (%s); expires %s", e.Latency.Round(time.Millisecond), when, clock(e.Expiry))
	case tokenkeeper.EventFailed:
		d.mu.Lock()
		d.sum.Failures++
		d.mu.Unlock()
		d.say(e.Token, "refresh failed: %v", e.Err)
	case tokenkeeper.EventReauthRequired:
		d.mu.Lock()
		d.sum.Reauth++
		d.mu.Unlock()
		d.say(e.Token, "needs re-authentication: %v", e.Err)
	}
}

func initialReason(r string) bool {
	return r == "invalidated" || r == "no-token" || r == ""
}

func (d *Demo) say(who string, format string, args ...any) {
	fmt.Fprintf(d.out, "%s  %-10s  %s\n", time.Now().Format("15:04:05"), who, fmt.Sprintf(format, args...))
}

func clock(t time.Time) string { return t.Local().Format("15:04:05") }

func until(t time.Time) string {
	d := time.Until(t)
	if d < 0 {
		d = 0
	}
	return d.Round(time.Second).String()
}

// Summary is what the demo saw.
type Summary struct {
	Elapsed     time.Duration
	Refreshes   int            // successful refreshes
	Initial     int            // of which first tokens at start
	Quiet       int            // of which started while the workload was quiet
	DuringBurst int            // of which started during a burst
	Reasons     map[string]int // by planner reason
	Failures    int            // failed attempts
	Reauth      int
	Workload    workload.Stats
	Issuer      devissuer.Stats
}

// Summary returns the counts so far.
func (d *Demo) Summary() Summary {
	d.mu.Lock()
	s := d.sum
	s.Reasons = make(map[string]int, len(d.sum.Reasons))
	for k, v := range d.sum.Reasons {
		s.Reasons[k] = v
	}
	d.mu.Unlock()
	s.Elapsed = time.Since(d.Started)
	s.Workload = d.Workload.Stats()
	s.Issuer = d.Issuer.Stats()
	return s
}

// OK reports whether the demo ran cleanly: every fetch and API call
// succeeded, the issuer never saw a reused refresh token, no token needed
// re-authentication.
func (s Summary) OK() bool {
	return s.Workload.FetchErrors == 0 && s.Workload.APIRejected == 0 && s.Workload.APIErrors == 0 &&
		s.Issuer.ReuseDetected == 0 && s.Reauth == 0
}

func (s Summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "after %s: %d refreshes (%d first tokens, %d in quiet moments, %d during a burst)",
		s.Elapsed.Round(time.Second), s.Refreshes, s.Initial, s.Quiet, s.DuringBurst)
	w := s.Workload
	fmt.Fprintf(&b, "; %d token fetches (slowest %s, %d waited over %s, %d failed)",
		w.Fetches, w.MaxFetch.Round(10*time.Microsecond), w.SlowFetches, workload.SlowFetch, w.FetchErrors)
	fmt.Fprintf(&b, "; %d API calls, %d rejected", w.APICalls, w.APIRejected)
	fmt.Fprintf(&b, "; issuer: %d refresh-token rotations, %d reuses detected, %d grants",
		s.Issuer.Refreshes, s.Issuer.ReuseDetected, s.Issuer.Grants)
	if w.LastError != "" {
		fmt.Fprintf(&b, "; last error: %s", w.LastError)
	}
	for _, sf := range w.Slow {
		fmt.Fprintf(&b, "\n  slow fetch: %s at %s took %s", sf.Token, sf.At.Local().Format("15:04:05.000"), sf.Duration.Round(time.Millisecond))
	}
	return b.String()
}

// Close stops the workload, the agent and the issuer, and removes the
// temporary directory. It is idempotent.
func (d *Demo) Close() error {
	var errs []error
	if d.cancel != nil {
		d.cancel()
		d.wg.Wait()
		d.cancel = nil
	}
	if d.Client != nil {
		d.Client.Close()
	}
	if d.Daemon != nil {
		errs = append(errs, d.Daemon.Close())
	}
	if d.Issuer != nil {
		errs = append(errs, d.Issuer.Close())
	}
	if d.Dir != "" {
		errs = append(errs, os.RemoveAll(d.Dir))
	}
	return errors.Join(errs...)
}

func randomText(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// lockedWriter serialises the narration. Until open is called it buffers,
// so that nothing is printed before the banner.
type lockedWriter struct {
	mu     sync.Mutex
	w      io.Writer
	opened bool
	buf    []byte
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.opened {
		l.buf = append(l.buf, p...)
		return len(p), nil
	}
	return l.w.Write(p)
}

// open writes the buffered narration and lets the rest through.
func (l *lockedWriter) open() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.opened {
		l.opened = true
		l.w.Write(l.buf)
		l.buf = nil
	}
}

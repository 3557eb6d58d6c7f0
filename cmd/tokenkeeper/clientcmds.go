package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/tokenkeeper/tokenkeeper/cmd/tokenkeeper/internal/client"
	"github.com/tokenkeeper/tokenkeeper/cmd/tokenkeeper/internal/daemon"
	"github.com/tokenkeeper/tokenkeeper/internal/config"
)

// agentFlags locate a running agent.
type agentFlags struct {
	addr, secretFile, configPath string
}

func addAgentFlags(fs *flagSet) *agentFlags {
	a := &agentFlags{}
	fs.StringVar(&a.addr, "addr", "", "the agent's `address`: unix:/path/to.sock or 127.0.0.1:port\n(default: $TOKENKEEPER_ADDR, else the config file's listen, else the default socket)")
	fs.StringVar(&a.secretFile, "secret-file", "", "the `file` holding the agent's bearer secret, for a TCP address\n(default: $TOKENKEEPER_SECRET_FILE, else the config file's secret_file, else the default)")
	fs.StringVar(&a.configPath, "config", "", "read the agent's address and secret file from this config `file`\n(default: the default config file, if it exists)")
	return a
}

// client returns a client for the agent the flags, the environment, the
// config file or the defaults point to, in that order.
func (a *agentFlags) client() (*client.Client, error) {
	addr := a.addr
	if addr == "" {
		addr = os.Getenv("TOKENKEEPER_ADDR")
	}
	secretFile := a.secretFile
	if secretFile == "" {
		secretFile = os.Getenv("TOKENKEEPER_SECRET_FILE")
	}
	if addr == "" || secretFile == "" {
		path, explicit := a.configPath, a.configPath != ""
		if !explicit {
			path = config.DefaultPath(nil)
		}
		cfg, err := config.Load(path, config.Options{SkipSecrets: true})
		switch {
		case err == nil:
			if addr == "" {
				addr = cfg.Listen.String()
			}
			if secretFile == "" {
				secretFile = cfg.SecretFile
			}
		case explicit || !errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("reading the agent's address from %s: %w", path, err)
		}
	}
	var l config.Listen
	var err error
	if addr == "" {
		l, err = config.DefaultListen(nil)
	} else {
		wd, _ := os.Getwd()
		l, err = config.ParseListen(addr, wd, nil)
	}
	if err != nil {
		return nil, err
	}
	secret := ""
	if l.Network == "tcp" {
		if secretFile == "" {
			if secretFile, err = config.DefaultSecretFile(nil); err != nil {
				return nil, err
			}
		}
		b, err := os.ReadFile(secretFile)
		if err != nil {
			return nil, fmt.Errorf("the agent at %s needs its bearer secret (--secret-file): %w", l.Address, err)
		}
		secret = strings.TrimSpace(string(b))
	}
	return client.New(l.Network, l.Address, secret), nil
}

// explain turns an agent error into a message for people.
func explain(err error) string {
	var ae *client.Error
	if errors.As(err, &ae) {
		switch ae.Code {
		case "reauth_required":
			return ae.Message + "\n(the grant is gone: log in again, put the new refresh token where the config file says, and reload the agent with SIGHUP)"
		case "unauthorized":
			return ae.Message + "\n(check --secret-file: it must be the agent's secret_file)"
		}
		return ae.Error()
	}
	if errors.Is(err, client.ErrUnreachable) {
		return err.Error() + "\n(is the agent running? start it with \"tokenkeeper agent\", or point to it with --addr)"
	}
	return err.Error()
}

const tokenHelp = `
Print the access token NAME, fetched from a running agent, for scripts:

    curl -H "Authorization: Bearer $(tokenkeeper token api)" https://api.example.com/

The agent answers at once while the token is valid; --min-valid asks for a
token that stays valid at least that long (the agent refreshes first if
needed).`

func runToken(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("token", "[flags] NAME", tokenHelp, stderr)
	af := addAgentFlags(fs)
	minValid := fs.Duration("min-valid", 0, "require the token to stay valid at least this `long` (such as 5m)")
	asJSON := fs.Bool("json", false, "print the agent's JSON answer (access_token, token_type, expires_at, id_token)")
	idToken := fs.Bool("id-token", false, "print the ID token instead of the access token")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this `long`")
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	switch {
	case fs.NArg() == 0:
		return usageError(fs, "missing token NAME")
	case fs.NArg() > 1:
		return usageError(fs, "unexpected argument %q (flags go before NAME)", fs.Arg(1))
	case *minValid < 0:
		return usageError(fs, "--min-valid must not be negative")
	case *asJSON && *idToken:
		return usageError(fs, "--json and --id-token exclude each other")
	}
	c, err := af.client()
	if err != nil {
		fmt.Fprintf(stderr, "tokenkeeper token: %v\n", err)
		return exitFailure
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	tok, err := c.Token(ctx, fs.Arg(0), *minValid)
	if err != nil {
		fmt.Fprintf(stderr, "tokenkeeper token: %s\n", explain(err))
		return exitFailure
	}
	switch {
	case *asJSON:
		b, _ := json.Marshal(tok)
		fmt.Fprintf(stdout, "%s\n", b)
	case *idToken:
		if tok.IDToken == "" {
			fmt.Fprintf(stderr, "tokenkeeper token: token %q has no ID token\n", fs.Arg(0))
			return exitFailure
		}
		fmt.Fprintln(stdout, tok.IDToken)
	default:
		fmt.Fprintln(stdout, tok.AccessToken)
	}
	return exitOK
}

const statusHelp = `
Show the tokens of a running agent: each token's state, when it expires,
when its next refresh is planned and why. With --watch the display follows
the agent live, with a progress line for each refresh in flight.`

func runStatus(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("status", "[flags]", statusHelp, stderr)
	af := addAgentFlags(fs)
	watch := fs.Bool("watch", false, "follow the agent live until interrupted")
	asJSON := fs.Bool("json", false, "print the agent's JSON answer")
	interval := fs.Duration("interval", 250*time.Millisecond, "how often --watch asks the agent")
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(fs, "unexpected argument %q", fs.Arg(0))
	}
	if *interval <= 0 {
		return usageError(fs, "--interval must be positive")
	}
	if *watch && *asJSON {
		return usageError(fs, "--watch and --json exclude each other")
	}
	c, err := af.client()
	if err != nil {
		fmt.Fprintf(stderr, "tokenkeeper status: %v\n", err)
		return exitFailure
	}
	defer c.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	sts, err := c.List(qctx)
	cancel()
	if err != nil {
		fmt.Fprintf(stderr, "tokenkeeper status: %s\n", explain(err))
		return exitFailure
	}
	if *asJSON {
		b, _ := json.MarshalIndent(map[string]any{"tokens": sts}, "", "  ")
		fmt.Fprintf(stdout, "%s\n", b)
		return exitOK
	}
	if !*watch {
		printStatus(stdout, sts, time.Now())
		return exitOK
	}
	return watchStatus(ctx, c, stdout, stderr, sts, *interval, isTerminal(stdout))
}

// isTerminal reports whether w is a terminal: a character device. (That
// includes /dev/null, which keeps nothing; a pipe, a socket such as the
// journal's, or a file is not one.)
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// reasonText explains a planner reason.
var reasonText = map[string]string{
	"window-opens":    "waits for its refresh window to open",
	"wait-idle":       "in its window, waits for a quiet moment",
	"idle":            "refresh now: the application is quiet",
	"quiet-slot":      "refresh now: the quietest time predicted",
	"window-end":      "refresh now: the window ends",
	"expired":         "refresh now: the token expired",
	"unused":          "not used lately: refreshed at its next use",
	"no-expiry":       "does not expire",
	"retry-backoff":   "retry after a failure",
	"no-token":        "fetches its first token",
	"invalidated":     "fetches a new token",
	"reauth-required": "needs re-authentication",
}

func describeReason(r string) string {
	if t, ok := reasonText[r]; ok {
		return r + " (" + t + ")"
	}
	return r
}

func printStatus(w io.Writer, sts []client.Status, now time.Time) {
	if len(sts) == 0 {
		fmt.Fprintln(w, "the agent keeps no tokens")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TOKEN\tSTATE\tEXPIRES IN\tNEXT REFRESH\tWHY\tREFRESHES")
	for _, s := range sts {
		exp := "-"
		if !s.ExpiresAt.IsZero() {
			exp = human(s.ExpiresAt.Sub(now))
		}
		next := "-"
		if !s.NextRefresh.IsZero() {
			next = "in " + human(s.NextRefresh.Sub(now)) + " (" + s.NextRefresh.Local().Format("15:04:05") + ")"
		}
		why := "-"
		if s.NextReason != "" {
			why = describeReason(s.NextReason)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", s.Name, s.State, exp, next, why, s.Refreshes)
	}
	tw.Flush()
	for _, s := range sts {
		if s.RefreshingSince.IsZero() {
			continue
		}
		fmt.Fprintln(w, progressLine(s, now))
	}
	for _, s := range sts {
		if s.LastError != "" && s.State != "valid" {
			fmt.Fprintf(w, "%s: last error: %s\n", s.Name, s.LastError)
		}
		if s.Breaker != "" && s.Breaker != "closed" {
			fmt.Fprintf(w, "%s: circuit breaker %s until %s\n", s.Name, s.Breaker, s.BreakerUntil.Local().Format("15:04:05"))
		}
	}
}

// progressLine draws a refresh in flight: elapsed time against the token's
// usual refresh latency.
func progressLine(s client.Status, now time.Time) string {
	elapsed := now.Sub(s.RefreshingSince)
	if elapsed < 0 {
		elapsed = 0
	}
	expect := time.Duration(max(s.LatencyP99, s.LastLatency) * float64(time.Second))
	if expect < 500*time.Millisecond {
		expect = 500 * time.Millisecond
	}
	const width = 20
	frac := float64(elapsed) / float64(expect)
	filled := min(int(frac*width), width-1)
	bar := strings.Repeat("=", filled) + ">" + strings.Repeat(" ", width-1-filled)
	return fmt.Sprintf("  ~ %s refreshing for %.1fs [%s] usually %.2fs", s.Name, elapsed.Seconds(), bar, expect.Seconds())
}

// human formats a duration to the second (to the 0.1 s under 10 s).
func human(d time.Duration) string {
	neg := d < 0
	if neg {
		d = -d
	}
	var s string
	if d < 10*time.Second {
		s = d.Round(100 * time.Millisecond).String()
	} else {
		s = d.Round(time.Second).String()
	}
	if neg {
		return "-" + s
	}
	return s
}

// watchStatus follows the agent. On a terminal it redraws the table; else
// it prints a line per change (a refresh starting, progressing, ending).
func watchStatus(ctx context.Context, c *client.Client, stdout, stderr io.Writer, sts []client.Status,
	interval time.Duration, tty bool) int {
	prev := make(map[string]client.Status)
	if !tty {
		printStatus(stdout, sts, time.Now())
		for _, s := range sts {
			prev[s.Name] = s
		}
	}
	lastProgress := make(map[string]time.Time)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		now := time.Now()
		if tty {
			fmt.Fprint(stdout, "\x1b[H\x1b[2J")
			fmt.Fprintf(stdout, "tokenkeeper status  %s  (Ctrl-C to stop)\n\n", now.Format("15:04:05"))
			printStatus(stdout, sts, now)
		} else {
			for _, s := range sts {
				p, seen := prev[s.Name]
				switch {
				case !s.RefreshingSince.IsZero():
					if p.RefreshingSince != s.RefreshingSince || now.Sub(lastProgress[s.Name]) >= time.Second {
						fmt.Fprintf(stdout, "%s %s\n", now.Format("15:04:05"), strings.TrimSpace(progressLine(s, now)))
						lastProgress[s.Name] = now
					}
				case seen && s.Refreshes > p.Refreshes:
					fmt.Fprintf(stdout, "%s %s refreshed in %.2fs; expires in %s; next: %s\n", now.Format("15:04:05"),
						s.Name, s.LastLatency, human(s.ExpiresAt.Sub(now)), nextText(s, now))
				case seen && s.Failed > p.Failed:
					fmt.Fprintf(stdout, "%s %s refresh failed: %s\n", now.Format("15:04:05"), s.Name, s.LastError)
				case !seen:
					fmt.Fprintf(stdout, "%s %s added (%s)\n", now.Format("15:04:05"), s.Name, s.State)
				}
				prev[s.Name] = s
			}
		}
		select {
		case <-ctx.Done():
			return exitOK
		case <-t.C:
		}
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		next, err := c.List(qctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return exitOK
			}
			fmt.Fprintf(stderr, "tokenkeeper status: %s\n", explain(err))
			return exitFailure
		}
		sts = next
	}
}

func nextText(s client.Status, now time.Time) string {
	if s.NextRefresh.IsZero() {
		return describeReason(s.NextReason)
	}
	return "in " + human(s.NextRefresh.Sub(now)) + ", " + describeReason(s.NextReason)
}

const checkHelp = `
Validate a config file: its syntax and keys (unknown keys are errors), its
values, the listen address, and that every secret file and environment
variable it names can be read. Every problem is reported with its line.
Exit status 0 means the agent would start with this file; 1 that it would not.`

func runCheckConfig(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("check-config", "[flags] FILE", checkHelp, stderr)
	skip := fs.Bool("skip-secrets", false, "do not read secret files and environment variables (check the file on another machine)")
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if fs.NArg() != 1 {
		return usageError(fs, "want exactly one FILE")
	}
	path := fs.Arg(0)
	cfg, err := config.Load(path, config.Options{SkipSecrets: *skip})
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return exitFailure
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintf(stderr, "warning: %v\n", w)
	}
	if err := daemon.Check(cfg); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", path, err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "%s: ok\n", path)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  listen\t%s\n", cfg.Listen)
	fmt.Fprintf(tw, "  store\t%s\n", cfg.Store)
	for _, t := range cfg.Tokens {
		fmt.Fprintf(tw, "  token %s\t%s (line %d)\n", t.Name, t.Source, t.Line)
	}
	tw.Flush()
	return exitOK
}

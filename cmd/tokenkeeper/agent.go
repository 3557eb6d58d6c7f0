package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/tokenkeeper/tokenkeeper/agent"
	"github.com/tokenkeeper/tokenkeeper/cmd/tokenkeeper/internal/daemon"
	"github.com/tokenkeeper/tokenkeeper/internal/config"
)

const agentHelp = `
Run the agent: keep the tokens of the config file fresh in the background and
serve them on the local API (a Unix socket by default, or a loopback TCP
address guarded by a bearer secret; see docs/agent.md and docs/agent-api.md).

Signals: SIGINT (Ctrl-C) and SIGTERM shut the agent down gracefully (a
second one exits at once); SIGHUP reloads the config file without dropping
tokens. A config file with errors is rejected, at start (the agent does not
start) and at reload (the running configuration stays in force).`

func runAgent(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("agent", "[--config FILE] [flags]", agentHelp, stderr)
	configPath := fs.String("config", config.DefaultPath(nil), "the config `file`")
	logLevel := fs.String("log-level", "", "override the config's log `level` (debug, info, warn, error)")
	logFormat := fs.String("log-format", "", "override the config's log `format` (text, json)")
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(fs, "unexpected argument %q (the config file is given with --config)", fs.Arg(0))
	}
	var lvl slog.Level
	if *logLevel != "" {
		if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
			return usageError(fs, "bad --log-level %q", *logLevel)
		}
	}
	if *logFormat != "" && *logFormat != "text" && *logFormat != "json" {
		return usageError(fs, "bad --log-format %q (want text or json)", *logFormat)
	}

	cfg, err := config.Load(*configPath, config.Options{})
	if err != nil {
		fmt.Fprintf(stderr, "tokenkeeper agent: %v\n", err)
		if errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(stderr, "(write a config file there, starting from docs/agent.example.yaml, or name one with --config; \"tokenkeeper dev\" runs a demo without one)\n")
		}
		return exitFailure
	}
	if *logLevel != "" {
		cfg.Log.Level = lvl
	}
	if *logFormat != "" {
		cfg.Log.Format = *logFormat
	}
	logger := newLogger(stderr, cfg.Log)
	for _, w := range cfg.Warnings {
		logger.Warn("config: " + w.Error())
	}

	// Signals are caught before the agent starts, so that one arriving
	// during start-up is not lost.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)

	d, err := daemon.Start(cfg, daemon.Options{Logger: logger, Version: versionString()})
	if err != nil {
		logger.Error("tokenkeeper agent: cannot start", "error", err.Error())
		return exitFailure
	}
	if d.Network() == "tcp" {
		showPageLink(stdout, logger, d.Address(), d.Secret(), cfg.SecretFile)
	}
	for sig := range sigs {
		if sig == syscall.SIGHUP {
			reload(d, *configPath, logger)
			continue
		}
		logger.Info("tokenkeeper agent: shutting down", "signal", sig.String())
		go func() {
			for s := range sigs {
				if s != syscall.SIGHUP {
					logger.Error("tokenkeeper agent: second signal; exiting at once", "signal", s.String())
					os.Exit(exitFailure)
				}
			}
		}()
		if err := d.Close(); err != nil {
			logger.Error("tokenkeeper agent: shutdown", "error", err.Error())
			return exitFailure
		}
		return exitOK
	}
	return exitOK
}

// showPageLink tells the user where the status page is. The link carries
// the bearer secret (in the URL fragment, which the browser never sends),
// so it is printed only to a terminal: never to the log, nor to an output
// that a service manager may keep. Elsewhere the log names the page and
// the secret file.
func showPageLink(stdout io.Writer, logger *slog.Logger, addr, secret, secretFile string) {
	base := "http://" + addr
	if isTerminal(stdout) {
		fmt.Fprintf(stdout, "status page: %s\n", agent.PageLink(base, secret))
		return
	}
	logger.Info("status page: open the address with #secret= and the secret file's content appended",
		"url", agent.PageLink(base, ""), "secret_file", secretFile)
}

// reload applies the config file again (SIGHUP).
func reload(d *daemon.Daemon, path string, logger *slog.Logger) {
	cfg, err := config.Load(path, config.Options{})
	if err != nil {
		logger.Error("config reload rejected; the running configuration stays in force", "error", err.Error())
		return
	}
	for _, w := range cfg.Warnings {
		logger.Warn("config: " + w.Error())
	}
	ch, err := d.Reload(cfg)
	if err != nil {
		logger.Error("config reload", "error", err.Error(), "change", ch.String())
		return
	}
	logger.Info("config reloaded", "added", strings.Join(ch.Added, ","), "removed", strings.Join(ch.Removed, ","),
		"replaced", strings.Join(ch.Replaced, ","), "unchanged", len(ch.Unchanged))
	if len(ch.NeedRestart) > 0 {
		logger.Warn("config reload: these settings changed but take effect only after a restart",
			"settings", strings.Join(ch.NeedRestart, ","))
	}
}

func newLogger(w io.Writer, l config.Log) *slog.Logger {
	opts := &slog.HandlerOptions{Level: l.Level}
	if l.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

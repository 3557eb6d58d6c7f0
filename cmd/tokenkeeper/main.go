// Command tokenkeeper runs the tokenkeeper agent, which keeps OAuth2 tokens
// fresh in the background and hands them to programs on this machine over a
// local API, and talks to a running agent.
//
// Usage:
//
//	tokenkeeper agent [--config FILE]        run the agent
//	tokenkeeper dev [--for D] [--listen A]   run a self-contained demo
//	tokenkeeper status [--watch]             show a running agent's tokens
//	tokenkeeper token [--min-valid D] NAME   print a token (for scripts)
//	tokenkeeper check-config FILE            validate a config file
//	tokenkeeper version                      print the version
//
// Exit status: 0 on success, 1 when the command failed, 2 for a usage
// error. See docs/agent.md for the configuration file and the command.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3";
// otherwise it comes from the module's build information.
var version string

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// command is a subcommand.
type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"agent", "run the agent: keep the tokens of a config file fresh", runAgent},
		{"dev", "run a self-contained demo (identity provider, agent, bursty user)", runDev},
		{"status", "show the tokens of a running agent", runStatus},
		{"token", "print the access token NAME from a running agent (for scripts)", runToken},
		{"check-config", "validate a config file", runCheckConfig},
		{"version", "print the version", runVersion},
	}
}

func usage(w io.Writer) {
	fmt.Fprintf(w, `tokenkeeper keeps OAuth2 tokens fresh in the background and hands them to
programs on this machine.

Usage:
  tokenkeeper <command> [flags] [arguments]

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-13s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, `
Run "tokenkeeper <command> -h" for a command's flags.
Start with "tokenkeeper dev"; the config file is described in docs/agent.md.
`)
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help", "help":
		if name == "help" && len(args) > 1 {
			return run([]string{args[1], "-h"}, stdout, stderr)
		}
		usage(stdout)
		return exitOK
	case "-version", "--version":
		name = "version"
	}
	for _, c := range commands() {
		if c.name == name {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "tokenkeeper: unknown command %q\n\n", name)
	usage(stderr)
	return exitUsage
}

// flagSet is a subcommand's flag.FlagSet whose usage text goes to stdout
// when help is asked for (exit 0) and to stderr after a usage error (exit 2).
type flagSet struct {
	*flag.FlagSet
	usage  bytes.Buffer
	stderr io.Writer
}

// newFlagSet returns a flagSet whose usage text starts with the command's
// synopsis and description.
func newFlagSet(name, synopsis, description string, stderr io.Writer) *flagSet {
	fs := &flagSet{FlagSet: flag.NewFlagSet("tokenkeeper "+name, flag.ContinueOnError), stderr: stderr}
	fs.SetOutput(stderr) // where the flag package writes its own error messages
	fs.Usage = func() {
		fs.usage.Reset()
		out := &fs.usage
		fmt.Fprintf(out, "Usage: tokenkeeper %s %s\n\n%s\n", name, synopsis, strings.TrimSpace(description))
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprintf(out, "\nFlags:\n")
			fs.SetOutput(out)
			fs.PrintDefaults()
			fs.SetOutput(stderr)
		}
	}
	return fs
}

// parseFlags parses args; it returns an exit code and false when the
// command must stop (help asked for: 0; bad flags: 2).
func parseFlags(fs *flagSet, args []string, stdout io.Writer) (int, bool) {
	err := fs.Parse(args)
	switch {
	case err == nil:
		return 0, true
	case errors.Is(err, flag.ErrHelp):
		// Help was asked for: print it where the user looks, and succeed.
		stdout.Write(fs.usage.Bytes())
		return exitOK, false
	default:
		// The flag package has printed the error; the usage follows it.
		fs.stderr.Write(fs.usage.Bytes())
		return exitUsage, false
	}
}

// usageError prints a usage error and the command's usage.
func usageError(fs *flagSet, format string, args ...any) int {
	fmt.Fprintf(fs.stderr, "%s: %s\n", fs.Name(), fmt.Sprintf(format, args...))
	fs.Usage()
	fs.stderr.Write(fs.usage.Bytes())
	return exitUsage
}

func versionString() string {
	v := version
	if v == "" {
		v = "devel"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
	}
	return v
}

func runVersion(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("version", "", "Print the version of tokenkeeper and of the Go toolchain that built it.", stderr)
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(fs, "unexpected argument %q", fs.Arg(0))
	}
	fmt.Fprintf(stdout, "tokenkeeper %s (%s, %s/%s)\n", versionString(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return exitOK
}

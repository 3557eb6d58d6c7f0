package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/tokenkeeper/tokenkeeper/cmd/tokenkeeper/internal/demo"
)

const devHelp = `
Run a self-contained demo: an embedded OAuth2 identity provider on loopback
with short-lived, rotating tokens (refresh-token reuse detection on), an
agent keeping three tokens of 2, 3 and 5 minutes, and a synthetic user who
works in bursts. Everything lives in a temporary directory, removed at the
end. Watch the refreshes land in the user's quiet moments, in this output,
on the status page, or with "tokenkeeper status --watch".`

func runDev(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("dev", "[flags]", devHelp, stderr)
	dur := fs.Duration("for", 0, "stop after this `long` (such as 5m; default: until Ctrl-C)")
	listen := fs.String("listen", "127.0.0.1:0", "the agent's listen `address`: a loopback host:port, or unix:/path")
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(fs, "unexpected argument %q", fs.Arg(0))
	}
	if *dur < 0 {
		return usageError(fs, "--for must not be negative")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *dur > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *dur)
		defer cancel()
	}

	d, err := demo.Start(demo.Options{Listen: *listen, Out: stdout, Version: versionString(), Command: selfCommand()})
	if err != nil {
		fmt.Fprintf(stderr, "tokenkeeper dev: %v\n", err)
		return exitFailure
	}
	d.Banner(stdout)
	<-ctx.Done()
	stop()
	sum := d.Summary()
	if err := d.Close(); err != nil {
		fmt.Fprintf(stderr, "tokenkeeper dev: stopping: %v\n", err)
	}
	fmt.Fprintf(stdout, "\n%s\n", sum)
	if !sum.OK() {
		fmt.Fprintf(stderr, "tokenkeeper dev: something went wrong (see above)\n")
		return exitFailure
	}
	return exitOK
}

// selfCommand returns how the user ran this command, for the commands the
// demo suggests: "go run ./cmd/tokenkeeper" for a binary go run built,
// else the program name as typed.
func selfCommand() string {
	exe, err := os.Executable()
	if err != nil || strings.Contains(exe, string(filepath.Separator)+"go-build") {
		return "go run ./cmd/tokenkeeper"
	}
	return os.Args[0]
}

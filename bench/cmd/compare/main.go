// Command compare regenerates the comparison of tokenkeeper with other
// token libraries: docs/benchmarks.md, the pictures and JSON file in
// docs/bench/, and bench/README-headline.md.
//
// Run it from the bench directory:
//
//	cd bench && go run ./cmd/compare
//
// It runs the bench package's TestCompare with -update (the trace
// simulations need testing/synctest, which runs inside tests) and passes its
// flags on.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
)

func main() {
	seeds := flag.Int("seeds", 10, "seeds (runs) per trace")
	out := flag.String("out", "..", "repository root to write docs/ and bench/README-headline.md under")
	quick := flag.Bool("quick", false, "short traces, fewer seeds and herd tokens: a fast check of the pipeline, not for publishing")
	flag.Parse()

	root, err := filepath.Abs(*out)
	if err != nil {
		fail(err)
	}
	if _, err := os.Stat("go.mod"); err != nil {
		fail(fmt.Errorf("run me from the bench directory: %w", err))
	}
	args := []string{"test", "-v", "-count=1", "-timeout=60m", "-run=^TestCompare$", ".", "-args",
		"-update", "-seeds=" + strconv.Itoa(*seeds), "-out=" + root}
	if *quick {
		args = append(args, "-quick")
	}
	cmd := exec.Command("go", args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "compare:", err)
	os.Exit(1)
}

package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// The example program runs against its own issuer and API: every request
// succeeds across several refreshes, and the issuer never sees a refresh
// token twice.
func TestRun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for seconds in real time")
	}
	var out strings.Builder
	sum, err := run(context.Background(), &out, options{duration: 5 * time.Second, lifetime: 2 * time.Second, workers: 4})
	if err != nil {
		t.Fatal(err)
	}
	if sum.failures != 0 || sum.reuses != 0 || sum.refreshes < 2 || sum.requests < 100 {
		t.Errorf("summary %+v; output:\n%s", sum, out.String())
	}
}

package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper/internal/testredis"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/tokenkeeper/tokenkeeper/redisstore"
)

// TestRedisStoreSharedByTwoAgents: two agents configured with the same
// token and one Redis refresh it once per cycle between them: a refresh by
// one is installed in the other, and neither ever sends a spent refresh
// token to the (rotating, reuse-detecting) issuer.
func TestRedisStoreSharedByTwoAgents(t *testing.T) {
	addr := testredis.Start(t)
	e := newEnv(t, time.Hour)
	e.grant("a")
	e.write("store.key", strings.Repeat("5a", 32))
	head := func(sock string) string {
		return fmt.Sprintf("listen: unix:%s\nstore: {type: redis, address: %q, prefix: \"t1:\", key_file: store.key, lock_ttl: 2s}\n",
			filepath.Join(e.dir, sock), addr)
	}
	cfgA := e.config(head("a.sock"), e.oidcToken("a", ""))
	dA := start(t, cfgA, Options{})
	cA := clientFor(t, dA)
	first := fetch(t, cA, "a").AccessToken
	cfgB := e.config(head("b.sock"), e.oidcToken("a", ""))
	dB := start(t, cfgB, Options{})
	cB := clientFor(t, dB)
	if got := fetch(t, cB, "a").AccessToken; got != first {
		t.Errorf("the second agent did not resume the shared session")
	}
	if st := e.iss.Stats(); st.Refreshes != 1 {
		t.Errorf("issuer after two starts: %+v", st)
	}

	// A refresh by A reaches B; a refresh by B then starts from the
	// refresh token A's refresh returned.
	if _, err := cA.Refresh(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	second := fetch(t, cA, "a").AccessToken
	waitFor(t, "B adopts A's token", 10*time.Second, func() bool { return fetch(t, cB, "a").AccessToken == second })
	if _, err := cB.Refresh(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	third := fetch(t, cB, "a").AccessToken
	waitFor(t, "A adopts B's token", 10*time.Second, func() bool { return fetch(t, cA, "a").AccessToken == third })
	if st := e.iss.Stats(); st.Refreshes != 3 || st.ReuseDetected != 0 || st.Grants != 1 {
		t.Errorf("issuer: %+v", st)
	}

	// The agent's metrics show the coordination.
	n, err := testutil.GatherAndCount(dA.server.Registry(), "tokenkeeper_store_degraded", "tokenkeeper_store_coordination_total")
	if err != nil || n != 11 {
		t.Errorf("store metrics: %d series, %v", n, err)
	}
	if st := dA.shared.Status(); st.SourceCalls != 2 || st.Adopted == 0 || st.Degraded {
		t.Errorf("A's store: %+v", st)
	}

	// A restarted agent resumes from Redis.
	if err := dA.Close(); err != nil {
		t.Fatal(err)
	}
	dA2 := start(t, cfgA, Options{})
	if got := fetch(t, clientFor(t, dA2), "a").AccessToken; got != third {
		t.Error("a restarted agent did not resume from Redis")
	}
	if st := e.iss.Stats(); st.Refreshes != 3 || st.ReuseDetected != 0 {
		t.Errorf("issuer after the restart: %+v", st)
	}
}

func TestRedisStoreUnreachableAtStart(t *testing.T) {
	e := newEnv(t, time.Hour)
	e.grant("a")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	cfg := e.config(fmt.Sprintf("listen: unix:%s\nstore: {type: redis, address: %q}\n", filepath.Join(e.dir, "a.sock"), addr),
		e.oidcToken("a", ""))
	// Without Redis the agent cannot tell whether another agent rotated
	// the configured refresh token: it must not start from it.
	_, err = Start(cfg, Options{})
	if !errors.Is(err, redisstore.ErrUnavailable) || !strings.Contains(err.Error(), `token "a": reading the store`) {
		t.Fatalf("start without redis: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "a.sock")); !errors.Is(err, os.ErrNotExist) {
		t.Error("a failed start left its socket behind")
	}
}

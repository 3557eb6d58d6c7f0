// Package testredis starts a redis-server of a test's own, for the tests of
// the command and the agent daemon. It is test support only.
package testredis

import (
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// Hint says how to get redis-server.
const Hint = "redis-server is not installed; install it with `apt-get install -y redis-server` (Debian/Ubuntu); TOKENKEEPER_REQUIRE_REDIS=1 makes this a failure"

// Start runs redis-server on a free loopback port, without persistence, in a
// temporary directory, stops it when the test ends, and returns its address
// once it answers PING. Without redis-server the test is skipped, or fails
// if the environment variable TOKENKEEPER_REQUIRE_REDIS is 1.
func Start(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("TOKENKEEPER_REQUIRE_REDIS") == "1" {
			t.Fatal(Hint)
		}
		t.Skip(Hint)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", t.TempDir(), "--daemonize", "no")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for !ping(addr) {
		select {
		case <-exited:
			t.Fatal("redis-server exited at start")
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("redis-server did not answer within 10s")
		}
		time.Sleep(20 * time.Millisecond) // polling a process that starts in real time
	}
	return addr
}

func ping(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	buf := make([]byte, 7)
	n, _ := c.Read(buf)
	return string(buf[:n]) == "+PONG\r\n"
}

// Package browser drives the agent's status page in a real headless
// Chromium. It is a module of its own so that chromedp never enters the
// library's module graph.
//
// Chromium comes from the distribution (Debian: apt-get install -y
// chromium); the test never downloads a browser. Without one it skips, or
// fails when TOKENKEEPER_REQUIRE_BROWSER=1 (CI). The screenshot goes to
// $TOKENKEEPER_ARTIFACTS, or to the test's temporary directory.
package browser

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/agent"
	"golang.org/x/oauth2"
)

// findChromium returns the browser to drive, or skips (fails on CI).
func findChromium(t *testing.T) string {
	t.Helper()
	candidates := []string{"/usr/bin/chromium", "chromium", "chromium-browser"}
	if c := os.Getenv("TOKENKEEPER_CHROMIUM"); c != "" {
		candidates = []string{c}
	}
	for _, c := range candidates {
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	msg := "chromium not found: install it with `apt-get update && apt-get install -y chromium` " +
		"(or set TOKENKEEPER_CHROMIUM to a Chromium binary)"
	if os.Getenv("TOKENKEEPER_REQUIRE_BROWSER") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// source issues tokens that live life and takes latency to do so, so that a
// refresh in flight is visible on the page.
func source(name string, life, latency time.Duration, n *atomic.Int64) tokenkeeper.Source {
	return tokenkeeper.SourceFunc(func(ctx context.Context, _ *oauth2.Token) (*oauth2.Token, error) {
		i := n.Add(1)
		t := time.NewTimer(latency)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return &oauth2.Token{
			AccessToken: fmt.Sprintf("SECRET-%s-%d", name, i),
			TokenType:   "Bearer",
			Expiry:      time.Now().Add(life),
		}, nil
	})
}

func TestStatusPage(t *testing.T) {
	chrome := findChromium(t)

	// A keeper with two tokens that live a few seconds, so that they are
	// refreshed every couple of seconds in real time.
	var srv atomic.Pointer[agent.Server]
	k, err := tokenkeeper.New(tokenkeeper.Config{OnEvent: func(e tokenkeeper.Event) {
		if s := srv.Load(); s != nil {
			s.Event(e)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	var raw [32]byte
	rand.Read(raw[:])
	secret := hex.EncodeToString(raw[:])
	s, err := agent.New(agent.Options{Keeper: k, Secret: secret, Version: "e2e", History: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	srv.Store(s)
	var calls [2]atomic.Int64
	for i, tc := range []struct {
		name          string
		life, latency time.Duration
	}{{"api", 4 * time.Second, 700 * time.Millisecond}, {"storage", 7 * time.Second, 300 * time.Millisecond}} {
		// A short idle gap, so that refreshes wait for the workload's pauses.
		pol := &tokenkeeper.Policy{IdleGap: 500 * time.Millisecond}
		if _, err := k.Add(tokenkeeper.TokenConfig{Name: tc.name, Source: source(tc.name, tc.life, tc.latency, &calls[i]), Policy: pol}); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := agent.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	defer func() {
		s.Close() // ends the page's event stream, so Shutdown need not wait
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := hs.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	}()
	base := "http://" + ln.Addr().String()

	// A bursty client: it fetches a token every 20 ms for 1.5 s, then
	// pauses for 1.5 s, until the test ends.
	stop := make(chan struct{})
	workDone := make(chan struct{})
	go func() {
		defer close(workDone)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		start := time.Now()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if time.Since(start)%(3*time.Second) > 1500*time.Millisecond {
				continue
			}
			req, _ := http.NewRequest("GET", base+"/v1/tokens/storage", nil)
			req.Header.Set("Authorization", "Bearer "+secret)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	}()
	defer func() { close(stop); <-workDone }()

	// A fresh headless Chromium of the distribution.
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chrome),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	defer cancel()
	// Everything below is bounded: a hung browser fails the test.
	deadline := time.AfterFunc(2*time.Minute, cancel)
	defer deadline.Stop()

	// Collect uncaught exceptions and console errors.
	var (
		consoleMu   sync.Mutex
		consoleErrs []string
	)
	messages := chromedp.Console(ctx)
	consoleDone := make(chan struct{})
	go func() {
		defer close(consoleDone)
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.IsException() || m.Type == "error" {
				consoleMu.Lock()
				consoleErrs = append(consoleErrs, m.String())
				consoleMu.Unlock()
			}
		}
	}()
	defer func() { cancel(); <-consoleDone }()

	// Open the link the command prints: the secret rides in the fragment.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/#secret="+secret),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-token="api"]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-token="storage"]`)),
	); err != nil {
		t.Fatalf("page did not render the tokens: %v", err)
	}
	href, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href`))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(href, secret) || strings.Contains(href, "#") {
		t.Errorf("the secret stayed in the address bar: %s", href)
	}

	// The page updates by itself: the refresh count of "api" goes up.
	count := func(name string) int {
		t.Helper()
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](fmt.Sprintf(
			`Number(document.querySelector('tr[data-token=%q] td.refreshes').firstChild.textContent)`, name)))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := count("api")
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](fmt.Sprintf(
		`Number(document.querySelector('tr[data-token="api"] td.refreshes').firstChild.textContent) >= %d`, before+2),
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Fatalf("the refresh count of api did not go up from %d: %v", before, err)
	}
	// The countdown to expiry moves with the clock.
	expires := func() string {
		v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`tr[data-token="storage"] .expires-in`)))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	e1 := expires()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](fmt.Sprintf(
		`document.querySelector('tr[data-token="storage"] .expires-in').textContent !== %q`, e1),
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Errorf("time to expiry stayed at %q: %v", e1, err)
	}
	// A refresh in flight shows a progress bar (api's source takes 700 ms).
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](
		`document.querySelector('tr[data-token="api"] .progress') !== null`,
		chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Errorf("no progress bar for a refresh in flight: %v", err)
	}
	// The next planned refresh and its reason are shown.
	next, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`tr[data-token="storage"] td.next`)))
	if err != nil || next == "" {
		t.Errorf("next refresh column: %q, %v", next, err)
	}

	// The timeline, zoomed to the last minute, shows the refreshes and the
	// refresh windows.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#ranges button[data-m="1"]`))); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](
		`document.querySelectorAll('#timeline circle.refresh.ok').length >= 3 && `+
			`document.querySelectorAll('#timeline rect.window').length >= 2 && `+
			`document.querySelector('#ranges button.on').dataset.m === "1"`,
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		t.Errorf("the timeline lacks refresh marks or windows: %v", err)
	}
	// At that zoom the activity lane is drawn per second (runs of active
	// seconds; the client's pauses are often shorter than a second, so the
	// number of runs is not fixed).
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](
		`document.querySelectorAll('#timeline rect.activity.second').length >= 1 && `+
			`document.querySelector('#legend-act').textContent === "activity (active seconds)"`,
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		t.Errorf("the timeline lacks per-second activity: %v", err)
	}
	conn, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#conn-text`)))
	if err != nil || conn != "live" {
		t.Errorf("connection indicator %q (%v), want live (event stream)", conn, err)
	}
	// Let one more refresh land so that the picture shows a recent one.
	after := count("api")
	chromedp.Run(ctx, chromedp.Poll[bool](fmt.Sprintf(
		`Number(document.querySelector('tr[data-token="api"] td.refreshes').firstChild.textContent) > %d`, after),
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(10*time.Second)))

	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	dir := os.Getenv("TOKENKEEPER_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(dir, "statuspage.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", shot, len(png))
	fmt.Println("screenshot:", shot)

	// The page never shows a token value.
	html, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.documentElement.outerHTML`))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(html, "SECRET-") || strings.Contains(html, secret) {
		t.Error("a token value or the agent secret is in the page")
	}

	// A second browser profile without the cookie is asked for the secret.
	other, cancelOther := chromedp.NewContext(ctx, chromedp.WithNewBrowserContext())
	defer cancelOther()
	if err := chromedp.Do(other,
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#login.show`)),
	); err != nil {
		t.Errorf("no sign-in prompt without the secret: %v", err)
	}

	consoleMu.Lock()
	defer consoleMu.Unlock()
	for _, m := range consoleErrs {
		// The signed-out profile's 401s are expected browser log entries.
		if strings.Contains(m, "401") {
			continue
		}
		t.Errorf("browser console: %s", m)
	}
}

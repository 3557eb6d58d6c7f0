package filestore_test

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/filestore"
	"golang.org/x/oauth2"
)

// The test binary re-executes itself as a helper process (the pattern of
// os/exec's tests): TestMain sees helperEnv and runs runHelper instead of
// the tests.
const helperEnv = "TOKENKEEPER_FILESTORE_HELPER"

// runHelper is the helper process's main. Modes:
//
//   - "saver": open the store at $FS_PATH (key $FS_KEY, hex, if set) and
//     save tokens in a loop until killed; after each Save of "main"
//     returns, print "saved N". Between those, save to and delete a few
//     other names so that pages are allocated, freed and reused.
func runHelper(mode string) int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 3
	}
	var k []byte
	if s := os.Getenv("FS_KEY"); s != "" {
		var err error
		if k, err = filestore.ParseKey([]byte(s)); err != nil {
			return fail(err)
		}
	}
	s, err := filestore.Open(os.Getenv("FS_PATH"), filestore.Options{Key: k, LockTimeout: 5 * time.Second})
	if err != nil {
		return fail(err)
	}
	defer s.Close()
	ctx := context.Background()
	switch mode {
	case "saver":
		iter := os.Getenv("FS_ITER")
		fmt.Println("open")
		for i := 0; ; i++ {
			if err := s.Save(ctx, "main", crashToken(iter, i)); err != nil {
				return fail(err)
			}
			if _, err := fmt.Printf("saved %d\n", i); err != nil {
				return fail(err)
			}
			side := fmt.Sprintf("side-%d", i%5)
			if err := s.Save(ctx, side, crashToken(iter+"-"+side, i)); err != nil {
				return fail(err)
			}
			if i%7 == 3 {
				if err := s.Delete(ctx, side); err != nil {
					return fail(err)
				}
			}
		}
	}
	return fail(fmt.Errorf("unknown mode %q", mode))
}

// crashToken is token number i of a helper run; its id_token varies in
// size (up to a few pages' worth) so that values move between pages.
func crashToken(iter string, i int) *oauth2.Token {
	id := fmt.Sprintf("at-%s-%d", iter, i)
	return (&oauth2.Token{
		AccessToken:  id,
		TokenType:    "Bearer",
		RefreshToken: "rt-" + id[3:],
		Expiry:       time.Date(2030, 1, 1, 0, 0, i, 0, time.UTC),
	}).WithExtra(map[string]any{"id_token": id + strings.Repeat(".", (i*997)%9000)})
}

func helperCmd(t *testing.T, mode string, env ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(append(os.Environ(), helperEnv+"="+mode), env...)
	cmd.Stderr = os.Stderr
	return cmd
}

// TestCrashKeepsLastSave kills a process that saves tokens in a loop with
// SIGKILL at random moments, again and again, and checks after each kill
// that the file opens and holds the last token whose Save returned (or the
// one after it, whose Save may have completed just before the kill).
func TestCrashKeepsLastSave(t *testing.T) {
	if testing.Short() {
		t.Skip("kills subprocesses for several seconds")
	}
	path := tempPath(t)
	k := key(0xc7)
	keyEnv := "FS_KEY=" + hex.EncodeToString(k)
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	const maxKills = 30
	deadline := time.Now().Add(15 * time.Second)

	lastDurable := "" // access token on disk after the previous kill
	kills, saves := 0, 0
	for iter := 0; iter < maxKills && time.Now().Before(deadline); iter++ {
		cmd := helperCmd(t, "saver", "FS_PATH="+path, keyEnv, fmt.Sprintf("FS_ITER=%d", iter))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- sc.Text()
			}
		}()
		// Mostly kill while saving; every fifth time, during start-up
		// (including, the first time, while the file is being created).
		confirmed := -1
		var kill <-chan time.Time
		if iter%5 == 0 {
			kill = time.After(time.Duration(rnd.IntN(30)) * time.Millisecond)
		}
		exited := false
	wait:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					exited = true
					break wait
				}
				if l == "open" && kill == nil {
					kill = time.After(time.Duration(rnd.IntN(100)) * time.Millisecond)
				}
				var n int
				if _, err := fmt.Sscanf(l, "saved %d", &n); err == nil {
					confirmed = n
				}
			case <-kill:
				break wait
			}
		}
		if exited {
			cmd.Wait()
			t.Fatalf("iteration %d: helper exited by itself (state %v)", iter, cmd.ProcessState)
		}
		cmd.Process.Signal(syscall.SIGKILL)
		for l := range lines { // lines written before the kill still count
			var n int
			if _, err := fmt.Sscanf(l, "saved %d", &n); err == nil {
				confirmed = n
			}
		}
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("iteration %d: helper ended with %v, want killed", iter, err)
		}
		kills++
		saves += confirmed + 1

		// What the file must hold.
		var allowed []string
		if confirmed >= 0 {
			allowed = []string{fmt.Sprintf("at-%d-%d", iter, confirmed), fmt.Sprintf("at-%d-%d", iter, confirmed+1)}
		} else {
			allowed = []string{lastDurable, fmt.Sprintf("at-%d-0", iter)}
		}
		s, err := filestore.Open(path, filestore.Options{Key: k})
		if err != nil {
			t.Fatalf("iteration %d: reopening after kill: %v", iter, err)
		}
		got, err := s.Load(t.Context(), "main")
		switch {
		case errors.Is(err, tokenkeeper.ErrNotFound) && lastDurable == "" && confirmed < 0:
			// Killed before the first save ever.
		case err != nil:
			t.Fatalf("iteration %d: Load after kill: %v", iter, err)
		default:
			if !strings.Contains(strings.Join(allowed, " ")+" ", got.AccessToken+" ") || got.AccessToken == "" {
				t.Fatalf("iteration %d: file holds %q, want one of %q (last confirmed save %d)", iter, got.AccessToken, allowed, confirmed)
			}
			var it, n int
			fmt.Sscanf(got.AccessToken, "at-%d-%d", &it, &n)
			if d := diffTokens(crashToken(fmt.Sprint(it), n), got); d != "" {
				t.Fatalf("iteration %d: token on disk is inconsistent (-want +got):\n%s", iter, d)
			}
			lastDurable = got.AccessToken
		}
		names, err := s.List(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			if _, err := s.Load(t.Context(), n); err != nil {
				t.Fatalf("iteration %d: Load(%q) after kill: %v", iter, n, err)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d kills, %d confirmed saves, last on disk %q", kills, saves, lastDurable)
	if kills < 10 || saves < 20 {
		t.Errorf("only %d kills and %d confirmed saves: the test proved little", kills, saves)
	}
}

// TestSecondProcessIsLockedOut shows the one-process limit across
// processes: while a helper saves tokens, Open here fails fast with
// ErrLocked (never with a false ErrCorrupt from pages being rewritten);
// once the helper is gone, even killed, the file opens.
func TestSecondProcessIsLockedOut(t *testing.T) {
	path := tempPath(t)
	open(t, path, filestore.Options{}).Close()
	cmd := helperCmd(t, "saver", "FS_PATH="+path, "FS_ITER=0")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(out)
	for sc.Scan() && sc.Text() != "saved 0" {
	}
	go io.Copy(io.Discard, out) // keep the helper saving
	for range 3 {
		start := time.Now()
		_, err = filestore.Open(path, filestore.Options{LockTimeout: 200 * time.Millisecond})
		if !errors.Is(err, filestore.ErrLocked) {
			t.Fatalf("Open while another process saves = %v, want ErrLocked", err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("Open took %v to fail", d)
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	s := open(t, path, filestore.Options{})
	if _, err := s.Load(t.Context(), "main"); err != nil {
		t.Fatal(err)
	}
}

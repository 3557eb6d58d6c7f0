package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runInProcess runs the command's run function.
func runInProcess(args ...string) (stdout, stderr string, code int) {
	var o, e strings.Builder
	code = run(args, &o, &e)
	return o.String(), e.String(), code
}

func TestUsageAndExitCodes(t *testing.T) {
	tests := []struct {
		args       []string
		code       int
		stdout     string // substring expected on stdout ("" = must be empty)
		stderr     string // substring expected on stderr ("" = must be empty)
		wantStdout bool
	}{
		{nil, 2, "", "Usage:\n  tokenkeeper <command>", false},
		{[]string{"bogus"}, 2, "", `tokenkeeper: unknown command "bogus"`, false},
		{[]string{"help"}, 0, "Commands:\n  agent", "", true},
		{[]string{"-h"}, 0, "check-config", "", true},
		{[]string{"--help"}, 0, "Start with \"tokenkeeper dev\"", "", true},
		{[]string{"help", "token"}, 0, "Usage: tokenkeeper token [flags] NAME", "", true},
		{[]string{"version"}, 0, "tokenkeeper devel (go", "", true},
		{[]string{"--version"}, 0, "tokenkeeper devel", "", true},
		{[]string{"version", "x"}, 2, "", `unexpected argument "x"`, false},
		{[]string{"agent", "-h"}, 0, "SIGHUP reloads the config file", "", true},
		{[]string{"agent", "extra"}, 2, "", "unexpected argument \"extra\" (the config file is given with --config)", false},
		{[]string{"agent", "--log-level", "loud"}, 2, "", `bad --log-level "loud"`, false},
		{[]string{"agent", "--log-format", "xml"}, 2, "", `bad --log-format "xml"`, false},
		{[]string{"agent", "--nope"}, 2, "", "flag provided but not defined: -nope", false},
		{[]string{"agent", "--config", "/nonexistent/agent.yaml"}, 1, "", "no such file or directory", false},
		{[]string{"token"}, 2, "", "missing token NAME", false},
		{[]string{"token", "a", "b"}, 2, "", `unexpected argument "b" (flags go before NAME)`, false},
		{[]string{"token", "--min-valid", "-1s", "a"}, 2, "", "--min-valid must not be negative", false},
		{[]string{"token", "--json", "--id-token", "a"}, 2, "", "--json and --id-token exclude each other", false},
		{[]string{"token", "--min-valid", "soon", "a"}, 2, "", `invalid value "soon" for flag -min-valid`, false},
		{[]string{"status", "x"}, 2, "", `unexpected argument "x"`, false},
		{[]string{"status", "--interval", "0s"}, 2, "", "--interval must be positive", false},
		{[]string{"status", "--watch", "--json"}, 2, "", "--watch and --json exclude each other", false},
		{[]string{"status", "-h"}, 0, "--watch", "", true},
		{[]string{"check-config"}, 2, "", "want exactly one FILE", false},
		{[]string{"check-config", "-h"}, 0, "Exit status 0 means the agent would start", "", true},
		{[]string{"dev", "--for", "-1s"}, 2, "", "--for must not be negative", false},
		{[]string{"dev", "x"}, 2, "", `unexpected argument "x"`, false},
		{[]string{"dev", "-h"}, 0, "embedded OAuth2 identity provider", "", true},
		{[]string{"dev", "--listen", "10.0.0.1:80", "--for", "1s"}, 1, "", "not a loopback address", false},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			stdout, stderr, code := runInProcess(tt.args...)
			if code != tt.code {
				t.Errorf("exit code %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, stdout, stderr)
			}
			if tt.wantStdout != (stdout != "") || !strings.Contains(stdout, tt.stdout) {
				t.Errorf("stdout = %q, want it to contain %q", stdout, tt.stdout)
			}
			if !strings.Contains(stderr, tt.stderr) || (tt.stderr == "" && stderr != "") {
				t.Errorf("stderr = %q, want it to contain %q", stderr, tt.stderr)
			}
		})
	}
}

func TestClientCommandsWithoutAgent(t *testing.T) {
	dir := t.TempDir()
	sock := "unix:" + filepath.Join(dir, "none.sock")
	_, stderr, code := runInProcess("token", "--addr", sock, "a")
	if code != 1 || !strings.Contains(stderr, "agent not reachable") || !strings.Contains(stderr, "is the agent running?") {
		t.Errorf("token without an agent: %d %q", code, stderr)
	}
	_, stderr, code = runInProcess("status", "--addr", sock)
	if code != 1 || !strings.Contains(stderr, "agent not reachable") {
		t.Errorf("status without an agent: %d %q", code, stderr)
	}
	_, stderr, code = runInProcess("status", "--addr", "127.0.0.1:1", "--secret-file", filepath.Join(dir, "nope"))
	if code != 1 || !strings.Contains(stderr, "needs its bearer secret (--secret-file)") {
		t.Errorf("TCP without a secret file: %d %q", code, stderr)
	}
	_, stderr, code = runInProcess("status", "--addr", "10.0.0.1:80")
	if code != 1 || !strings.Contains(stderr, "not a loopback address") {
		t.Errorf("public address: %d %q", code, stderr)
	}
	_, stderr, code = runInProcess("status", "--config", filepath.Join(dir, "missing.yaml"))
	if code != 1 || !strings.Contains(stderr, "reading the agent's address from") {
		t.Errorf("missing --config: %d %q", code, stderr)
	}
	// The address from the environment wins over the defaults.
	t.Setenv("TOKENKEEPER_ADDR", sock)
	t.Setenv("XDG_CONFIG_HOME", dir) // no default config file there
	_, stderr, _ = runInProcess("status")
	if !strings.Contains(stderr, "none.sock") {
		t.Errorf("TOKENKEEPER_ADDR ignored: %q", stderr)
	}
	// With no address anywhere, the default socket is tried.
	t.Setenv("TOKENKEEPER_ADDR", "")
	t.Setenv("XDG_RUNTIME_DIR", dir)
	_, stderr, _ = runInProcess("status")
	if !strings.Contains(stderr, filepath.Join(dir, "tokenkeeper", "agent.sock")) {
		t.Errorf("default socket not tried: %q", stderr)
	}
	// The default config file gives the address.
	os.MkdirAll(filepath.Join(dir, "tokenkeeper"), 0o700)
	os.WriteFile(filepath.Join(dir, "tokenkeeper", "agent.yaml"), []byte("listen: unix:"+filepath.Join(dir, "cfg.sock")+"\ntokens: []\n"), 0o600)
	_, stderr, _ = runInProcess("token", "a")
	if !strings.Contains(stderr, "cfg.sock") {
		t.Errorf("default config file not read: %q", stderr)
	}
}

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		return p
	}
	write("cs", "secret\n", 0o644)
	write("rt", "refresh\n", 0o600)
	good := write("good.yaml", `
listen: 127.0.0.1:8377
store: {path: tokens.db, key_env: TK_TEST_KEY}
tokens:
  - name: api
    source:
      type: oidc
      issuer: https://idp.example.com
      client_id: cli
      client_secret_file: cs
      refresh_token_file: rt
`, 0o600)
	t.Setenv("TK_TEST_KEY", strings.Repeat("00", 32))
	stdout, stderr, code := runInProcess("check-config", good)
	if code != 0 {
		t.Fatalf("good config: %d\n%s", code, stderr)
	}
	for _, want := range []string{good + ": ok", "listen     127.0.0.1:8377", filepath.Join(dir, "tokens.db") + " (encrypted)",
		"token api  oidc https://idp.example.com client cli (line 5)"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	if !strings.Contains(stderr, "warning: "+good+":10:27: secret file") || strings.Contains(stdout+stderr, "refresh\n") {
		t.Errorf("stderr = %q", stderr)
	}

	bad := write("bad.yaml", `
listen: 0.0.0.0:1
tokens:
  - name: api
    source: {type: oidc, issuer: https://idp, client_id: x, refresh_token_file: missing, scope: [a]}
  - name: api
    source: {type: command, command: [true]}
    policy: {idle_gap: 5}
`, 0o600)
	stdout, stderr, code = runInProcess("check-config", bad)
	if code != 1 || stdout != "" {
		t.Errorf("bad config: exit %d, stdout %q", code, stdout)
	}
	for _, want := range []string{bad + ":5:", `unknown key "scope" in token source (did you mean "scopes"?)`,
		bad + ":8:", `bad duration "5": missing unit`} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	// Semantic errors come once the keys are right.
	bad2 := write("bad2.yaml", `
listen: 0.0.0.0:1
tokens:
  - name: api
    source: {type: oidc, issuer: https://idp, client_id: x, refresh_token_file: missing}
  - name: api
    source: {type: command, command: [true]}
`, 0o600)
	_, stderr, code = runInProcess("check-config", bad2)
	for _, want := range []string{"3 problems in config:", bad2 + ":2:9: listen address \"0.0.0.0:1\" is not a loopback address",
		bad2 + ":5:81: cannot read secret file", bad2 + ":6:11: duplicate token name \"api\" (first defined at line 4)"} {
		if code != 1 || !strings.Contains(stderr, want) {
			t.Errorf("exit %d; stderr lacks %q:\n%s", code, want, stderr)
		}
	}
	// --skip-secrets checks a file whose secrets live elsewhere.
	_, stderr, code = runInProcess("check-config", "--skip-secrets", write("other.yaml", `
tokens:
  - name: api
    source: {type: oidc, issuer: https://idp, client_id: x, refresh_token_env: ON_ANOTHER_MACHINE}
`, 0o600))
	if code != 0 {
		t.Errorf("--skip-secrets: %d %s", code, stderr)
	}
	if _, stderr, code = runInProcess("check-config", filepath.Join(dir, "none.yaml")); code != 1 || !strings.Contains(stderr, "no such file") {
		t.Errorf("missing file: %d %s", code, stderr)
	}
	// The example in the docs is valid.
	if _, stderr, code = runInProcess("check-config", "--skip-secrets", "../../docs/agent.example.yaml"); code != 0 {
		t.Errorf("docs/agent.example.yaml: %s", stderr)
	}
}

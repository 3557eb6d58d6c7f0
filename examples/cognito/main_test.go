package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRunFlags(t *testing.T) {
	tests := []struct {
		name string
		o    options
		want string
	}{
		{"nothing", options{}, "required"},
		{"no user", options{region: "eu-west-1", client: "c"}, "required"},
		{"bad interval", options{region: "eu-west-1", client: "c", user: "u"}, "-every"},
		{"bad region", options{region: "Mars", client: "c", user: "u", every: time.Second}, "not an AWS region"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run(context.Background(), &bytes.Buffer{}, tt.o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("run = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestRunCognitoLocal runs the example against cognito-local for a few
// token lifetimes. It skips when cognito-local is not installed (see
// cognito/testdata/cognito-local/install.sh), unless
// TOKENKEEPER_REQUIRE_COGNITO=1.
func TestRunCognitoLocal(t *testing.T) {
	endpoint := startCognitoLocal(t)
	pool := call(t, endpoint, "CreateUserPool", `{"PoolName":"example"}`)["UserPool"].(map[string]any)["Id"].(string)
	client := call(t, endpoint, "CreateUserPoolClient", fmt.Sprintf(`{"UserPoolId":%q,"ClientName":"app",
		"AccessTokenValidity":3,"IdTokenValidity":3,"TokenValidityUnits":{"AccessToken":"seconds","IdToken":"seconds"}}`, pool))["UserPoolClient"].(map[string]any)["ClientId"].(string)
	call(t, endpoint, "AdminCreateUser", fmt.Sprintf(`{"UserPoolId":%q,"Username":"ada@example.com","MessageAction":"SUPPRESS",
		"UserAttributes":[{"Name":"email","Value":"ada@example.com"}]}`, pool))
	call(t, endpoint, "AdminSetUserPassword", fmt.Sprintf(`{"UserPoolId":%q,"Username":"ada@example.com","Password":"Passw0rd-Ex!","Permanent":true}`, pool))

	var out, logs bytes.Buffer
	err := run(context.Background(), &out, options{logs: &logs,
		region: "local", pool: pool, client: client, user: "ada@example.com", password: "Passw0rd-Ex!",
		endpoint: endpoint, every: 250 * time.Millisecond, duration: 5 * time.Second, signOut: true,
	})
	if err != nil {
		t.Fatalf("run: %v\n%s", err, &out)
	}
	text := out.String()
	// Tokens live 3 s, the run 5 s: the calls keep succeeding because the
	// keeper renews the tokens in between.
	if strings.Contains(text, "401") || !strings.Contains(text, "signed out: ok") {
		t.Errorf("output:\n%s", text)
	}
	if n := strings.Count(logs.String(), "succeeded"); n < 2 {
		t.Errorf("%d refreshes logged, want at least 2:\n%s", n, &logs)
	}
	if n := strings.Count(text, "200 OK"); n < 15 {
		t.Errorf("%d successful calls, want at least 15:\n%s", n, text)
	}
	if all := text + logs.String(); strings.Contains(all, "Passw0rd-Ex!") || strings.Contains(all, "eyJ") {
		t.Errorf("output shows a secret:\n%s", text)
	}
}

func startCognitoLocal(t *testing.T) string {
	t.Helper()
	dir, _ := filepath.Abs(filepath.Join("..", "..", "cognito", "testdata", "cognito-local"))
	bin := filepath.Join(dir, "node_modules", ".bin", "cognito-local")
	if _, err := os.Stat(bin); err != nil {
		msg := "cognito-local is not installed: run " + filepath.Join(dir, "install.sh")
		if os.Getenv("TOKENKEEPER_REQUIRE_COGNITO") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()
	var logs bytes.Buffer
	cmd := exec.Command(bin)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "PORT="+port, "HOST=127.0.0.1")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	endpoint := "http://127.0.0.1:" + port
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("cognito-local exited:\n%s", &logs) // Wait has returned: logs is complete
		case <-deadline:
			t.Fatalf("cognito-local did not start")
		case <-tick.C:
		}
		if resp, err := http.Get(endpoint + "/health"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return endpoint
			}
		}
	}
}

func call(t *testing.T, endpoint, op, body string) map[string]any {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, endpoint+"/", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", "AWSCognitoIdentityProviderService."+op)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", op, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: status %d, %v, %v", op, resp.StatusCode, out, err)
	}
	return out
}

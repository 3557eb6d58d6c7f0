// Package execsource is a tokenkeeper.Source that runs an external command
// to obtain a token, in the manner of git credential helpers and kubectl's
// exec credential plugins.
//
// # Protocol
//
// The command is run without a shell, with the agent's environment plus
// Config.Env and TOKENKEEPER_TOKEN set to the token's name. Its standard
// input is the current token as JSON ({} when there is none yet):
//
//	{"access_token": "...", "token_type": "Bearer", "refresh_token": "...",
//	 "expires_at": "2025-01-02T15:04:05Z"}
//
// so that a command can use the refresh token. It prints the new token as
// one JSON object on standard output:
//
//	{"access_token": "...", "token_type": "Bearer", "expires_in": 3600,
//	 "refresh_token": "...", "id_token": "..."}
//
// access_token is required; the expiry is expires_in (seconds) or
// expires_at (RFC 3339); token_type defaults to Bearer; refresh_token and
// id_token are optional (without refresh_token the current one is kept).
//
// Exit status 0 is success. Exit status 77 (EX_NOPERM) means the grant is
// gone for good: the keeper stops and asks for re-authentication. Any other
// failure (another exit status, a timeout, output that is not a token) is
// transient and retried with backoff. The last line of standard error, with
// anything that looks like a token value removed, is quoted in the error.
package execsource

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"golang.org/x/oauth2"
)

// ExitReauth is the exit status by which a command says that retrying
// cannot help (EX_NOPERM from sysexits.h).
const ExitReauth = 77

// maxOutput bounds the command's standard output and the part of standard
// error kept.
const maxOutput = 1 << 20

// Config configures a Source.
type Config struct {
	// Name is the token's name, passed to the command as TOKENKEEPER_TOKEN.
	Name string
	// Command is the program and its arguments. Required.
	Command []string
	// Env is added to the agent's environment.
	Env map[string]string
	// Dir is the working directory. If empty, the agent's.
	Dir string
	// Timeout bounds one run (the keeper's attempt timeout applies too). If
	// zero, only the keeper's attempt timeout applies.
	Timeout time.Duration
}

// Source runs a command for each refresh.
type Source struct {
	cfg Config
	env []string
}

// New returns a Source for cfg.
func New(cfg Config) (*Source, error) {
	if len(cfg.Command) == 0 || cfg.Command[0] == "" {
		return nil, errors.New("execsource: empty command")
	}
	if cfg.Timeout < 0 {
		return nil, errors.New("execsource: negative timeout")
	}
	env := os.Environ()
	for k, v := range cfg.Env {
		env = append(env, k+"="+v)
	}
	env = append(env, "TOKENKEEPER_TOKEN="+cfg.Name)
	return &Source{cfg: cfg, env: env}, nil
}

// String describes the source without secrets.
func (s *Source) String() string { return fmt.Sprintf("execsource(%q)", s.cfg.Command[0]) }

type tokenIn struct {
	AccessToken  string    `json:"access_token,omitempty"`
	TokenType    string    `json:"token_type,omitempty"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	ExpiresAt    time.Time `json:"expires_at,omitzero"`
}

type tokenOut struct {
	AccessToken  string      `json:"access_token"`
	TokenType    string      `json:"token_type"`
	ExpiresIn    json.Number `json:"expires_in"`
	ExpiresAt    string      `json:"expires_at"`
	RefreshToken string      `json:"refresh_token"`
	IDToken      string      `json:"id_token"`
}

// Refresh runs the command once.
func (s *Source) Refresh(ctx context.Context, current *oauth2.Token) (*oauth2.Token, error) {
	if s.cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.Timeout)
		defer cancel()
	}
	var in tokenIn
	if current != nil {
		in = tokenIn{AccessToken: current.AccessToken, TokenType: current.TokenType,
			RefreshToken: current.RefreshToken, ExpiresAt: current.Expiry}
	}
	stdin, _ := json.Marshal(in)

	cmd := exec.CommandContext(ctx, s.cfg.Command[0], s.cfg.Command[1:]...)
	cmd.Env = s.env
	cmd.Dir = s.cfg.Dir
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout limitedBuffer
	var stderr tailBuffer
	stdout.max, stderr.max = maxOutput, 4096
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 2 * time.Second // a grandchild holding the pipes must not hang us
	secrets := []string{}
	if current != nil {
		secrets = append(secrets, current.AccessToken, current.RefreshToken)
	}
	err := cmd.Run()
	if err != nil {
		if ctx.Err() != nil {
			return nil, &tokenkeeper.RefreshError{Err: fmt.Errorf("command %s: %w", s.cfg.Command[0], ctx.Err())}
		}
		detail := lastLine(stderr.String(), secrets)
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, &tokenkeeper.RefreshError{
				Permanent: ee.ExitCode() == ExitReauth,
				Err:       fmt.Errorf("command %s exited with status %d%s", s.cfg.Command[0], ee.ExitCode(), detail),
			}
		}
		return nil, &tokenkeeper.RefreshError{Err: fmt.Errorf("command %s: %v", s.cfg.Command[0], err)}
	}
	if stdout.over {
		return nil, &tokenkeeper.RefreshError{Err: fmt.Errorf("command %s printed more than %d bytes", s.cfg.Command[0], maxOutput)}
	}
	return parse(stdout.Bytes(), time.Now(), s.cfg.Command[0])
}

// parse reads the command's answer.
func parse(b []byte, now time.Time, prog string) (*oauth2.Token, error) {
	var out tokenOut
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		return nil, &tokenkeeper.RefreshError{Err: fmt.Errorf("command %s: output is not a JSON token: %s", prog, jsonProblem(err))}
	}
	if out.AccessToken == "" {
		return nil, &tokenkeeper.RefreshError{Err: fmt.Errorf("command %s: output has no access_token", prog)}
	}
	tok := &oauth2.Token{AccessToken: out.AccessToken, TokenType: out.TokenType, RefreshToken: out.RefreshToken}
	if tok.TokenType == "" {
		tok.TokenType = "Bearer"
	}
	switch {
	case out.ExpiresIn != "":
		secs, err := out.ExpiresIn.Float64()
		if err != nil || secs <= 0 || secs > 365*24*3600 {
			return nil, &tokenkeeper.RefreshError{Err: fmt.Errorf("command %s: expires_in %q is not a number of seconds between 0 and a year", prog, out.ExpiresIn.String())}
		}
		tok.Expiry = now.Add(time.Duration(secs * float64(time.Second)))
		tok.ExpiresIn = int64(secs)
	case out.ExpiresAt != "":
		t, err := time.Parse(time.RFC3339, out.ExpiresAt)
		if err != nil {
			return nil, &tokenkeeper.RefreshError{Err: fmt.Errorf("command %s: expires_at %q is not an RFC 3339 time", prog, out.ExpiresAt)}
		}
		tok.Expiry = t
	}
	if out.IDToken != "" {
		tok = tok.WithExtra(map[string]any{"id_token": out.IDToken})
	}
	return tok, nil
}

// jsonProblem describes a decoding error without quoting the input.
func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("field %s has the wrong type", te.Field)
	case errors.Is(err, io.EOF):
		return "no output"
	}
	return "unreadable"
}

// lastLine returns ": " and the last non-empty line of s, truncated and
// scrubbed of secrets and token-looking fields.
func lastLine(s string, secrets []string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	l := strings.TrimSpace(lines[len(lines)-1])
	if l == "" {
		return ""
	}
	for _, sec := range secrets {
		if len(sec) >= 4 {
			l = strings.ReplaceAll(l, sec, "[redacted]")
		}
	}
	return ": " + tokenkeeper.ScrubBody([]byte(l))
}

// limitedBuffer keeps the first max bytes written to it. (It does not
// embed bytes.Buffer, whose ReadFrom io.Copy would call instead of Write.)
type limitedBuffer struct {
	buf  bytes.Buffer
	max  int
	over bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); room < len(p) {
		b.over = true
		if room > 0 {
			b.buf.Write(p[:room])
		}
		return len(p), nil
	}
	return b.buf.Write(p)
}

func (b *limitedBuffer) Bytes() []byte { return b.buf.Bytes() }

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	b   []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.b) }

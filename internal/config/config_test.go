package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tokenkeeper/tokenkeeper"
)

// env is a fake environment.
type env map[string]string

func (e env) lookup(k string) (string, bool) { v, ok := e[k]; return v, ok }

// fixture is a directory with the secret files tests refer to.
func fixture(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range map[string]string{
		"client.secret": "cs-value\n",
		"refresh.token": "rt-value\n",
		"empty.secret":  "  \n",
		"store.key":     strings.Repeat("ab", 32) + "\n",
		"bad.key":       "not a key\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "open.secret"), []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "open.secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "helper.sh"), []byte("#!/bin/sh\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(dir, "adir"), 0o700)
	return dir
}

func parse(t *testing.T, dir, yaml string, e env) (*Config, error) {
	t.Helper()
	if e == nil {
		e = env{}
	}
	if _, ok := e["HOME"]; !ok {
		e["HOME"] = "/home/u"
	}
	if _, ok := e["XDG_RUNTIME_DIR"]; !ok {
		e["XDG_RUNTIME_DIR"] = "/run/user/1000"
	}
	return Parse("agent.yaml", []byte(yaml), Options{Dir: dir, LookupEnv: e.lookup})
}

// problems renders an error as "line: message" strings.
func problems(err error) []string {
	var l ErrorList
	if !errors.As(err, &l) {
		return []string{"not an ErrorList: " + err.Error()}
	}
	var out []string
	for _, e := range l {
		out = append(out, fmt.Sprintf("%d: %s", e.Line, e.Msg))
	}
	return out
}

const oidcToken = `
tokens:
  - name: api
    source:
      type: oidc
      issuer: https://idp.example.com
      client_id: cli
      client_secret_file: client.secret
      refresh_token_file: refresh.token
`

func TestParseValid(t *testing.T) {
	dir := fixture(t)
	cfg, err := parse(t, dir, `
listen: 127.0.0.1:8377
secret_file: agent.secret
store:
  path: tokens.db
  key_file: store.key
keeper:
  workers: 3
  max_queued: 100
  group_concurrency: 2
  breaker: {failures: 4, open_for: 2s, max_open: 1m}
policy:
  idle_gap: 20s
  start_lead: 10m
  end_lead: 5m
log: {level: debug, format: json}
agent: {history: 2h}
tokens:
  - name: api
    source:
      type: oidc
      issuer: https://idp.example.com/
      client_id: cli
      client_secret_file: client.secret
      refresh_token_env: API_RT
      scopes: [openid, api]
      auth_style: post
      params: {audience: x}
      reuse_grace: 30s
    policy:
      idle_gap: 5s
      retry_max: 1m
  - name: svc
    group: g1
    source:
      type: client_credentials
      token_url: http://127.0.0.1:9000/token
      client_id: svc
      client_secret_env: SVC_SECRET
  - name: cmd
    source:
      type: command
      command: [./helper.sh, --flag]
      env: {A: b}
      dir: adir
      timeout: 3s
`, env{"API_RT": " rt-from-env\n", "SVC_SECRET": "svc-secret"})
	if err != nil {
		t.Fatal(err)
	}
	pol := tokenkeeper.Policy{IdleGap: 20 * time.Second, StartLead: 10 * time.Minute, EndLead: 5 * time.Minute}
	apiPol := pol
	apiPol.IdleGap, apiPol.RetryMax = 5*time.Second, time.Minute
	key := make([]byte, 32)
	for i := range key {
		key[i] = 0xab
	}
	want := &Config{
		Listen:     Listen{Network: "tcp", Address: "127.0.0.1:8377"},
		SecretFile: filepath.Join(dir, "agent.secret"),
		Store:      Store{Type: "file", Path: filepath.Join(dir, "tokens.db"), KeyFile: filepath.Join(dir, "store.key"), Key: key},
		Keeper: Keeper{Workers: 3, MaxQueued: 100, GroupConcurrency: 2,
			Breaker: tokenkeeper.BreakerSettings{Failures: 4, OpenFor: 2 * time.Second, MaxOpen: time.Minute}, Policy: pol},
		Log:     Log{Level: -4, Format: "json"},
		History: 2 * time.Hour,
		Tokens: []Token{
			{Name: "api", Group: "https://idp.example.com", Line: 19, Policy: apiPol, Source: Source{
				Type: "oidc", Issuer: "https://idp.example.com/", ClientID: "cli", ClientSecret: "cs-value",
				RefreshToken: "rt-from-env", Scopes: []string{"openid", "api"}, AuthStyle: "post",
				Params: map[string]string{"audience": "x"}, ReuseGrace: 30 * time.Second, ClientSecretFrom: "file " + filepath.Join(dir, "client.secret"),
				RefreshTokenFrom: "environment variable API_RT"}},
			{Name: "svc", Group: "g1", Line: 33, Policy: pol, Source: Source{
				Type: "client_credentials", TokenURL: "http://127.0.0.1:9000/token", ClientID: "svc",
				ClientSecret: "svc-secret", AuthStyle: "auto", ClientSecretFrom: "environment variable SVC_SECRET"}},
			{Name: "cmd", Line: 40, Policy: pol, Source: Source{
				Type: "command", Command: []string{filepath.Join(dir, "helper.sh"), "--flag"},
				Env: map[string]string{"A": "b"}, Dir: filepath.Join(dir, "adir"), Timeout: 3 * time.Second}},
		},
	}
	if diff := cmp.Diff(want, cfg); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
	if tok, ok := cfg.Token("svc"); !ok || tok.Source.String() != "client_credentials http://127.0.0.1:9000/token client svc" {
		t.Errorf("Token(svc) = %v, %v", tok.Source, ok)
	}
	if _, ok := cfg.Token("nope"); ok {
		t.Error("Token(nope) found")
	}
	if s := cfg.Tokens[2].Source.String(); s != "command "+filepath.Join(dir, "helper.sh") {
		t.Errorf("command source String = %q", s)
	}
	if s := cfg.Tokens[0].Source.String(); strings.Contains(s, "cs-value") || strings.Contains(s, "rt-from-env") {
		t.Errorf("Source.String leaks a secret: %q", s)
	}
}

func TestParseCognito(t *testing.T) {
	dir := fixture(t)
	cfg, err := parse(t, dir, `
tokens:
  - name: user
    source:
      type: cognito
      region: eu-west-1
      user_pool_id: eu-west-1_AbCdEf
      client_id: 4abc
      client_secret_file: client.secret
      refresh_token_env: USER_RT
      username: 0f8e2c1a-user-sub
  - name: rotating
    group: mine
    source:
      type: cognito
      region: local
      endpoint: http://127.0.0.1:9229
      client_id: local-app
      refresh_token_file: refresh.token
      rotation: true
`, env{"USER_RT": "rt-from-env"})
	if err != nil {
		t.Fatal(err)
	}
	want := []Token{
		{Name: "user", Group: "cognito-idp:eu-west-1", Line: 3, Source: Source{
			Type: "cognito", Region: "eu-west-1", UserPoolID: "eu-west-1_AbCdEf", ClientID: "4abc",
			ClientSecret: "cs-value", ClientSecretFrom: "file " + filepath.Join(dir, "client.secret"),
			RefreshToken: "rt-from-env", RefreshTokenFrom: "environment variable USER_RT",
			Username: "0f8e2c1a-user-sub"}},
		{Name: "rotating", Group: "mine", Line: 12, Source: Source{
			Type: "cognito", Region: "local", Endpoint: "http://127.0.0.1:9229", ClientID: "local-app",
			RefreshToken: "rt-value", RefreshTokenFrom: "file " + filepath.Join(dir, "refresh.token"), Rotation: true}},
	}
	if diff := cmp.Diff(want, cfg.Tokens); diff != "" {
		t.Errorf("tokens (-want +got):\n%s", diff)
	}
	for i, d := range []string{"cognito eu-west-1 pool eu-west-1_AbCdEf client 4abc", "cognito local at http://127.0.0.1:9229 client local-app"} {
		if s := cfg.Tokens[i].Source.String(); s != d {
			t.Errorf("String = %q, want %q", s, d)
		}
	}
	// The settings that make a different session change the fingerprint.
	for _, change := range []func(*Source){
		func(s *Source) { s.Region = "eu-west-2" },
		func(s *Source) { s.Rotation = !s.Rotation },
		func(s *Source) { s.Username = "other" },
		func(s *Source) { s.Endpoint = "http://127.0.0.1:1" },
		func(s *Source) { s.UserPoolID = "" },
	} {
		tok := cfg.Tokens[0]
		change(&tok.Source)
		if tok.Fingerprint() == cfg.Tokens[0].Fingerprint() {
			t.Errorf("a change did not change the fingerprint: %+v", tok.Source)
		}
	}
}

func TestParseRedisStore(t *testing.T) {
	dir := fixture(t)
	cfg, err := parse(t, dir, `
store:
  type: redis
  address: redis.internal:6380
  db: 2
  username: agent
  password_file: client.secret
  tls: true
  prefix: "team-a:"
  lock_ttl: 5s
  key_env: KEY
`+oidcToken, env{"KEY": strings.Repeat("cd", 32)})
	if err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 32)
	for i := range key {
		key[i] = 0xcd
	}
	want := Store{Type: "redis", Address: "redis.internal:6380", DB: 2, Username: "agent", Password: "cs-value",
		PasswordFrom: "file " + filepath.Join(dir, "client.secret"), TLS: true, Prefix: "team-a:",
		LockTTL: 5 * time.Second, KeyEnv: "KEY", Key: key}
	if diff := cmp.Diff(want, cfg.Store); diff != "" {
		t.Errorf("store (-want +got):\n%s", diff)
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("warnings: %v", cfg.Warnings)
	}
	if got := cfg.Store.String(); got != `redis redis.internal:6380 db 2 prefix "team-a:" (tls, encrypted)` || strings.Contains(got, "cs-value") {
		t.Errorf("String = %q", got)
	}
	other := cfg.Store
	other.Password = "changed"
	if !cfg.Store.Equal(cfg.Store) || cfg.Store.Equal(other) {
		t.Error("Equal")
	}

	// The defaults, and what they warn about.
	cfg, err = parse(t, dir, "store: {type: redis}\n"+oidcToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Store{Type: "redis", Address: DefaultRedisAddress}, cfg.Store); diff != "" {
		t.Errorf("default redis store (-want +got):\n%s", diff)
	}
	if len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0].Error(), "tokens are kept in Redis unencrypted") {
		t.Errorf("warnings: %v", cfg.Warnings)
	}
	cfg, err = parse(t, dir, "store: {type: redis, address: \"10.0.0.5:6379\", key_file: store.key}\n"+oidcToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0].Error(), "agent.yaml:1:31: redis at 10.0.0.5:6379 is reached without TLS") {
		t.Errorf("warnings: %v", cfg.Warnings)
	}
}

func TestParseDefaults(t *testing.T) {
	dir := fixture(t)
	cfg, err := parse(t, dir, oidcToken, env{"XDG_STATE_HOME": "/state"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Listen, (Listen{Network: "unix", Address: "/run/user/1000/tokenkeeper/agent.sock"}); got != want {
		t.Errorf("listen = %v, want %v", got, want)
	}
	if cfg.SecretFile != "/run/user/1000/tokenkeeper/agent.secret" {
		t.Errorf("secret file = %q", cfg.SecretFile)
	}
	if diff := cmp.Diff(Store{Type: "file", Path: "/state/tokenkeeper/tokens.db"}, cfg.Store); diff != "" {
		t.Errorf("store = %+v", cfg.Store)
	}
	if cfg.Log != (Log{Format: "text"}) || cfg.Keeper.Workers != 0 {
		t.Errorf("log %+v keeper %+v", cfg.Log, cfg.Keeper)
	}
	if cfg.Tokens[0].Group != "https://idp.example.com" || cfg.Tokens[0].Source.AuthStyle != "auto" {
		t.Errorf("token = %+v", cfg.Tokens[0])
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("warnings: %v", cfg.Warnings)
	}
}

func TestParseErrors(t *testing.T) {
	dir := fixture(t)
	tests := []struct {
		name string
		yaml string
		env  env
		want []string
	}{
		{"empty file", ``, nil, []string{"0: the file is empty"}},
		{"not a mapping", "- a\n- b\n", nil, []string{"1: the file must be a mapping (listen:, store:, tokens:, ...)"}},
		{"syntax", "listen: [\n", nil, []string{"1: did not find expected node content"}},
		{"two documents", "listen: 127.0.0.1:1\n---\nlisten: 127.0.0.1:2\n", nil,
			[]string{"3: a second YAML document; the file must hold exactly one"}},
		{"unknown top-level key with suggestion", "listne: 127.0.0.1:1\n" + oidcToken, nil,
			[]string{`1: unknown key "listne" in the top level (did you mean "listen"?)`}},
		{"unknown keys at several depths", `
store:
  pth: x
tokens:
  - name: a
    colour: red
    source:
      type: oidc
      client_secert_file: x
    policy:
      idle: 3s
`, nil, []string{
			`3: unknown key "pth" in store (did you mean "path"?)`,
			`6: unknown key "colour" in token`,
			`9: unknown key "client_secert_file" in token source (did you mean "client_secret_file"?)`,
			`11: unknown key "idle" in policy`,
		}},
		{"duplicate mapping key", "listen: 127.0.0.1:1\nlisten: 127.0.0.1:2\n", nil,
			[]string{`2: mapping key "listen" already defined at line 1`}},
		{"wrong types", `
keeper:
  workers: many
tokens: {name: a}
`, nil, []string{"3: expected an integer, found the string \"many\"", "4: expected a list, found a mapping"}},
		{"bad durations", `
policy:
  idle_gap: 30
  start_lead: 5 minutes
  end_lead: -1s
  retry_base: [1s]
` + oidcToken, nil, []string{
			`3: bad duration "30": missing unit (write "30s" for seconds)`,
			`4: bad duration "5 minutes": unknown unit " minutes" in duration "5 minutes"`,
			`5: duration "-1s" is negative`,
			`6: expected a duration such as "30s" or "5m"`,
		}},
		{"non-loopback listen", "listen: 0.0.0.0:8377\n" + oidcToken, nil,
			[]string{`1: listen address "0.0.0.0:8377" is not a loopback address: the agent only listens on a Unix socket or on loopback (127.0.0.1, ::1)`}},
		{"listen host name", "listen: example.com:80\n" + oidcToken, nil,
			[]string{`1: listen host "example.com" must be a loopback IP address (127.0.0.1, ::1) or localhost`}},
		{"listen garbage", "listen: nonsense\n" + oidcToken, nil,
			[]string{`1: listen address "nonsense" is neither unix:PATH nor HOST:PORT`}},
		{"listen bad port", "listen: 127.0.0.1:99999\n" + oidcToken, nil,
			[]string{`1: bad port "99999" in listen address "127.0.0.1:99999"`}},
		{"listen long socket", "listen: unix:/" + strings.Repeat("x", 120) + "\n" + oidcToken, nil,
			[]string{"1: socket path /" + strings.Repeat("x", 120) + " is 121 bytes long; Unix sockets allow at most 103"}},
		{"listen unset variable", "listen: unix:$NOPE/agent.sock\n" + oidcToken, nil,
			[]string{"1: environment variable NOPE is not set"}},
		{"store problems", `
store:
  type: file
  key_file: bad.key
  key_env: KEY
` + oidcToken, env{"KEY": "x"}, []string{
			// The rest of these two messages is filestore's.
			"4: store.key_file: key file " + filepath.Join(dir, "bad.key") + ": …",
			"5: store: key_file and key_env are exclusive; choose one",
			"5: store.key_env: environment variable KEY: …",
		}},
		{"store key env unset", "store: {key_env: KEY}\n" + oidcToken, nil,
			[]string{"1: store.key_env: environment variable KEY is not set"}},
		{"memory store with a path", "store: {type: memory, path: x}\n" + oidcToken, nil,
			[]string{"1: store: path does not apply to a memory store"}},
		{"unknown store type", "store: {type: etcd}\n" + oidcToken, nil,
			[]string{`1: unknown store type "etcd" (want file, redis or memory)`}},
		{"redis store problems", `
store:
  type: redis
  address: redis.example.com
  db: -1
  password: hunter2
  password_env: NOPE
  prefix: "a{b}"
  lock_ttl: 1ms
  path: x
` + oidcToken, nil, []string{
			`4: store.address: "redis.example.com" is not host:port (such as 127.0.0.1:6379)`,
			"5: store.db must not be negative (got -1)",
			"6: inline password is refused: secrets do not belong in config files; name a file (password_file) or an environment variable (password_env)",
			"7: redis password: environment variable NOPE is not set",
			`8: store.prefix "a{b}" must be non-empty, without braces or white space`,
			"9: store.lock_ttl 1ms is under 10ms",
			"10: store: path does not apply to a redis store",
		}},
		{"redis store port and keys", `
store: {type: redis, address: "127.0.0.1:0", key_file: bad.key, tls: maybe}
` + oidcToken, nil, []string{`2: expected true or false, found the string "maybe"`}},
		{"redis store port", `
store: {type: redis, address: "127.0.0.1:70000", key_file: bad.key}
` + oidcToken, nil, []string{
			`2: store.address: bad port "70000"`,
			"2: store.key_file: key file " + filepath.Join(dir, "bad.key") + ": …",
		}},
		{"file store with redis keys", "store: {path: x, address: 127.0.0.1:1}\n" + oidcToken, nil,
			[]string{"1: store: address does not apply to a file store"}},
		{"keeper and log values", `
keeper:
  workers: 0
  breaker: {failures: -1, open_for: 1m, max_open: 1s}
log: {level: loud, format: xml}
` + oidcToken, nil, []string{
			"3: keeper.workers must be at least 1 (got 0)",
			"4: keeper.breaker.failures must be at least 1 (got -1)",
			"4: keeper.breaker.max_open (1s) is shorter than open_for (1m0s)",
			`5: unknown log level "loud" (want debug, info, warn or error)`,
			`5: unknown log format "xml" (want text or json)`,
		}},
		{"policy rules", `
policy:
  start_lead: 1m
  end_lead: 2m
tokens:
  - name: a
    source: {type: command, command: [./helper.sh]}
    policy:
      retry_base: 1m
      retry_max: 1s
      default_lifetime: 2h
      max_lifetime: 1h
`, nil, []string{
			"3: policy: start_lead (1m0s) is shorter than end_lead (2m0s); the window opens at start_lead before expiry and closes at end_lead",
			"10: policy: retry_max (1s) is shorter than retry_base (1m0s)",
			"11: policy: default_lifetime (2h0m0s) exceeds max_lifetime (1h0m0s)",
		}},
		{"duplicate token names", `
tokens:
  - name: a
    source: {type: command, command: [./helper.sh]}
  - name: b
    source: {type: command, command: [./helper.sh]}
  - name: a
    source: {type: command, command: [./helper.sh]}
`, nil, []string{`7: duplicate token name "a" (first defined at line 3)`}},
		{"token names", `
tokens:
  - source: {type: command, command: [./helper.sh]}
  - name: "has space"
    source: {type: command, command: [./helper.sh]}
  - name: x
  -
`, nil, []string{
			"3: token without a name",
			`4: bad token name "has space": use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit`,
			`6: token "x" has no source`,
			"7: empty token entry",
		}},
		{"source types", `
tokens:
  - name: a
    source: {client_id: x}
  - name: c
    source: {type: saml}
`, nil, []string{
			"4: source without a type (want oidc, client_credentials, cognito or command)",
			`6: unknown source type "saml" (want oidc, client_credentials, cognito or command)`,
		}},
		{"cognito without settings", `
tokens:
  - name: a
    source: {type: cognito}
`, nil, []string{
			"4: a cognito source needs region (the user pool's AWS region, such as eu-west-1)",
			"4: a cognito source needs client_id (the app client's id)",
			"4: a cognito source needs its initial refresh token: set refresh_token_file or refresh_token_env",
		}},
		{"cognito rotation is a boolean", `
tokens:
  - name: a
    source: {type: cognito, rotation: yes please}
`, nil, []string{`4: expected true or false, found the string "yes please"`}},
		{"cognito settings", `
tokens:
  - name: a
    source:
      type: cognito
      region: Europe
      client_id: app
      refresh_token_file: refresh.token
  - name: b
    source:
      type: cognito
      region: eu-west-1
      user_pool_id: us-east-1_AbCdEf
      client_id: app
      refresh_token: inline
      issuer: https://idp.example.com
  - name: c
    source:
      type: cognito
      region: local
      endpoint: http://cognito.example.com:9229
      client_id: app
      client_secret_file: client.secret
      refresh_token_env: RT
  - name: d
    source:
      type: cognito
      region: local
      endpoint: http://127.0.0.1:9229/path
      user_pool_id: garbage
      client_id: app
      client_secret_env: CS
      refresh_token_file: refresh.token
  - name: e
    source:
      type: oidc
      issuer: https://idp.example.com
      client_id: e
      refresh_token_file: refresh.token
      region: eu-west-1
  - name: f
    source:
      type: cognito
      region: local
      endpoint: http://localhost:9229
      user_pool_id: garbage
      client_id: app
      client_secret_env: CS
      refresh_token_file: refresh.token
      rotation: true
`, env{"RT": "rt", "CS": "cs"}, []string{
			`6: region: "Europe" is not an AWS region name`,
			"13: user_pool_id: user pool \"us-east-1_AbCdEf\" is in us-east-1, not in region eu-west-1",
			"15: inline refresh_token is refused: secrets do not belong in config files; name a file (refresh_token_file) or an environment variable (refresh_token_env)",
			"16: issuer does not apply to a source of type cognito",
			"19: a cognito app client with a secret refreshes with a SECRET_HASH over the user's internal user name: set username (the cognito:username claim of the user's ID token; the user's sub in a pool that signs users in by e-mail), or rotation: true if the app client rotates refresh tokens",
			`21: endpoint: "http://cognito.example.com:9229" must use https (plain http is accepted only for loopback hosts)`,
			"27: a cognito app client with a secret refreshes with a SECRET_HASH over the user's internal user name: set username (the cognito:username claim of the user's ID token; the user's sub in a pool that signs users in by e-mail), or rotation: true if the app client rotates refresh tokens",
			`29: endpoint: "http://127.0.0.1:9229/path" has a path, query or fragment; give the emulator's base URL, such as http://127.0.0.1:9229`,
			"40: region does not apply to a source of type oidc",
			`46: user_pool_id: user pool id "garbage" is not of the form <region>_<id>`,
		}},
		{"missing secrets and endpoints", `
tokens:
  - name: a
    source:
      type: oidc
      client_secret_file: nope.secret
  - name: b
    source:
      type: client_credentials
      token_url: https://idp/token
      client_id: b
      client_secret_env: UNSET
      refresh_token_file: refresh.token
  - name: c
    source:
      type: oidc
      issuer: https://idp
      client_id: c
      refresh_token_env: EMPTY
      client_secret_file: empty.secret
`, env{"EMPTY": "  "}, []string{
			"5: source needs issuer (discovery) or token_url",
			"5: source needs client_id",
			"5: an oidc source needs its initial refresh token: set refresh_token_file or refresh_token_env",
			"6: cannot read secret file: " + filepath.Join(dir, "nope.secret") + ": no such file or directory",
			"12: client secret: environment variable UNSET is not set",
			"13: refresh_token_file does not apply to a source of type client_credentials",
			"19: refresh token: environment variable EMPTY is empty",
			"20: secret file " + filepath.Join(dir, "empty.secret") + " is empty",
		}},
		{"inline secrets are refused", `
tokens:
  - name: a
    source:
      type: oidc
      issuer: https://idp
      client_id: a
      client_secret: hunter2
      refresh_token: abc
`, nil, []string{
			"8: inline client_secret is refused: secrets do not belong in config files; name a file (client_secret_file) or an environment variable (client_secret_env)",
			"9: inline refresh_token is refused: secrets do not belong in config files; name a file (refresh_token_file) or an environment variable (refresh_token_env)",
		}},
		{"both file and env", `
tokens:
  - name: a
    source:
      type: client_credentials
      issuer: https://idp
      client_id: a
      client_secret_file: client.secret
      client_secret_env: X
`, env{"X": "y"}, []string{"9: client secret: set client_secret_file or client_secret_env, not both"}},
		{"urls", `
tokens:
  - name: a
    source:
      type: client_credentials
      issuer: http://idp.example.com
      token_url: ftp://idp/token
      client_id: a
      reuse_grace: 1s
      auth_style: digest
      params: {grant_type: password}
  - name: b
    source:
      type: client_credentials
      issuer: https://idp/?x=1
      token_url: https://user:pw@idp/token
      client_id: b
`, nil, []string{
			`6: issuer: "http://idp.example.com" must use https (plain http is accepted only for loopback hosts)`,
			`7: token_url: "ftp://idp/token" is not an absolute http(s) URL`,
			"9: reuse_grace does not apply to a source of type client_credentials",
			`10: unknown auth_style "digest" (want auto, basic or post)`,
			`11: params: "grant_type" is set by the source itself`,
			"15: issuer: an issuer URL has no query or fragment",
			`16: token_url: URL "https://user:xxxxx@idp/token" carries credentials; use client_id and client_secret_file`,
		}},
		{"command sources", `
tokens:
  - name: a
    source: {type: command}
  - name: b
    source: {type: command, command: [no-such-program-tk], issuer: https://x}
  - name: c
    source: {type: command, command: [./missing.sh]}
  - name: d
    source: {type: command, command: [./client.secret], env: {"": x}, dir: $UNSET}
  - name: e
    source: {type: command, command: [adir/]}
`, nil, []string{
			"4: a command source needs command: [program, args...]",
			`6: command: "no-such-program-tk" not found in PATH`,
			"6: issuer does not apply to a source of type command",
			"8: command: stat " + filepath.Join(dir, "missing.sh") + ": no such file or directory",
			"10: command: " + filepath.Join(dir, "client.secret") + " is not an executable file",
			`10: env: bad variable name ""`,
			"10: dir: environment variable UNSET is not set",
			"12: command: " + filepath.Join(dir, "adir") + " is not an executable file",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parse(t, dir, tt.yaml, tt.env)
			if err == nil {
				t.Fatalf("no error; config %+v", cfg)
			}
			if cfg != nil {
				t.Error("a Config came with the error")
			}
			got := problems(err)
			for i, w := range tt.want {
				// "…" ends a message whose rest comes from another package.
				if p, ok := strings.CutSuffix(w, "…"); ok && i < len(got) && strings.HasPrefix(got[i], p) {
					got[i] = w
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
			if !strings.HasPrefix(err.Error(), "agent.yaml:") && !strings.Contains(err.Error(), "problems in config") {
				t.Errorf("error does not name the file: %v", err)
			}
			for _, secret := range []string{"cs-value", "rt-value", "hunter2"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error leaks secret %q: %v", secret, err)
				}
			}
		})
	}
}

func TestWarnings(t *testing.T) {
	dir := fixture(t)
	cfg, err := parse(t, dir, `
store: {type: memory}
tokens:
  - name: a
    source:
      type: client_credentials
      token_url: https://idp/token
      client_id: a
      client_secret_file: open.secret
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range cfg.Warnings {
		got = append(got, fmt.Sprintf("%d: %s", w.Line, w.Msg))
	}
	want := []string{
		"2: memory store: tokens do not survive a restart, and a rotated refresh token is lost with the process",
		fmt.Sprintf("9: secret file %s can be read by other users (mode 0644); run chmod 600 %[1]s", filepath.Join(dir, "open.secret")),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
	cfg, err = parse(t, dir, "listen: 127.0.0.1:0\n", nil)
	if err != nil || len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0].Error(), "no tokens") {
		t.Errorf("no tokens: %v %v", cfg, err)
	}
}

func TestSkipSecrets(t *testing.T) {
	cfg, err := Parse("x.yaml", []byte(`
store: {key_env: NOPE, key_file: /nope/key}
tokens:
  - name: a
    source:
      type: oidc
      issuer: https://idp
      client_id: a
      client_secret_file: /nope/secret
      refresh_token_env: NOPE
  - name: b
    source: {type: command, command: [not-installed-here]}
`), Options{SkipSecrets: true, Dir: "/cfg", LookupEnv: env{"HOME": "/h"}.lookup})
	if err == nil {
		t.Fatalf("key_file and key_env together must still be an error")
	}
	cfg, err = Parse("x.yaml", []byte(`
store: {key_env: NOPE}
tokens:
  - name: a
    source:
      type: oidc
      issuer: https://idp
      client_id: a
      client_secret_file: /nope/secret
      refresh_token_env: NOPE
  - name: b
    source: {type: command, command: [not-installed-here]}
`), Options{SkipSecrets: true, Dir: "/cfg", LookupEnv: env{"HOME": "/h"}.lookup})
	if err != nil {
		t.Fatal(err)
	}
	if s := cfg.Tokens[0].Source; s.ClientSecret != "" || s.ClientSecretFrom != "file /nope/secret" || s.RefreshTokenFrom != "environment variable NOPE" {
		t.Errorf("source = %+v", s)
	}
}

func TestExampleFile(t *testing.T) {
	cfg, err := Load("../../docs/agent.example.yaml", Options{SkipSecrets: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Tokens) != 4 || cfg.Path != "../../docs/agent.example.yaml" {
		t.Errorf("example: %d tokens, path %q", len(cfg.Tokens), cfg.Path)
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("example has warnings: %v", cfg.Warnings)
	}
}

func TestLoad(t *testing.T) {
	dir := fixture(t)
	path := filepath.Join(dir, "agent.yaml")
	os.WriteFile(path, []byte(oidcToken), 0o600)
	cfg, err := Load(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Tokens[0].Source.RefreshToken != "rt-value" || cfg.Path != path {
		t.Errorf("Load: %+v", cfg)
	}
	if _, err := Load(filepath.Join(dir, "nope.yaml"), Options{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file: %v", err)
	}
	big := filepath.Join(dir, "big.yaml")
	os.WriteFile(big, make([]byte, maxFileSize+1), 0o600)
	if _, err := Load(big, Options{}); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("Load of a huge file: %v", err)
	}
	// A relative path resolves against the working directory.
	t.Chdir(dir)
	if cfg, err := Load("agent.yaml", Options{}); err != nil || cfg.Tokens[0].Source.ClientSecret != "cs-value" {
		t.Errorf("relative Load: %v", err)
	}
	if cfg, err := Parse("p", []byte(oidcToken), Options{}); err != nil || cfg.Tokens[0].Source.ClientSecret != "cs-value" {
		t.Errorf("Parse without a Dir: %v", err)
	}
}

func TestFingerprint(t *testing.T) {
	dir := fixture(t)
	a, _ := parse(t, dir, oidcToken, nil)
	b, _ := parse(t, dir, "\n\n"+oidcToken, nil) // moved down: same token
	if a.Tokens[0].Fingerprint() != b.Tokens[0].Fingerprint() {
		t.Error("moving a token changed its fingerprint")
	}
	os.WriteFile(filepath.Join(dir, "refresh.token"), []byte("rt-other"), 0o600)
	c, _ := parse(t, dir, oidcToken, nil)
	if a.Tokens[0].Fingerprint() == c.Tokens[0].Fingerprint() {
		t.Error("a new refresh token did not change the fingerprint")
	}
	d, _ := parse(t, dir, strings.Replace(oidcToken, "client_id: cli", "client_id: cli2", 1), nil)
	if a.Tokens[0].Fingerprint() == d.Tokens[0].Fingerprint() {
		t.Error("a new client_id did not change the fingerprint")
	}
	if SecretHash("") != "" || SecretHash("a") == SecretHash("b") || len(SecretHash("a")) != 32 {
		t.Error("SecretHash")
	}
}

func TestErrorFormatting(t *testing.T) {
	tests := []struct {
		e    Error
		want string
	}{
		{Error{File: "f.yaml", Line: 3, Column: 5, Msg: "m"}, "f.yaml:3:5: m"},
		{Error{File: "f.yaml", Line: 3, Msg: "m"}, "f.yaml:3: m"},
		{Error{File: "f.yaml", Msg: "m"}, "f.yaml: m"},
		{Error{Msg: "m"}, "m"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("%+v: %q, want %q", tt.e, got, tt.want)
		}
	}
	l := ErrorList{{Line: 1, Msg: "a"}, {Line: 2, Msg: "b"}}
	if got := l.Error(); got != "2 problems in config:\n\t1: a\n\t2: b" {
		t.Errorf("list: %q", got)
	}
	if (ErrorList{}).Error() != "no errors" || (ErrorList{{Msg: "x"}}).Error() != "x" {
		t.Error("short lists")
	}
	var e *Error
	if !errors.As(l, &e) || e.Msg != "a" {
		t.Error("errors.As through ErrorList")
	}
	for in, want := range map[string]string{
		"yaml: line 7: mapping values are not allowed": "mapping values are not allowed",
		"something else": "something else",
		"line 2: cannot unmarshal !!bool `true` into []string":    "expected a list, found a boolean",
		"line 2: cannot unmarshal !!null into map[string]string":  "expected a mapping, found null",
		"line 2: cannot unmarshal !!float `1.5` into int":         "expected an integer, found the number 1.5",
		"line 2: cannot unmarshal !!seq into bool":                "expected true or false, found a list",
		"line 2: cannot unmarshal !!binary `x` into float64":      "expected a number, found a binary value",
		"line 2: cannot unmarshal !!map into config.rawStore":     "expected a mapping, found a mapping",
		"line 2: cannot unmarshal !!str `x` into config.Duration": "expected a mapping, found the string \"x\"",
	} {
		if _, got := yamlMessage(in); got != want {
			t.Errorf("yamlMessage(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDefaultPaths(t *testing.T) {
	e := env{"HOME": "/home/u"}
	if d, _ := RuntimeDir(e.lookup); d != "/home/u/.cache/tokenkeeper" {
		t.Errorf("RuntimeDir without XDG_RUNTIME_DIR = %q", d)
	}
	e["XDG_CACHE_HOME"] = "/cache"
	if d, _ := RuntimeDir(e.lookup); d != "/cache/tokenkeeper" {
		t.Errorf("RuntimeDir with XDG_CACHE_HOME = %q", d)
	}
	if p, _ := DefaultStorePath(e.lookup); p != "/home/u/.local/state/tokenkeeper/tokens.db" {
		t.Errorf("DefaultStorePath = %q", p)
	}
	if p := DefaultPath(e.lookup); p != "/home/u/.config/tokenkeeper/agent.yaml" {
		t.Errorf("DefaultPath = %q", p)
	}
	e["XDG_CONFIG_HOME"] = "/conf"
	if p := DefaultPath(e.lookup); p != "/conf/tokenkeeper/agent.yaml" {
		t.Errorf("DefaultPath with XDG_CONFIG_HOME = %q", p)
	}
	if l, _ := DefaultListen(e.lookup); l.String() != "unix:/cache/tokenkeeper/agent.sock" {
		t.Errorf("DefaultListen = %v", l)
	}
	if s, _ := DefaultSecretFile(e.lookup); s != "/cache/tokenkeeper/agent.secret" {
		t.Errorf("DefaultSecretFile = %v", s)
	}
	// The real environment gives some answer.
	if DefaultPath(nil) == "" {
		t.Error("DefaultPath(nil) is empty")
	}
	if _, err := RuntimeDir(nil); err != nil {
		t.Error(err)
	}
	if _, err := DefaultStorePath(nil); err != nil {
		t.Error(err)
	}
}

func TestParseListen(t *testing.T) {
	lookup := env{"HOME": "/h", "R": "/run"}.lookup
	tests := []struct{ in, want string }{
		{"127.0.0.1:80", "127.0.0.1:80"},
		{"localhost:0", "127.0.0.1:0"},
		{"[::1]:8377", "[::1]:8377"},
		{"[::ffff:127.0.0.1]:1", "127.0.0.1:1"},
		{"unix:/tmp/a.sock", "unix:/tmp/a.sock"},
		{"unix:rel.sock", "unix:/cfg/rel.sock"},
		{"/abs.sock", "unix:/abs.sock"},
		{"~/a.sock", "unix:/h/a.sock"},
		{"unix:~", "unix:/h"},
		{"unix:${R}/x.sock", "unix:/run/x.sock"},
	}
	for _, tt := range tests {
		l, err := ParseListen(tt.in, "/cfg", lookup)
		if err != nil || l.String() != tt.want {
			t.Errorf("ParseListen(%q) = %v, %v; want %s", tt.in, l, err, tt.want)
		}
	}
	for _, bad := range []string{"unix:", "10.0.0.1:80", "[fe80::1]:80", ":80", "127.0.0.1:x"} {
		if _, err := ParseListen(bad, "/cfg", lookup); err == nil {
			t.Errorf("ParseListen(%q) succeeded", bad)
		}
	}
	if _, err := ParseListen("unix:/x.sock", "/", nil); err != nil {
		t.Error(err)
	}
}

func TestSuggest(t *testing.T) {
	fields := yamlFields(reflect.TypeFor[rawSource]())
	for in, want := range map[string]string{
		"client_secert_file": "client_secret_file",
		"tpye":               "type",
		"xyzzy":              "",
		"Issuer":             "issuer",
	} {
		if got := suggest(in, fields); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
}

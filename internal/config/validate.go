package config

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/cognito"
	"github.com/tokenkeeper/tokenkeeper/filestore"
	"go.yaml.in/yaml/v3"
)

// tree finds the position of a value in the parsed document.
type tree struct{ root *yaml.Node }

// find follows path (string keys and int indexes) and returns the key node
// (nil for a sequence element) and the value node of its last element, or
// the deepest node it reached and ok=false.
func (t tree) find(path ...any) (key, val *yaml.Node, ok bool) {
	n := t.root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for _, p := range path {
		switch p := p.(type) {
		case string:
			if n.Kind != yaml.MappingNode {
				return nil, n, false
			}
			found := false
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == p {
					key, n, found = n.Content[i], n.Content[i+1], true
					break
				}
			}
			if !found {
				return key, n, false
			}
		case int:
			if n.Kind != yaml.SequenceNode || p >= len(n.Content) {
				return nil, n, false
			}
			key, n = nil, n.Content[p]
		}
	}
	return key, n, true
}

// validator turns a decoded rawFile into a Config.
type validator struct {
	*errs
	opts     Options
	tree     tree
	warnings []*Error
}

func (v *validator) lookupEnv(name string) (string, bool) { return v.opts.LookupEnv(name) }

// errAt reports a problem at the value found at path.
func (v *validator) errAt(path []any, format string, args ...any) {
	_, n, _ := v.tree.find(path...)
	v.at(n.Line, n.Column, format, args...)
}

// errKey reports a problem at the key of the value found at path.
func (v *validator) errKey(path []any, format string, args ...any) {
	k, n, _ := v.tree.find(path...)
	if k != nil {
		n = k
	}
	v.at(n.Line, n.Column, format, args...)
}

func (v *validator) warnAt(path []any, format string, args ...any) {
	_, n, _ := v.tree.find(path...)
	v.warnings = append(v.warnings, &Error{File: v.errs.file, Line: n.Line, Column: n.Column, Msg: fmt.Sprintf(format, args...)})
}

func p(elems ...any) []any { return elems }

func (v *validator) build(raw *rawFile) *Config {
	cfg := &Config{}
	var err error

	// listen and secret_file
	if raw.Listen == "" {
		cfg.Listen, err = DefaultListen(v.opts.LookupEnv)
		if err != nil {
			v.at(0, 0, "%v (set listen:)", err)
		}
	} else if cfg.Listen, err = ParseListen(raw.Listen, v.opts.Dir, v.opts.LookupEnv); err != nil {
		v.errAt(p("listen"), "%v", err)
	}
	if raw.SecretFile == "" {
		cfg.SecretFile, err = DefaultSecretFile(v.opts.LookupEnv)
		if err != nil && cfg.Listen.Network == "tcp" {
			v.at(0, 0, "%v (set secret_file:)", err)
		}
	} else if cfg.SecretFile, err = expandPath(raw.SecretFile, v.opts.Dir, v.lookupEnv); err != nil {
		v.errAt(p("secret_file"), "secret_file: %v", err)
	}

	cfg.Store = v.store(raw.Store)
	cfg.Keeper = v.keeper(raw.Keeper)
	cfg.Keeper.Policy = v.policy(tokenkeeper.Policy{}, raw.Policy, p("policy"))
	v.checkPolicy(cfg.Keeper.Policy, p("policy"))
	cfg.Log = v.log(raw.Log)
	if raw.Agent != nil && raw.Agent.History != nil {
		cfg.History = raw.Agent.History.D
	}

	// tokens
	if len(raw.Tokens) == 0 {
		v.warnAt(p("tokens"), "no tokens: the agent has nothing to keep")
	}
	first := make(map[string]int) // name -> line of first definition
	for i, rt := range raw.Tokens {
		at := p("tokens", i)
		if rt == nil {
			v.errAt(at, "empty token entry")
			continue
		}
		t := v.token(cfg, rt, at)
		if t.Name != "" {
			if line, dup := first[t.Name]; dup {
				v.errAt(append(at, "name"), "duplicate token name %q (first defined at line %d)", t.Name, line)
			} else {
				first[t.Name] = t.Line
			}
		}
		cfg.Tokens = append(cfg.Tokens, t)
	}
	return cfg
}

// storeKeys lists the keys each store type accepts besides type.
var storeKeys = map[string][]string{
	StoreFile: {"path", "key_file", "key_env"},
	StoreRedis: {"address", "db", "username", "password", "password_file", "password_env", "tls", "prefix", "lock_ttl",
		"key_file", "key_env"},
	StoreMemory: {},
}

func (v *validator) store(rs *rawStore) Store {
	s := Store{Type: StoreFile}
	if rs == nil {
		rs = &rawStore{}
	}
	if rs.Type != "" {
		s.Type = rs.Type
	}
	allowed, ok := storeKeys[s.Type]
	if !ok {
		v.errAt(p("store", "type"), "unknown store type %q (want file, redis or memory)", s.Type)
		return s
	}
	// Keys that exist but do not apply to this type.
	if _, n, ok := v.tree.find("store"); ok && n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Value != "type" && !slices.Contains(allowed, k.Value) {
				v.at(k.Line, k.Column, "store: %s does not apply to a %s store", k.Value, s.Type)
			}
		}
	}
	switch s.Type {
	case StoreFile:
		if rs.Path == "" {
			path, err := DefaultStorePath(v.opts.LookupEnv)
			if err != nil {
				v.at(0, 0, "%v (set store.path:)", err)
			}
			s.Path = path
		} else {
			path, err := expandPath(rs.Path, v.opts.Dir, v.lookupEnv)
			if err != nil {
				v.errAt(p("store", "path"), "store.path: %v", err)
			}
			s.Path = path
		}
		v.storeKey(&s, rs)
	case StoreRedis:
		v.redisStore(&s, rs)
		v.storeKey(&s, rs)
		if rs.KeyFile == "" && rs.KeyEnv == "" {
			v.warnAt(p("store", "type"), "redis store without key_file or key_env: tokens are kept in Redis unencrypted, readable by anyone who can read the database")
		}
	case StoreMemory:
		v.warnAt(p("store", "type"), "memory store: tokens do not survive a restart, and a rotated refresh token is lost with the process")
	}
	return s
}

// storeKey reads the encryption key of a file or redis store, if any.
func (v *validator) storeKey(s *Store, rs *rawStore) {
	if rs.KeyFile != "" && rs.KeyEnv != "" {
		v.errKey(p("store", "key_env"), "store: key_file and key_env are exclusive; choose one")
	}
	if rs.KeyFile != "" {
		path, err := expandPath(rs.KeyFile, v.opts.Dir, v.lookupEnv)
		if err != nil {
			v.errAt(p("store", "key_file"), "store.key_file: %v", err)
		} else if !v.opts.SkipSecrets {
			if s.Key, err = filestore.KeyFromFile(path); err != nil {
				v.errAt(p("store", "key_file"), "store.key_file: %s", strings.TrimPrefix(err.Error(), "tokenkeeper: filestore: "))
			} else if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
				v.warnAt(p("store", "key_file"), "key file %s can be read by other users (mode %04o); run chmod 600 %s", path, fi.Mode().Perm(), path)
			}
		}
		s.KeyFile = path
	}
	if rs.KeyEnv != "" {
		s.KeyEnv = rs.KeyEnv
		val, ok := v.lookupEnv(rs.KeyEnv)
		switch {
		case v.opts.SkipSecrets:
		case !ok || val == "":
			v.errAt(p("store", "key_env"), "store.key_env: environment variable %s is not set", rs.KeyEnv)
		default:
			var err error
			if s.Key, err = filestore.ParseKey([]byte(val)); err != nil {
				v.errAt(p("store", "key_env"), "store.key_env: environment variable %s: %s", rs.KeyEnv, strings.TrimPrefix(err.Error(), "tokenkeeper: filestore: "))
			}
		}
	}
}

// minLockTTL is the shortest lock lease redisstore accepts.
const minLockTTL = 10 * time.Millisecond

// redisStore validates the settings of a redis store.
func (v *validator) redisStore(s *Store, rs *rawStore) {
	s.Address = DefaultRedisAddress
	if rs.Address != "" {
		host, port, err := net.SplitHostPort(rs.Address)
		n, perr := strconv.Atoi(port)
		switch {
		case err != nil || host == "":
			v.errAt(p("store", "address"), "store.address: %q is not host:port (such as 127.0.0.1:6379)", rs.Address)
		case perr != nil || n < 1 || n > 65535:
			v.errAt(p("store", "address"), "store.address: bad port %q", port)
		default:
			s.Address = rs.Address
		}
	}
	if rs.DB != nil {
		if *rs.DB < 0 {
			v.errAt(p("store", "db"), "store.db must not be negative (got %d)", *rs.DB)
		} else {
			s.DB = *rs.DB
		}
	}
	s.Username = rs.Username
	if rs.Password != "" {
		v.errAt(p("store", "password"), "inline password is refused: secrets do not belong in config files; name a file (password_file) or an environment variable (password_env)")
	}
	s.Password, s.PasswordFrom = v.secret("redis password", rs.PasswordFile, rs.PasswordEnv,
		p("store", "password_file"), p("store", "password_env"), false)
	if rs.TLS != nil {
		s.TLS = *rs.TLS
	}
	if rs.Prefix != nil {
		if *rs.Prefix == "" || strings.ContainsAny(*rs.Prefix, "{} \t\r\n") {
			v.errAt(p("store", "prefix"), "store.prefix %q must be non-empty, without braces or white space", *rs.Prefix)
		} else {
			s.Prefix = *rs.Prefix
		}
	}
	if rs.LockTTL != nil {
		if rs.LockTTL.D < minLockTTL {
			v.errAt(p("store", "lock_ttl"), "store.lock_ttl %v is under %v", rs.LockTTL.D, minLockTTL)
		} else {
			s.LockTTL = rs.LockTTL.D
		}
	}
	if host, _, err := net.SplitHostPort(s.Address); err == nil && !s.TLS && !isLoopbackHost(host) {
		v.warnAt(p("store", "address"), "redis at %s is reached without TLS (tls: false): its password and the lock traffic cross the network in the clear", s.Address)
	}
}

func (v *validator) keeper(rk *rawKeeper) Keeper {
	var k Keeper
	if rk == nil {
		return k
	}
	positive := func(n *int, name string, path []any) int {
		if n == nil {
			return 0
		}
		if *n < 1 {
			v.errAt(path, "%s must be at least 1 (got %d)", name, *n)
			return 0
		}
		return *n
	}
	k.Workers = positive(rk.Workers, "keeper.workers", p("keeper", "workers"))
	k.MaxQueued = positive(rk.MaxQueued, "keeper.max_queued", p("keeper", "max_queued"))
	k.GroupConcurrency = positive(rk.GroupConcurrency, "keeper.group_concurrency", p("keeper", "group_concurrency"))
	if b := rk.Breaker; b != nil {
		k.Breaker.Failures = positive(b.Failures, "keeper.breaker.failures", p("keeper", "breaker", "failures"))
		if b.OpenFor != nil {
			k.Breaker.OpenFor = b.OpenFor.D
		}
		if b.MaxOpen != nil {
			k.Breaker.MaxOpen = b.MaxOpen.D
		}
		if k.Breaker.OpenFor > 0 && k.Breaker.MaxOpen > 0 && k.Breaker.MaxOpen < k.Breaker.OpenFor {
			v.errAt(p("keeper", "breaker", "max_open"), "keeper.breaker.max_open (%v) is shorter than open_for (%v)", k.Breaker.MaxOpen, k.Breaker.OpenFor)
		}
	}
	return k
}

func (v *validator) log(rl *rawLog) Log {
	l := Log{Level: slog.LevelInfo, Format: "text"}
	if rl == nil {
		return l
	}
	if rl.Level != "" {
		if err := l.Level.UnmarshalText([]byte(rl.Level)); err != nil {
			v.errAt(p("log", "level"), "unknown log level %q (want debug, info, warn or error)", rl.Level)
		}
	}
	switch rl.Format {
	case "", "text":
	case "json":
		l.Format = "json"
	default:
		v.errAt(p("log", "format"), "unknown log format %q (want text or json)", rl.Format)
	}
	return l
}

// policy applies the keys set in rp over base.
func (v *validator) policy(base tokenkeeper.Policy, rp *rawPolicy, at []any) tokenkeeper.Policy {
	if rp == nil {
		return base
	}
	set := func(dst *time.Duration, d *Duration) {
		if d != nil {
			*dst = d.D
		}
	}
	set(&base.StartLead, rp.StartLead)
	set(&base.EndLead, rp.EndLead)
	set(&base.IdleGap, rp.IdleGap)
	set(&base.UnusedAfter, rp.UnusedAfter)
	set(&base.ExpiryMargin, rp.ExpiryMargin)
	set(&base.DefaultLifetime, rp.DefaultLifetime)
	set(&base.MaxLifetime, rp.MaxLifetime)
	set(&base.AttemptTimeout, rp.AttemptTimeout)
	set(&base.RetryBase, rp.RetryBase)
	set(&base.RetryMax, rp.RetryMax)
	return base
}

// checkPolicy reports the rules a Policy must satisfy, at the first of paths
// that exists in the file.
func (v *validator) checkPolicy(pol tokenkeeper.Policy, paths ...[]any) {
	where := func(key string) []any {
		for _, path := range paths {
			if _, _, ok := v.tree.find(append(slices.Clone(path), key)...); ok {
				return append(slices.Clone(path), key)
			}
		}
		return paths[0]
	}
	if pol.StartLead != 0 && pol.EndLead != 0 && pol.StartLead < pol.EndLead {
		v.errAt(where("start_lead"), "policy: start_lead (%v) is shorter than end_lead (%v); the window opens at start_lead before expiry and closes at end_lead", pol.StartLead, pol.EndLead)
	}
	if pol.RetryBase != 0 && pol.RetryMax != 0 && pol.RetryMax < pol.RetryBase {
		v.errAt(where("retry_max"), "policy: retry_max (%v) is shorter than retry_base (%v)", pol.RetryMax, pol.RetryBase)
	}
	if pol.MaxLifetime != 0 && pol.DefaultLifetime > pol.MaxLifetime {
		v.errAt(where("default_lifetime"), "policy: default_lifetime (%v) exceeds max_lifetime (%v)", pol.DefaultLifetime, pol.MaxLifetime)
	}
}

var nameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func (v *validator) token(cfg *Config, rt *rawToken, at []any) Token {
	_, n, _ := v.tree.find(at...)
	t := Token{Name: rt.Name, Group: rt.Group, Line: n.Line}
	switch {
	case rt.Name == "":
		v.errAt(at, "token without a name")
	case !nameRe.MatchString(rt.Name):
		v.errAt(append(at, "name"), "bad token name %q: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", rt.Name)
	}
	if rt.Source == nil {
		v.errAt(at, "token %q has no source", rt.Name)
	} else {
		t.Source = v.source(rt.Source, append(slices.Clone(at), "source"))
	}
	if t.Group == "" {
		switch t.Source.Type {
		case SourceOIDC, SourceClientCredentials:
			t.Group = strings.TrimSuffix(t.Source.Issuer, "/")
			if t.Group == "" {
				t.Group = t.Source.TokenURL
			}
		case SourceCognito:
			if t.Source.Region != "" {
				t.Group = "cognito-idp:" + t.Source.Region // as cognito.Client.Group
			}
		}
	}
	t.Policy = v.policy(cfg.Keeper.Policy, rt.Policy, append(slices.Clone(at), "policy"))
	if rt.Policy != nil {
		v.checkPolicy(t.Policy, append(slices.Clone(at), "policy"), p("policy"))
	}
	return t
}

// sourceKeys lists the keys each source type accepts besides type.
var sourceKeys = map[string][]string{
	SourceOIDC: {"issuer", "token_url", "client_id", "client_secret", "client_secret_file", "client_secret_env",
		"refresh_token", "refresh_token_file", "refresh_token_env", "scopes", "auth_style", "params", "reuse_grace"},
	SourceClientCredentials: {"issuer", "token_url", "client_id", "client_secret", "client_secret_file", "client_secret_env",
		"scopes", "auth_style", "params"},
	SourceCommand: {"command", "env", "dir", "timeout"},
	SourceCognito: {"region", "user_pool_id", "client_id", "client_secret", "client_secret_file", "client_secret_env",
		"refresh_token", "refresh_token_file", "refresh_token_env", "username", "rotation", "endpoint"},
}

// sourceTypes is how messages list the source types.
const sourceTypes = "oidc, client_credentials, cognito or command"

func (v *validator) source(rs *rawSource, at []any) Source {
	s := Source{Type: rs.Type}
	keyAt := func(k string) []any { return append(slices.Clone(at), k) }
	switch rs.Type {
	case "":
		v.errAt(at, "source without a type (want %s)", sourceTypes)
		return s
	case SourceOIDC, SourceClientCredentials, SourceCommand, SourceCognito:
	default:
		v.errAt(keyAt("type"), "unknown source type %q (want %s)", rs.Type, sourceTypes)
		return s
	}
	// Keys that exist but do not apply to this type.
	if _, n, ok := v.tree.find(at...); ok && n.Kind == yaml.MappingNode {
		allowed := sourceKeys[rs.Type]
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Value != "type" && !slices.Contains(allowed, k.Value) {
				v.at(k.Line, k.Column, "%s does not apply to a source of type %s", k.Value, rs.Type)
			}
		}
	}
	switch rs.Type {
	case SourceCommand:
		v.commandSource(&s, rs, at)
		return s
	case SourceCognito:
		v.cognitoSource(&s, rs, at)
		return s
	}

	// oidc and client_credentials
	if rs.Issuer == "" && rs.TokenURL == "" {
		v.errAt(at, "source needs issuer (discovery) or token_url")
	}
	if rs.Issuer != "" {
		if u, err := checkURL(rs.Issuer); err != nil {
			v.errAt(keyAt("issuer"), "issuer: %v", err)
		} else if u.RawQuery != "" || u.Fragment != "" {
			v.errAt(keyAt("issuer"), "issuer: an issuer URL has no query or fragment")
		}
	}
	if rs.TokenURL != "" {
		if _, err := checkURL(rs.TokenURL); err != nil {
			v.errAt(keyAt("token_url"), "token_url: %v", err)
		}
	}
	s.Issuer, s.TokenURL = rs.Issuer, rs.TokenURL
	if rs.ClientID == "" {
		v.errAt(at, "source needs client_id")
	}
	s.ClientID = rs.ClientID
	s.Scopes = rs.Scopes
	s.Params = rs.Params
	for k := range rs.Params {
		switch k {
		case "grant_type", "refresh_token", "client_id", "client_secret", "scope":
			v.errAt(keyAt("params"), "params: %q is set by the source itself", k)
		}
	}
	switch rs.AuthStyle {
	case "", "auto":
		s.AuthStyle = "auto"
	case "basic", "post":
		s.AuthStyle = rs.AuthStyle
	default:
		v.errAt(keyAt("auth_style"), "unknown auth_style %q (want auto, basic or post)", rs.AuthStyle)
	}

	v.clientSecret(&s, rs, at)
	if rs.Type == SourceOIDC {
		v.refreshToken(&s, rs, at)
		if rs.ReuseGrace != nil {
			s.ReuseGrace = rs.ReuseGrace.D
		}
	}
	return s
}

// clientSecret reads the client secret of an oidc, client_credentials or
// cognito source, if it has one.
func (v *validator) clientSecret(s *Source, rs *rawSource, at []any) {
	keyAt := func(k string) []any { return append(slices.Clone(at), k) }
	if rs.ClientSecret != "" {
		v.errAt(keyAt("client_secret"), "inline client_secret is refused: secrets do not belong in config files; name a file (client_secret_file) or an environment variable (client_secret_env)")
	}
	s.ClientSecret, s.ClientSecretFrom = v.secret("client secret", rs.ClientSecretFile, rs.ClientSecretEnv,
		keyAt("client_secret_file"), keyAt("client_secret_env"), false)
}

// refreshToken reads the initial refresh token of an oidc or cognito
// source, which is required.
func (v *validator) refreshToken(s *Source, rs *rawSource, at []any) {
	keyAt := func(k string) []any { return append(slices.Clone(at), k) }
	if rs.RefreshToken != "" {
		v.errAt(keyAt("refresh_token"), "inline refresh_token is refused: secrets do not belong in config files; name a file (refresh_token_file) or an environment variable (refresh_token_env)")
	} else if rs.RefreshTokenFile == "" && rs.RefreshTokenEnv == "" {
		article := "a"
		if rs.Type == SourceOIDC {
			article = "an"
		}
		v.errAt(at, "%s %s source needs its initial refresh token: set refresh_token_file or refresh_token_env", article, rs.Type)
	}
	s.RefreshToken, s.RefreshTokenFrom = v.secret("refresh token", rs.RefreshTokenFile, rs.RefreshTokenEnv,
		keyAt("refresh_token_file"), keyAt("refresh_token_env"), true)
}

// cognitoSource validates a cognito source: a user's session with an app
// client of a Cognito user pool.
func (v *validator) cognitoSource(s *Source, rs *rawSource, at []any) {
	keyAt := func(k string) []any { return append(slices.Clone(at), k) }
	s.Region, s.UserPoolID, s.ClientID, s.Username = rs.Region, rs.UserPoolID, rs.ClientID, rs.Username
	if rs.Rotation != nil {
		s.Rotation = *rs.Rotation
	}
	if rs.Endpoint != "" {
		if u, err := checkURL(rs.Endpoint); err != nil {
			v.errAt(keyAt("endpoint"), "endpoint: %v", err)
		} else if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
			v.errAt(keyAt("endpoint"), "endpoint: %q has a path, query or fragment; give the emulator's base URL, such as http://127.0.0.1:9229", rs.Endpoint)
		} else {
			s.Endpoint = rs.Endpoint
		}
	}
	// The cognito package's own checks, one setting at a time, so that each
	// problem is reported where it is.
	switch {
	case rs.Region == "":
		v.errAt(at, "a cognito source needs region (the user pool's AWS region, such as eu-west-1)")
	case rs.Endpoint != "" && s.Endpoint == "":
		// The region cannot be checked without knowing whether an emulator
		// is used.
	default:
		if _, err := cognito.New(cognito.Config{Region: rs.Region, ClientID: "x", Endpoint: s.Endpoint}); err != nil {
			v.errAt(keyAt("region"), "region: %s", cognitoMessage(err))
		} else if rs.UserPoolID != "" {
			if _, err := cognito.New(cognito.Config{Region: rs.Region, ClientID: "x", Endpoint: s.Endpoint, UserPoolID: rs.UserPoolID}); err != nil {
				v.errAt(keyAt("user_pool_id"), "user_pool_id: %s", cognitoMessage(err))
			}
		}
	}
	if strings.TrimSpace(rs.ClientID) == "" {
		v.errAt(at, "a cognito source needs client_id (the app client's id)")
	}
	v.clientSecret(s, rs, at)
	v.refreshToken(s, rs, at)
	hasSecret := rs.ClientSecretFile != "" || rs.ClientSecretEnv != ""
	if hasSecret && !s.Rotation && strings.TrimSpace(rs.Username) == "" {
		v.errAt(at, "a cognito app client with a secret refreshes with a SECRET_HASH over the user's internal user name: "+
			"set username (the cognito:username claim of the user's ID token; the user's sub in a pool that signs users in by e-mail), "+
			"or rotation: true if the app client rotates refresh tokens")
	}
}

// cognitoMessage is a cognito package error without its prefixes.
func cognitoMessage(err error) string {
	msg := err.Error()
	for _, p := range []string{cognito.ErrBadConfig.Error() + ": ", cognito.ErrRegionMismatch.Error() + ": "} {
		msg = strings.ReplaceAll(msg, p, "")
	}
	return strings.ReplaceAll(msg, "Region", "region")
}

func (v *validator) commandSource(s *Source, rs *rawSource, at []any) {
	keyAt := func(k string) []any { return append(slices.Clone(at), k) }
	if len(rs.Command) == 0 || rs.Command[0] == "" {
		v.errAt(at, "a command source needs command: [program, args...]")
		return
	}
	s.Command = slices.Clone(rs.Command)
	prog := s.Command[0]
	if strings.ContainsRune(prog, filepath.Separator) || strings.HasPrefix(prog, "~") {
		path, err := expandPath(prog, v.opts.Dir, v.lookupEnv)
		if err != nil {
			v.errAt(keyAt("command"), "command: %v", err)
		}
		s.Command[0] = path
		if !v.opts.SkipSecrets {
			if fi, err := os.Stat(path); err != nil {
				v.errAt(keyAt("command"), "command: %v", err)
			} else if fi.IsDir() || fi.Mode()&0o111 == 0 {
				v.errAt(keyAt("command"), "command: %s is not an executable file", path)
			}
		}
	} else if !v.opts.SkipSecrets {
		if _, err := exec.LookPath(prog); err != nil {
			v.errAt(keyAt("command"), "command: %q not found in PATH", prog)
		}
	}
	s.Env = rs.Env
	for k := range rs.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			v.errAt(keyAt("env"), "env: bad variable name %q", k)
		}
	}
	if rs.Dir != "" {
		d, err := expandPath(rs.Dir, v.opts.Dir, v.lookupEnv)
		if err != nil {
			v.errAt(keyAt("dir"), "dir: %v", err)
		}
		s.Dir = d
	}
	if rs.Timeout != nil {
		s.Timeout = rs.Timeout.D
	}
}

// secret reads a secret from a file or an environment variable.
func (v *validator) secret(what, file, env string, fileAt, envAt []any, required bool) (value, from string) {
	if file != "" && env != "" {
		v.errKey(envAt, "%s: set %s or %s, not both", what, fileAt[len(fileAt)-1], envAt[len(envAt)-1])
		return "", ""
	}
	switch {
	case file != "":
		path, err := expandPath(file, v.opts.Dir, v.lookupEnv)
		if err != nil {
			v.errAt(fileAt, "%s file: %v", what, err)
			return "", ""
		}
		if v.opts.SkipSecrets {
			return "", "file " + path
		}
		b := v.checkSecretFile(path, fileAt)
		return b, "file " + path
	case env != "":
		if v.opts.SkipSecrets {
			return "", "environment variable " + env
		}
		val, ok := v.lookupEnv(env)
		val = strings.TrimSpace(val)
		if !ok {
			v.errAt(envAt, "%s: environment variable %s is not set", what, env)
		} else if val == "" {
			v.errAt(envAt, "%s: environment variable %s is empty", what, env)
		}
		return val, "environment variable " + env
	}
	return "", ""
}

// maxSecretFile bounds a secret file.
const maxSecretFile = 64 << 10

// checkSecretFile reads a secret file and returns its trimmed content.
func (v *validator) checkSecretFile(path string, at []any) string {
	fi, err := os.Stat(path)
	if err != nil {
		v.errAt(at, "cannot read secret file: %v", unwrapPathError(err))
		return ""
	}
	if fi.IsDir() {
		v.errAt(at, "secret file %s is a directory", path)
		return ""
	}
	if fi.Size() > maxSecretFile {
		v.errAt(at, "secret file %s is larger than %d bytes", path, maxSecretFile)
		return ""
	}
	b, err := os.ReadFile(path)
	if err != nil {
		v.errAt(at, "cannot read secret file: %v", unwrapPathError(err))
		return ""
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		v.errAt(at, "secret file %s is empty", path)
		return ""
	}
	if fi.Mode().Perm()&0o077 != 0 {
		v.warnAt(at, "secret file %s can be read by other users (mode %04o); run chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	return s
}

func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}

// checkURL accepts https URLs, and http URLs on loopback hosts (a local or
// test identity provider).
func checkURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("bad URL %q", s)
	}
	if u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("%q is not an absolute http(s) URL", s)
	}
	if u.User != nil {
		return nil, fmt.Errorf("URL %q carries credentials; use client_id and client_secret_file", u.Redacted())
	}
	if u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
		return nil, fmt.Errorf("%q must use https (plain http is accepted only for loopback hosts)", s)
	}
	return u, nil
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(h)
	return err == nil && ip.Unmap().IsLoopback()
}

// Package config reads the tokenkeeper agent's configuration file.
//
// The file is YAML, read strictly: an unknown key, a value of the wrong type,
// a bad duration, a duplicate token name, a missing secret or a listen
// address that is not local is an error that names the line (and usually the
// column) where it is. Parse reports every problem it finds, not only the
// first, and returns no Config when there is any: a bad file never yields a
// half-usable configuration.
//
// Secrets (client secrets, refresh tokens) are never written in the file
// itself: a source names a file (client_secret_file) or an environment
// variable (client_secret_env) that holds each one, and Parse reads them. The
// inline keys client_secret and refresh_token exist only to be refused with a
// message that says what to write instead. docs/agent.md documents the
// format; docs/agent.example.yaml is a complete example.
package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"go.yaml.in/yaml/v3"
)

// Config is a validated configuration.
type Config struct {
	// Path is the file the configuration was read from ("" for Parse).
	Path string
	// Listen is where the agent serves its API.
	Listen Listen
	// SecretFile holds the bearer secret that guards a TCP listener. It is
	// created (mode 0600) when missing. Unused for a Unix socket.
	SecretFile string
	Store      Store
	Keeper     Keeper
	Log        Log
	// History is how much event history the agent keeps for its status
	// page; zero means the agent's default.
	History time.Duration
	Tokens  []Token
	// Warnings are problems that do not stop the agent (a secret file that
	// others can read, an agent without tokens).
	Warnings []*Error
}

// Listen is the agent's listen address.
type Listen struct {
	Network string // "unix" or "tcp"
	Address string // the socket's path, or host:port on a loopback address
}

// String returns the address in the form the agent and the file use:
// "unix:/path" or "127.0.0.1:7878".
func (l Listen) String() string {
	if l.Network == "unix" {
		return "unix:" + l.Address
	}
	return l.Address
}

// Store configures where tokens are kept between refreshes and restarts.
type Store struct {
	Type    string // "file", "redis" or "memory"
	Path    string // file: the database file
	KeyFile string // file, redis: the encryption key's file, if any
	KeyEnv  string // file, redis: the environment variable that holds the key, if any
	Key     []byte `json:"-"` // the key read from KeyFile or KeyEnv; nil: not encrypted

	// redis: a store shared by several agents (see redisstore).
	Address      string // host:port
	DB           int
	Username     string // an ACL user, if any
	Password     string `json:"-"` // read from PasswordFile or PasswordEnv
	PasswordFrom string // where the password came from (for messages)
	TLS          bool
	Prefix       string        // key prefix; "" for redisstore's default
	LockTTL      time.Duration // the refresh lock's lease; 0 for redisstore's default
}

// Store types.
const (
	StoreFile   = "file"
	StoreRedis  = "redis"
	StoreMemory = "memory"
)

// DefaultRedisAddress is the address of a redis store without one.
const DefaultRedisAddress = "127.0.0.1:6379"

// String describes the store without its secrets.
func (s Store) String() string {
	var d string
	var notes []string
	switch s.Type {
	case StoreRedis:
		d = "redis " + s.Address
		if s.DB != 0 {
			d += " db " + strconv.Itoa(s.DB)
		}
		if s.Prefix != "" {
			d += " prefix " + strconv.Quote(s.Prefix)
		}
		if s.TLS {
			notes = append(notes, "tls")
		}
	case StoreFile:
		d = s.Path
	default:
		return s.Type
	}
	if s.Key != nil || s.KeyFile != "" || s.KeyEnv != "" {
		notes = append(notes, "encrypted")
	}
	if len(notes) > 0 {
		d += " (" + strings.Join(notes, ", ") + ")"
	}
	return d
}

// Equal reports whether s and o configure the same store (with the same
// secrets).
func (s Store) Equal(o Store) bool {
	a, b := s, o
	a.Key, b.Key = nil, nil
	return reflect.DeepEqual(a, b) && bytes.Equal(s.Key, o.Key)
}

// Keeper holds the keeper-wide settings.
type Keeper struct {
	Workers          int
	MaxQueued        int
	GroupConcurrency int
	Breaker          tokenkeeper.BreakerSettings
	// Policy is the default policy, before any token's overrides.
	Policy tokenkeeper.Policy
}

// Log configures the agent's log.
type Log struct {
	Level  slog.Level
	Format string // "text" or "json"
}

// Token is one token the agent keeps.
type Token struct {
	Name   string
	Group  string
	Source Source
	// Policy is the token's effective policy: the file's top-level policy
	// with the token's own keys applied over it.
	Policy tokenkeeper.Policy
	// Line is where the token is defined in the file.
	Line int
}

// Source types.
const (
	SourceOIDC              = "oidc"
	SourceClientCredentials = "client_credentials"
	SourceCommand           = "command"
	SourceCognito           = "cognito"
)

// Source describes how a token is obtained. The secrets it holds are the
// values read from the files and variables the file names.
type Source struct {
	Type string

	// oidc and client_credentials.
	Issuer       string
	TokenURL     string
	ClientID     string
	ClientSecret string `json:"-"`
	RefreshToken string `json:"-"` // oidc: the initial refresh token
	Scopes       []string
	AuthStyle    string // "auto", "basic" or "post"
	Params       map[string]string
	// ReuseGrace (oidc) is how long the server still accepts a refresh
	// token it has rotated (its reuse interval or grace period); zero for
	// strict rotation. See oidc.Config.ReuseGrace.
	ReuseGrace time.Duration

	// cognito (with ClientID, ClientSecret and RefreshToken above).
	Region     string
	UserPoolID string // optional; checked against Region
	// Username is the user's internal user name, the cognito:username
	// claim (see cognito.WithUsername), for an app client with a secret
	// and without rotation.
	Username string
	// Rotation: the app client rotates refresh tokens (see
	// cognito.Config.Rotation).
	Rotation bool
	// Endpoint replaces the region's Cognito endpoint (an emulator).
	Endpoint string

	// command.
	Command []string
	Env     map[string]string
	Dir     string
	Timeout time.Duration

	// Where the secrets came from (for messages; never the values).
	ClientSecretFrom string
	RefreshTokenFrom string
}

// String describes the source without its secrets.
func (s Source) String() string {
	switch s.Type {
	case SourceCommand:
		if len(s.Command) > 0 {
			return "command " + s.Command[0]
		}
		return "command"
	case SourceCognito:
		d := "cognito " + s.Region
		if s.UserPoolID != "" {
			d += " pool " + s.UserPoolID
		}
		if s.Endpoint != "" {
			d += " at " + s.Endpoint
		}
		return d + " client " + s.ClientID
	}
	u := s.Issuer
	if u == "" {
		u = s.TokenURL
	}
	return s.Type + " " + u + " client " + s.ClientID
}

// Fingerprint identifies everything about t that a reload compares: two
// tokens with the same fingerprint are kept the same way. Secrets enter it
// only through a hash.
func (t Token) Fingerprint() string {
	v := struct {
		Token
		SecretHash string
	}{Token: t, SecretHash: SecretHash(t.Source.ClientSecret + "\x00" + t.Source.RefreshToken)}
	v.Line = 0
	b, _ := json.Marshal(v)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// SecretHash returns a short, one-way fingerprint of a secret, for telling
// whether a secret changed without keeping it.
func SecretHash(s string) string {
	if s == "" {
		return ""
	}
	sum := sha256.Sum256([]byte("tokenkeeper-seed\x00" + s))
	return hex.EncodeToString(sum[:16])
}

// Token returns the token with the given name.
func (c *Config) Token(name string) (Token, bool) {
	for _, t := range c.Tokens {
		if t.Name == name {
			return t, true
		}
	}
	return Token{}, false
}

// Options adjusts how Parse reads a file. The zero value reads secrets from
// the process's environment and file system.
type Options struct {
	// Dir is the directory relative paths are resolved against. If empty,
	// the directory of the file given to Load, or the working directory.
	Dir string
	// LookupEnv reads environment variables. If nil, os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// SkipSecrets leaves secrets unread (for a client that only needs the
	// listen address, or a check on another machine). Missing secret files
	// and variables are then not errors.
	SkipSecrets bool
}

// Load reads and validates the file at path.
func Load(path string, opts Options) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if opts.Dir == "" {
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, err
		}
		opts.Dir = filepath.Dir(abs)
	}
	c, err := Parse(path, data, opts)
	if c != nil {
		c.Path = path
	}
	return c, err
}

// maxFileSize bounds a config file; anything larger is a mistake.
const maxFileSize = 1 << 20

// Parse validates a configuration. name is used in messages. The error, if
// any, is an ErrorList.
func Parse(name string, data []byte, opts Options) (*Config, error) {
	c := &errs{file: name}
	if len(data) > maxFileSize {
		c.at(0, 0, "file is larger than %d bytes", maxFileSize)
		return nil, c.err()
	}
	if opts.LookupEnv == nil {
		opts.LookupEnv = os.LookupEnv
	}
	if opts.Dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return nil, err
		}
		opts.Dir = wd
	}

	// Pass 1: syntax, and unknown keys with suggestions.
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			c.at(0, 0, "the file is empty")
		} else {
			addYAMLError(c, err)
		}
		return nil, c.err()
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		n := &extra
		if len(n.Content) > 0 {
			n = n.Content[0]
		}
		c.at(n.Line, n.Column, "a second YAML document; the file must hold exactly one")
	} else if !errors.Is(err, io.EOF) {
		addYAMLError(c, err)
	}
	if len(doc.Content) == 1 && doc.Content[0].Kind != yaml.MappingNode {
		n := doc.Content[0]
		c.at(n.Line, n.Column, "the file must be a mapping (listen:, store:, tokens:, ...)")
		return nil, c.err()
	}
	checkKeys(c, &doc, reflect.TypeFor[rawFile]())

	// Pass 2: strict typed decoding (yaml.v3's KnownFields).
	var raw rawFile
	sdec := yaml.NewDecoder(bytes.NewReader(data))
	sdec.KnownFields(true)
	if err := sdec.Decode(&raw); err != nil {
		addYAMLError(c, err)
	}
	if len(c.list) > 0 {
		return nil, c.err()
	}

	// Pass 3: meaning.
	v := &validator{errs: c, opts: opts, tree: tree{root: &doc}}
	cfg := v.build(&raw)
	if err := c.err(); err != nil {
		return nil, err
	}
	cfg.Warnings = v.warnings
	return cfg, nil
}

func addYAMLError(c *errs, err error) {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		for _, s := range te.Errors {
			line, msg := yamlMessage(s)
			c.at(line, 0, "%s", msg)
		}
		return
	}
	line, msg := yamlMessage(err.Error())
	c.at(line, 0, "%s", msg)
}

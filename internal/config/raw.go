package config

import (
	"fmt"
	"reflect"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// The raw* types mirror the file's YAML. They are decoded strictly
// (unknown keys are errors) and then validated into a Config.

type rawFile struct {
	Listen     string       `yaml:"listen"`
	SecretFile string       `yaml:"secret_file"`
	Store      *rawStore    `yaml:"store"`
	Keeper     *rawKeeper   `yaml:"keeper"`
	Policy     *rawPolicy   `yaml:"policy"`
	Log        *rawLog      `yaml:"log"`
	Tokens     []*rawToken  `yaml:"tokens"`
	Agent      *rawAgentOpt `yaml:"agent"`
}

type rawStore struct {
	Type    string `yaml:"type"`
	Path    string `yaml:"path"`
	KeyFile string `yaml:"key_file"`
	KeyEnv  string `yaml:"key_env"`

	// redis
	Address      string    `yaml:"address"`
	DB           *int      `yaml:"db"`
	Username     string    `yaml:"username"`
	Password     string    `yaml:"password"` // refused: secrets are not inline
	PasswordFile string    `yaml:"password_file"`
	PasswordEnv  string    `yaml:"password_env"`
	TLS          *bool     `yaml:"tls"`
	Prefix       *string   `yaml:"prefix"`
	LockTTL      *Duration `yaml:"lock_ttl"`
}

type rawKeeper struct {
	Workers          *int        `yaml:"workers"`
	MaxQueued        *int        `yaml:"max_queued"`
	GroupConcurrency *int        `yaml:"group_concurrency"`
	Breaker          *rawBreaker `yaml:"breaker"`
}

type rawBreaker struct {
	Failures *int      `yaml:"failures"`
	OpenFor  *Duration `yaml:"open_for"`
	MaxOpen  *Duration `yaml:"max_open"`
}

type rawPolicy struct {
	StartLead       *Duration `yaml:"start_lead"`
	EndLead         *Duration `yaml:"end_lead"`
	IdleGap         *Duration `yaml:"idle_gap"`
	UnusedAfter     *Duration `yaml:"unused_after"`
	ExpiryMargin    *Duration `yaml:"expiry_margin"`
	DefaultLifetime *Duration `yaml:"default_lifetime"`
	MaxLifetime     *Duration `yaml:"max_lifetime"`
	AttemptTimeout  *Duration `yaml:"attempt_timeout"`
	RetryBase       *Duration `yaml:"retry_base"`
	RetryMax        *Duration `yaml:"retry_max"`
}

type rawLog struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

type rawAgentOpt struct {
	History *Duration `yaml:"history"`
}

type rawToken struct {
	Name   string     `yaml:"name"`
	Group  string     `yaml:"group"`
	Source *rawSource `yaml:"source"`
	Policy *rawPolicy `yaml:"policy"`
}

type rawSource struct {
	Type string `yaml:"type"`

	// oidc and client_credentials
	Issuer           string            `yaml:"issuer"`
	TokenURL         string            `yaml:"token_url"`
	ClientID         string            `yaml:"client_id"`
	ClientSecret     string            `yaml:"client_secret"` // refused: secrets are not inline
	ClientSecretFile string            `yaml:"client_secret_file"`
	ClientSecretEnv  string            `yaml:"client_secret_env"`
	RefreshToken     string            `yaml:"refresh_token"` // refused
	RefreshTokenFile string            `yaml:"refresh_token_file"`
	RefreshTokenEnv  string            `yaml:"refresh_token_env"`
	Scopes           []string          `yaml:"scopes"`
	AuthStyle        string            `yaml:"auth_style"`
	Params           map[string]string `yaml:"params"`
	ReuseGrace       *Duration         `yaml:"reuse_grace"`

	// cognito
	Region     string `yaml:"region"`
	UserPoolID string `yaml:"user_pool_id"`
	Username   string `yaml:"username"`
	Rotation   *bool  `yaml:"rotation"`
	Endpoint   string `yaml:"endpoint"`

	// command
	Command []string          `yaml:"command"`
	Env     map[string]string `yaml:"env"`
	Dir     string            `yaml:"dir"`
	Timeout *Duration         `yaml:"timeout"`
}

// Duration is a time.Duration written as a Go duration string ("90s",
// "1h30m") in the file.
type Duration struct {
	D time.Duration
}

// UnmarshalYAML parses a Go duration string. A bare number is refused: its
// unit would be a guess.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: expected a duration such as \"30s\" or \"5m\"", n.Line)}}
	}
	v, err := time.ParseDuration(strings.TrimSpace(n.Value))
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), "time: ")
		if strings.Contains(msg, "missing unit") {
			msg = "missing unit (write \"" + n.Value + "s\" for seconds)"
		}
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: bad duration %q: %s", n.Line, n.Value, msg)}}
	}
	if v < 0 {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: duration %q is negative", n.Line, n.Value)}}
	}
	d.D = v
	return nil
}

// sectionNames name the raw types in messages.
var sectionNames = map[reflect.Type]string{
	reflect.TypeFor[rawFile]():     "the top level",
	reflect.TypeFor[rawStore]():    "store",
	reflect.TypeFor[rawKeeper]():   "keeper",
	reflect.TypeFor[rawBreaker]():  "keeper.breaker",
	reflect.TypeFor[rawPolicy]():   "policy",
	reflect.TypeFor[rawLog]():      "log",
	reflect.TypeFor[rawAgentOpt](): "agent",
	reflect.TypeFor[rawToken]():    "token",
	reflect.TypeFor[rawSource]():   "token source",
}

var durationType = reflect.TypeFor[Duration]()

// checkKeys walks n alongside the Go type t and reports every mapping key t
// does not know, with a suggestion when one is close. It is the friendly
// front of the strict decoder (yaml.v3's KnownFields), which reports the
// same problems with less context.
func checkKeys(c *errs, n *yaml.Node, t reflect.Type) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.DocumentNode {
		for _, m := range n.Content {
			checkKeys(c, m, t)
		}
		return
	}
	if n.Kind == yaml.AliasNode {
		return // the anchor's node is checked where it is defined
	}
	switch t.Kind() {
	case reflect.Struct:
		if t == durationType || n.Kind != yaml.MappingNode {
			return // type errors are the decoder's business
		}
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Value == "<<" {
				checkKeys(c, v, t)
				continue
			}
			f, ok := fields[k.Value]
			if !ok {
				msg := fmt.Sprintf("unknown key %q in %s", k.Value, sectionNames[t])
				if s := suggest(k.Value, fields); s != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", s)
				}
				c.at(k.Line, k.Column, "%s", msg)
				continue
			}
			checkKeys(c, v, f.Type)
		}
	case reflect.Slice:
		if n.Kind == yaml.SequenceNode {
			for _, e := range n.Content {
				checkKeys(c, e, t.Elem())
			}
		}
	}
}

func yamlFields(t reflect.Type) map[string]reflect.StructField {
	m := make(map[string]reflect.StructField)
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name != "" && name != "-" {
			m[name] = f
		}
	}
	return m
}

// suggest returns the known key closest to k, if it is close enough to be a
// typo.
func suggest(k string, fields map[string]reflect.StructField) string {
	best, bestD := "", 3
	for name := range fields {
		d := editDistance(strings.ToLower(k), name)
		if d < bestD || d == bestD && name < best {
			best, bestD = name, d
		}
	}
	if best == "" || bestD > len(k)/3+1 {
		return ""
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

package redisstore

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"golang.org/x/oauth2"
)

// A stored value is one format byte followed by the payload:
//
//	formatPlain:  JSON
//	formatSealed: 12-byte nonce, then AES-256-GCM(JSON)
//
// The AES key is derived from Options.Key with HKDF-SHA256 (info
// "tokenkeeper.redisstore v1 record key"), so the same key material can
// serve the file store without the two ever sharing an AES key. The sealed
// form authenticates "tokenkeeper/redisstore/v1", the key prefix, the
// token's name and the version it is written at as additional data, so a
// value copied to another name or prefix, or an older value written back at
// a newer version, fails to open.
const (
	formatPlain  byte = 'p'
	formatSealed byte = 's'
)

// KeySize is the length of Options.Key: AES-256 takes 32 bytes.
const KeySize = 32

// ErrUndecodable is wrapped by errors about a stored value that cannot be
// read: corrupted, written with another key, encrypted while this process has
// no key, or plain while it has one.
var ErrUndecodable = errors.New("redisstore: stored token cannot be decoded")

// wireToken is the JSON form of a token. oauth2.Token keeps its extra fields
// unexported, so the ones named in Options.Extras travel in Extra.
type wireToken struct {
	AccessToken  string         `json:"access_token"`
	TokenType    string         `json:"token_type,omitempty"`
	RefreshToken string         `json:"refresh_token,omitempty"`
	Expiry       time.Time      `json:"expiry,omitzero"`
	Extra        map[string]any `json:"extra,omitempty"`
}

// codec turns tokens into stored values and back.
type codec struct {
	aead   cipher.AEAD // nil: values are stored in plain JSON
	prefix string
	extras []string
}

func newCodec(key []byte, prefix string, extras []string) (*codec, error) {
	c := &codec{prefix: prefix, extras: extras}
	if len(key) == 0 {
		return c, nil
	}
	if len(key) != KeySize {
		return nil, fmt.Errorf("redisstore: Key must be %d bytes, not %d", KeySize, len(key))
	}
	k, err := hkdf.Key(sha256.New, key, nil, "tokenkeeper.redisstore v1 record key", KeySize)
	if err != nil {
		return nil, fmt.Errorf("redisstore: %w", err)
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, fmt.Errorf("redisstore: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("redisstore: %w", err)
	}
	c.aead = aead
	return c, nil
}

func (c *codec) additionalData(name string, version int64) []byte {
	b := make([]byte, 0, 48+len(c.prefix)+len(name))
	b = append(b, "tokenkeeper/redisstore/v1\x00"...)
	b = append(b, c.prefix...)
	b = append(b, 0)
	b = append(b, name...)
	b = append(b, 0)
	return strconv.AppendInt(b, version, 10)
}

// encode returns the value of tok stored under name at version.
func (c *codec) encode(name string, version int64, tok *oauth2.Token) ([]byte, error) {
	w := wireToken{
		AccessToken:  tok.AccessToken,
		TokenType:    tok.TokenType,
		RefreshToken: tok.RefreshToken,
		Expiry:       tok.Expiry,
	}
	for _, k := range c.extras {
		if v := tok.Extra(k); v != nil {
			if w.Extra == nil {
				w.Extra = make(map[string]any)
			}
			w.Extra[k] = v
		}
	}
	js, err := json.Marshal(w)
	if err != nil {
		// Only an extra field of an unencodable type gets here; the message
		// names the type, never a value.
		return nil, fmt.Errorf("redisstore: encoding token %q: %T", name, err)
	}
	if c.aead == nil {
		return append([]byte{formatPlain}, js...), nil
	}
	out := make([]byte, 1+c.aead.NonceSize(), 1+c.aead.NonceSize()+len(js)+c.aead.Overhead())
	out[0] = formatSealed
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, fmt.Errorf("redisstore: %w", err)
	}
	return c.aead.Seal(out, out[1:], js, c.additionalData(name, version)), nil
}

// decode reads the value stored under name at version. Errors wrap
// ErrUndecodable and never contain the value.
func (c *codec) decode(name string, version int64, b []byte) (*oauth2.Token, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: token %q: empty value", ErrUndecodable, name)
	}
	var js []byte
	switch b[0] {
	case formatPlain:
		if c.aead != nil {
			return nil, fmt.Errorf("%w: token %q is stored unencrypted but a Key is set", ErrUndecodable, name)
		}
		js = b[1:]
	case formatSealed:
		if c.aead == nil {
			return nil, fmt.Errorf("%w: token %q is encrypted and no Key is set", ErrUndecodable, name)
		}
		ns := c.aead.NonceSize()
		if len(b) < 1+ns+c.aead.Overhead() {
			return nil, fmt.Errorf("%w: token %q: value too short", ErrUndecodable, name)
		}
		var err error
		js, err = c.aead.Open(nil, b[1:1+ns], b[1+ns:], c.additionalData(name, version))
		if err != nil {
			return nil, fmt.Errorf("%w: token %q: authentication failed (wrong key, or a value moved from another name or version)", ErrUndecodable, name)
		}
	default:
		return nil, fmt.Errorf("%w: token %q: unknown format %#x", ErrUndecodable, name, b[0])
	}
	var w wireToken
	if err := json.Unmarshal(js, &w); err != nil {
		return nil, fmt.Errorf("%w: token %q: malformed JSON", ErrUndecodable, name)
	}
	tok := &oauth2.Token{
		AccessToken:  w.AccessToken,
		TokenType:    w.TokenType,
		RefreshToken: w.RefreshToken,
		Expiry:       w.Expiry,
	}
	if len(w.Extra) > 0 {
		tok = tok.WithExtra(w.Extra)
	}
	return tok, nil
}

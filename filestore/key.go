package filestore

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"os"
)

// KeySize is the length of an encryption key: AES-256.
const KeySize = 32

const (
	saltSize  = 32
	checkSize = sha256.Size

	maxKeyFile = 4096
)

// keyCheck is the key material of an encrypted file, derived from the
// user's key and the file's random salt.
type keyCheck struct {
	salt  []byte
	enc   []byte // the records' AES-256-GCM key
	check []byte // the key check value kept in the header
}

// deriveKeys derives, with HKDF-SHA256 over the file's salt, the records'
// key and an independent key whose HMAC of a constant is the key check value.
// Neither reveals the user's key or the other.
func deriveKeys(key, salt []byte) *keyCheck {
	enc, err := hkdf.Key(sha256.New, key, salt, "tokenkeeper.filestore v1 record key", KeySize)
	if err != nil {
		panic(err) // only for a length beyond 255*32 bytes
	}
	ck, err := hkdf.Key(sha256.New, key, salt, "tokenkeeper.filestore v1 key check", KeySize)
	if err != nil {
		panic(err)
	}
	m := hmac.New(sha256.New, ck)
	m.Write([]byte("tokenkeeper.filestore key check value"))
	return &keyCheck{salt: salt, enc: enc, check: m.Sum(nil)}
}

// newKeyCheck makes the key material of a new encrypted file.
func newKeyCheck(key []byte) (*keyCheck, error) {
	salt := make([]byte, saltSize)
	if _, err := rand.Read(salt); err != nil {
		return nil, newError(nil, err, "reading random salt")
	}
	return deriveKeys(key, salt), nil
}

func newAEAD(key []byte) cipher.AEAD {
	b, err := aes.NewCipher(key)
	if err != nil {
		panic(err) // key is always 32 bytes here
	}
	a, err := cipher.NewGCM(b)
	if err != nil {
		panic(err)
	}
	return a
}

// ParseKey turns key material into a 32-byte key. It accepts exactly 32 raw
// bytes that are not all printable ASCII (random bytes practically never
// are), or text (surrounding white space ignored) holding 64 hexadecimal
// digits or the standard or URL-safe base64 encoding, padded or not, of 32
// bytes. Anything else, including 32 characters of text (a passphrase, or
// the encoding of a shorter key), is an error matching ErrBadKey, which
// never quotes the material. Make a key with
// `head -c 32 /dev/urandom | base64`.
func ParseKey(b []byte) ([]byte, error) {
	if len(b) == KeySize && !printable(b) {
		return bytes.Clone(b), nil
	}
	s := string(bytes.TrimSpace(b))
	if len(s) == 2*KeySize {
		if k, err := hex.DecodeString(s); err == nil {
			return k, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil && len(k) == KeySize {
			return k, nil
		}
	}
	if len(b) == KeySize {
		return nil, newError(ErrBadKey, nil, "32 characters of text are not a key; want 32 random bytes, 64 hex digits or base64 of 32 bytes")
	}
	return nil, newError(ErrBadKey, nil, "want 32 random bytes, 64 hex digits or base64 of 32 bytes; got %d bytes that are none of these", len(b))
}

func printable(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// KeyFromFile reads a key from the file at path (see [ParseKey] for the
// forms accepted). Keep the file readable by its owner only.
func KeyFromFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, newError(ErrBadKey, err, "key file")
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, newError(ErrBadKey, err, "reading key file %s", path)
	}
	defer clear(b)
	if len(b) > maxKeyFile {
		return nil, newError(ErrBadKey, nil, "key file %s: larger than %d bytes", path, maxKeyFile)
	}
	k, err := ParseKey(b)
	if err != nil {
		return nil, newError(ErrBadKey, nil, "key file %s: %s", path, badKeyDetail(err))
	}
	return k, nil
}

// KeyFromEnv reads a key from the environment variable name (see
// [ParseKey] for the forms accepted). An unset or empty variable is an error.
func KeyFromEnv(name string) ([]byte, error) {
	v, ok := os.LookupEnv(name)
	if !ok || v == "" {
		return nil, newError(ErrBadKey, nil, "environment variable %s is not set", name)
	}
	k, err := ParseKey([]byte(v))
	if err != nil {
		return nil, newError(ErrBadKey, nil, "environment variable %s: %s", name, badKeyDetail(err))
	}
	return k, nil
}

// badKeyDetail returns the message of a ParseKey error without its prefix.
func badKeyDetail(err error) string {
	var se *storeError
	if errors.As(err, &se) {
		return se.msg
	}
	return err.Error()
}

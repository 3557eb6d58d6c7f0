package filestore_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenkeeper/tokenkeeper/filestore"
)

func TestParseKey(t *testing.T) {
	k := []byte("0123456789abcdef0123456789ABCDEF")[:32]
	raw := append([]byte{'\n', 0, 0xff}, k[3:]...) // raw bytes, white space included
	tests := []struct {
		name string
		in   []byte
		want []byte // nil: error
	}{
		{"raw 32 bytes", raw, raw},
		{"hex", []byte(hex.EncodeToString(k)), k},
		{"hex upper case with newline", []byte(strings.ToUpper(hex.EncodeToString(k)) + "\n"), k},
		{"base64", []byte(base64.StdEncoding.EncodeToString(k)), k},
		{"base64 with spaces and newline", []byte("  " + base64.StdEncoding.EncodeToString(k) + "\r\n"), k},
		{"base64 unpadded", []byte(base64.RawStdEncoding.EncodeToString(k)), k},
		{"base64 URL-safe", []byte(base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 32))), bytes.Repeat([]byte{0xfb}, 32)},
		{"base64 URL-safe unpadded", []byte(base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 32))), bytes.Repeat([]byte{0xfb}, 32)},
		{"empty", nil, nil},
		{"31 raw bytes", k[:31], nil},
		{"33 raw bytes", append(bytes.Clone(k), 'x'), nil},
		{"hex of 16 bytes", []byte(hex.EncodeToString(k[:16])), nil},
		{"64 characters, not hex", []byte(strings.Repeat("z", 64)), nil},
		{"base64 of 24 bytes", []byte(base64.StdEncoding.EncodeToString(k[:24])), nil},
		{"passphrase", []byte("correct horse battery staple\n"), nil},
		{"32 characters of text", []byte("correct-horse-battery-staple-123"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := filestore.ParseKey(tt.in)
			if tt.want == nil {
				if !errors.Is(err, filestore.ErrBadKey) {
					t.Fatalf("ParseKey = %x, %v; want ErrBadKey", got, err)
				}
				if len(tt.in) > 0 && strings.Contains(err.Error(), strings.TrimSpace(string(tt.in))) {
					t.Errorf("error %q quotes the key material", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Errorf("ParseKey = %x, want %x", got, tt.want)
			}
		})
	}
}

func TestKeyFromFileAndEnv(t *testing.T) {
	k := bytes.Repeat([]byte{0xa5}, 32)
	dir := t.TempDir()
	files := map[string][]byte{
		"raw":   k,
		"hex":   []byte(hex.EncodeToString(k) + "\n"),
		"b64":   []byte(base64.StdEncoding.EncodeToString(k) + "\n"),
		"bad":   []byte("secret-passphrase\n"),
		"large": bytes.Repeat([]byte("A"), 5000),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"raw", "hex", "b64"} {
		got, err := filestore.KeyFromFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("KeyFromFile(%s): %v", name, err)
		} else if !bytes.Equal(got, k) {
			t.Errorf("KeyFromFile(%s) = %x", name, got)
		}
	}
	for _, name := range []string{"bad", "large", "missing"} {
		_, err := filestore.KeyFromFile(filepath.Join(dir, name))
		if !errors.Is(err, filestore.ErrBadKey) {
			t.Errorf("KeyFromFile(%s) = %v, want ErrBadKey", name, err)
			continue
		}
		if !strings.HasPrefix(err.Error(), "tokenkeeper: filestore: ") || strings.Contains(err.Error(), "passphrase") {
			t.Errorf("KeyFromFile(%s) error %q", name, err)
		}
	}
	if _, err := filestore.KeyFromFile(dir); !errors.Is(err, filestore.ErrBadKey) {
		t.Errorf("KeyFromFile(directory) = %v, want ErrBadKey", err)
	}

	t.Setenv("TK_TEST_KEY", base64.StdEncoding.EncodeToString(k))
	t.Setenv("TK_TEST_BAD", "hunter2")
	t.Setenv("TK_TEST_EMPTY", "")
	got, err := filestore.KeyFromEnv("TK_TEST_KEY")
	if err != nil || !bytes.Equal(got, k) {
		t.Errorf("KeyFromEnv = %x, %v", got, err)
	}
	for _, name := range []string{"TK_TEST_BAD", "TK_TEST_EMPTY", "TK_TEST_UNSET"} {
		_, err := filestore.KeyFromEnv(name)
		if !errors.Is(err, filestore.ErrBadKey) {
			t.Errorf("KeyFromEnv(%s) = %v, want ErrBadKey", name, err)
			continue
		}
		if !strings.Contains(err.Error(), name) || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("KeyFromEnv(%s) error %q", name, err)
		}
	}
}

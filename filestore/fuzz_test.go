package filestore

import (
	"bytes"
	"crypto/cipher"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"
)

// fuzzAEAD is the record cipher of the fuzz tests (a fixed key).
var fuzzAEAD = newAEAD(bytes.Repeat([]byte{0x42}, KeySize))

// plainRecordOf builds a valid plaintext record around any body, so that
// the fuzzer reaches the JSON decoding behind the checksum.
func plainRecordOf(name string, body []byte) []byte {
	out := []byte{recordVersion, recordPlain, 0, 0, 0, 0}
	sum := recordCRC(out, name, body)
	out[2], out[3], out[4], out[5] = byte(sum>>24), byte(sum>>16), byte(sum>>8), byte(sum)
	return append(out, body...)
}

// FuzzDecodeRecord feeds arbitrary records to the decoder: as they are
// (plain and encrypted stores), and with the data after two bytes wrapped
// as the body of a record with a valid checksum. The decoder must never
// panic; it fails only with ErrCorrupt or ErrUnsupportedVersion under the
// package prefix; and what it accepts encodes and decodes back to itself.
// The seed corpus is in testdata/fuzz/FuzzDecodeRecord.
func FuzzDecodeRecord(f *testing.F) {
	tok := (&oauth2.Token{AccessToken: "at", TokenType: "Bearer", RefreshToken: "rt", Expiry: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}).
		WithExtra(map[string]any{"id_token": "x.y.z", "refresh_in": 60.0})
	plain, err := encodeRecord("n", tok, time.Unix(0, 0), DefaultExtraKeys(), nil)
	if err != nil {
		f.Fatal(err)
	}
	sealed, err := encodeRecord("n", tok, time.Unix(0, 0), DefaultExtraKeys(), fuzzAEAD)
	if err != nil {
		f.Fatal(err)
	}
	f.Add("n", plain)
	f.Add("n", sealed)
	f.Add("other", plain)
	f.Add("n", []byte{1, 0, 0, 0, 0, 0, '{', '}'})

	f.Fuzz(func(t *testing.T, name string, data []byte) {
		for _, in := range []struct {
			data []byte
			enc  bool
		}{
			{data, false},
			{data, true},
			{plainRecordOf(name, data[min(2, len(data)):]), false},
		} {
			var aead cipher.AEAD
			if in.enc {
				aead = fuzzAEAD
			}
			e, err := decodeRecord(name, in.data, aead)
			if err != nil {
				if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupportedVersion) {
					t.Fatalf("error %v matches neither ErrCorrupt nor ErrUnsupportedVersion", err)
				}
				if !strings.HasPrefix(err.Error(), "tokenkeeper: filestore: ") {
					t.Fatalf("error %q lacks the prefix", err)
				}
				continue
			}
			if e.Name != name {
				t.Fatalf("accepted a record of %q under %q", e.Name, name)
			}
			keys := slices.Sorted(func(yield func(string) bool) {
				for k := range e.Extra {
					if !yield(k) {
						return
					}
				}
			})
			again, err := encodeRecord(name, e.token(), e.SavedAt, keys, aead)
			if err != nil {
				t.Fatalf("re-encoding an accepted record: %v", err)
			}
			e2, err := decodeRecord(name, again, aead)
			if err != nil {
				t.Fatalf("decoding a re-encoded record: %v", err)
			}
			if d := cmp.Diff(normalised(e), normalised(e2)); d != "" {
				t.Fatalf("round trip changed the envelope (-first +second):\n%s", d)
			}
		}
	})
}

// normalised drops extras that the token cannot hand back (an empty
// string reads as absent) so that envelopes compare by what a Load returns.
func normalised(e *envelope) envelope {
	c := *e
	c.Extra = nil
	for k, v := range e.Extra {
		if v == "" {
			continue
		}
		if c.Extra == nil {
			c.Extra = map[string]any{}
		}
		c.Extra[k] = v
	}
	return c
}

// FuzzCheckBoltFile feeds damaged store files to the structural check that
// runs before bbolt sees a file: it must never panic, and it must finish
// (every loop is bounded by the file's size).
func FuzzCheckBoltFile(f *testing.F) {
	path := filepath.Join(f.TempDir(), "seed.db")
	s, err := Open(path, Options{})
	if err != nil {
		f.Fatal(err)
	}
	for _, n := range []string{"a", "b", "c"} {
		if err := s.Save(f.Context(), n, &oauth2.Token{AccessToken: strings.Repeat(n, 3000)}); err != nil {
			f.Fatal(err)
		}
	}
	s.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add(b[:4096])
	f.Fuzz(func(t *testing.T, data []byte) {
		err := checkBoltFile(bytes.NewReader(data), int64(len(data)))
		if err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrForeignFile) {
			t.Fatalf("error %v matches neither ErrCorrupt nor ErrForeignFile", err)
		}
	})
}

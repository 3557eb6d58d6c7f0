package filestore_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/filestore"
	bolt "go.etcd.io/bbolt"
)

// withBolt opens path with bbolt directly and runs fn in a write
// transaction: the way a test damages a store or builds a foreign file.
func withBolt(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

// storeFile makes a store with a few tokens and returns its path.
func storeFile(t *testing.T, k []byte) string {
	t.Helper()
	path := tempPath(t)
	s := open(t, path, filestore.Options{Key: k})
	for _, n := range []string{"a", "b", "c"} {
		if err := s.Save(t.Context(), n, sampleToken("at-"+n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCorruptOrForeignFile(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	garbage := make([]byte, 64<<10)
	for i := range garbage {
		garbage[i] = byte(rnd.Uint32())
	}
	tests := []struct {
		name string
		make func(t *testing.T, path string)
		want error
	}{
		{"garbage bytes", func(t *testing.T, p string) { write(t, p, garbage) }, filestore.ErrForeignFile},
		{"text file", func(t *testing.T, p string) { write(t, p, []byte("access_token=oops\n")) }, filestore.ErrForeignFile},
		{"empty file", func(t *testing.T, p string) { write(t, p, nil) }, filestore.ErrCorrupt},
		{"truncated to 100 bytes", truncateStore(100), filestore.ErrCorrupt},
		{"truncated to one page", truncatePages(1), filestore.ErrCorrupt},
		{"truncated to two pages", truncatePages(2), filestore.ErrCorrupt},
		{"truncated to three pages", truncatePages(3), filestore.ErrCorrupt},
		{"truncated to its last used page", truncateStore(-1), filestore.ErrCorrupt},
		{"both meta pages damaged", func(t *testing.T, p string) {
			copyStore(t, p)
			b := read(t, p)
			ps := pageSize(b)
			b[16+56] ^= 0xff    // meta 0 checksum
			b[ps+16+56] ^= 0xff // meta 1 checksum
			write(t, p, b)
		}, filestore.ErrCorrupt},
		{"data pages overwritten", func(t *testing.T, p string) {
			copyStore(t, p)
			b := read(t, p)
			copy(b[2*pageSize(b):], garbage)
			write(t, p, b)
		}, filestore.ErrCorrupt},
		{"foreign bbolt database", func(t *testing.T, p string) {
			withBolt(t, p, func(tx *bolt.Tx) error {
				b, err := tx.CreateBucket([]byte("users"))
				if err != nil {
					return err
				}
				return b.Put([]byte("alice"), []byte("admin"))
			})
		}, filestore.ErrForeignFile},
		{"empty bbolt database", func(t *testing.T, p string) {
			withBolt(t, p, func(*bolt.Tx) error { return nil })
		}, filestore.ErrForeignFile},
		{"header with wrong magic", editHeader("magic", []byte("something.else")), filestore.ErrForeignFile},
		{"header from a newer version", editHeader("format", binary.BigEndian.AppendUint32(nil, 2)), filestore.ErrUnsupportedVersion},
		{"header with bad version field", editHeader("format", []byte{1}), filestore.ErrCorrupt},
		{"header with unknown cipher", editHeader("cipher", []byte("rot13")), filestore.ErrUnsupportedVersion},
		{"header checksum wrong", editHeader("sum", []byte{1, 2, 3, 4}), filestore.ErrCorrupt},
		{"header damaged", func(t *testing.T, p string) {
			copyStore(t, p)
			withBolt(t, p, func(tx *bolt.Tx) error {
				return tx.Bucket([]byte("tokenkeeper")).Put([]byte("cipher"), []byte("nonf"))
			})
		}, filestore.ErrCorrupt},
		{"header checksum missing", func(t *testing.T, p string) {
			copyStore(t, p)
			withBolt(t, p, func(tx *bolt.Tx) error { return tx.Bucket([]byte("tokenkeeper")).Delete([]byte("sum")) })
		}, filestore.ErrCorrupt},
		{"foreign bucket named tokenkeeper", func(t *testing.T, p string) {
			withBolt(t, p, func(tx *bolt.Tx) error {
				b, err := tx.CreateBucket([]byte("tokenkeeper"))
				if err != nil {
					return err
				}
				return b.Put([]byte("magic"), []byte("a game"))
			})
		}, filestore.ErrForeignFile},
		{"tokens bucket missing", func(t *testing.T, p string) {
			copyStore(t, p)
			withBolt(t, p, func(tx *bolt.Tx) error { return tx.DeleteBucket([]byte("tokens")) })
		}, filestore.ErrCorrupt},
		{"directory", func(t *testing.T, p string) {
			if err := os.Mkdir(p, 0o700); err != nil {
				t.Fatal(err)
			}
		}, filestore.ErrForeignFile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tempPath(t)
			tt.make(t, path)
			var before [32]byte
			fi, _ := os.Stat(path)
			if fi.Mode().IsRegular() {
				before = fileHash(t, path)
			}
			s, err := filestore.Open(path, filestore.Options{LockTimeout: 100 * time.Millisecond})
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Open = %v, want %v", err, tt.want)
			}
			t.Log(err)
			if !strings.HasPrefix(err.Error(), "tokenkeeper: filestore: open "+path) {
				t.Errorf("error %q does not start with the prefix and path", err)
			}
			if strings.Contains(err.Error(), "at-a") || strings.Contains(err.Error(), "oops") {
				t.Errorf("error %q quotes file contents", err)
			}
			if fi.Mode().IsRegular() && fileHash(t, path) != before {
				t.Error("refused file was modified")
			}
		})
	}
}

func write(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// copyStore puts a populated store at path.
func copyStore(t *testing.T, path string) {
	t.Helper()
	write(t, path, read(t, storeFile(t, nil)))
}

// truncateStore cuts a store to n bytes (n < 0: by -n bytes).
func truncateStore(n int) func(t *testing.T, path string) {
	return func(t *testing.T, path string) {
		copyStore(t, path)
		b := read(t, path)
		if n < 0 {
			// Cut just inside the last page the database uses (bbolt
			// grows files ahead of use, so the end of the file may be
			// slack).
			ps := pageSize(b)
			hwm := binary.NativeEndian.Uint64(b[16+40:])
			if h1 := binary.NativeEndian.Uint64(b[ps+16+40:]); h1 > hwm {
				hwm = h1
			}
			n = int(hwm)*ps - 1
		}
		write(t, path, b[:n])
	}
}

// truncatePages cuts a store to n pages.
func truncatePages(n int) func(t *testing.T, path string) {
	return func(t *testing.T, path string) {
		copyStore(t, path)
		b := read(t, path)
		write(t, path, b[:n*pageSize(b)])
	}
}

// pageSize reads the page size from a store's first meta page (bbolt's
// layout: a 16-byte page header, then magic, version, page size).
func pageSize(b []byte) int { return int(binary.NativeEndian.Uint32(b[16+8:])) }

// editHeader sets one header field of a store and, unless the field is
// the checksum itself, fixes the checksum, as a newer version would write it.
func editHeader(field string, value []byte) func(t *testing.T, path string) {
	return func(t *testing.T, path string) {
		copyStore(t, path)
		setHeader(t, path, field, value)
	}
}

func setHeader(t *testing.T, path, field string, value []byte) {
	t.Helper()
	withBolt(t, path, func(tx *bolt.Tx) error {
		h := tx.Bucket([]byte("tokenkeeper"))
		if err := h.Put([]byte(field), value); err != nil || field == "sum" {
			return err
		}
		return h.Put([]byte("sum"), headerSum(h))
	})
}

// headerSum is the header checksum: CRC-32C over the other entries in key
// order, each key and value preceded by its big-endian uint32 length.
func headerSum(h *bolt.Bucket) []byte {
	var buf []byte
	h.ForEach(func(k, v []byte) error {
		if string(k) != "sum" {
			buf = binary.BigEndian.AppendUint32(buf, uint32(len(k)))
			buf = append(buf, k...)
			buf = binary.BigEndian.AppendUint32(buf, uint32(len(v)))
			buf = append(buf, v...)
		}
		return nil
	})
	return binary.BigEndian.AppendUint32(nil, crc32.Checksum(buf, crc32.MakeTable(crc32.Castagnoli)))
}

func TestEncryptedHeaderDamage(t *testing.T) {
	tests := []struct {
		name, field string
		value       []byte
		fixSum      bool
		want        error
	}{
		{"salt too short", "salt", []byte("short"), true, filestore.ErrCorrupt},
		{"key check too short", "keycheck", []byte("short"), true, filestore.ErrCorrupt},
		{"salt bit flipped", "salt", nil, false, filestore.ErrCorrupt},
		{"key check bit flipped", "keycheck", nil, false, filestore.ErrCorrupt},
		// Only a consistent header with another key check is a wrong key.
		{"salt replaced consistently", "salt", bytes.Repeat([]byte{1}, 32), true, filestore.ErrWrongKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := storeFile(t, key(4))
			if tt.fixSum {
				setHeader(t, path, tt.field, tt.value)
			} else {
				withBolt(t, path, func(tx *bolt.Tx) error {
					h := tx.Bucket([]byte("tokenkeeper"))
					v := bytes.Clone(h.Get([]byte(tt.field)))
					v[0] ^= 1
					return h.Put([]byte(tt.field), v)
				})
			}
			_, err := filestore.Open(path, filestore.Options{Key: key(4)})
			if !errors.Is(err, tt.want) {
				t.Fatalf("Open = %v, want %v", err, tt.want)
			}
		})
	}
}

// plainRecord builds a plaintext record by hand: version 1, cipher 0, the
// CRC-32C of the additional data and body, the body.
func plainRecord(name, body string) []byte {
	ad := append([]byte("tokenkeeper.filestore.record\x00\x01\x00"), name...)
	tab := crc32.MakeTable(crc32.Castagnoli)
	sum := crc32.Update(crc32.Checksum(ad, tab), tab, []byte(body))
	return append(binary.BigEndian.AppendUint32([]byte{1, 0}, sum), body...)
}

func TestDamagedRecords(t *testing.T) {
	type edit func(b *bolt.Bucket) error
	set := func(name string, f func(v []byte) []byte) edit {
		return func(b *bolt.Bucket) error {
			v := bytes.Clone(b.Get([]byte(name)))
			return b.Put([]byte(name), f(v))
		}
	}
	swap := func(b *bolt.Bucket) error {
		va, vb := bytes.Clone(b.Get([]byte("a"))), bytes.Clone(b.Get([]byte("b")))
		if err := b.Put([]byte("a"), vb); err != nil {
			return err
		}
		return b.Put([]byte("b"), va)
	}
	tests := []struct {
		name      string
		encrypted bool
		edit      edit
		bad       []string // names that must fail
		want      error
	}{
		{"ciphertext bit flipped", true, set("a", func(v []byte) []byte { v[len(v)/2] ^= 1; return v }), []string{"a"}, filestore.ErrCorrupt},
		{"tag bit flipped", true, set("a", func(v []byte) []byte { v[len(v)-1] ^= 0x80; return v }), []string{"a"}, filestore.ErrCorrupt},
		{"nonce bit flipped", true, set("a", func(v []byte) []byte { v[3] ^= 1; return v }), []string{"a"}, filestore.ErrCorrupt},
		{"encrypted values swapped", true, swap, []string{"a", "b"}, filestore.ErrCorrupt},
		{"plain values swapped", false, swap, []string{"a", "b"}, filestore.ErrCorrupt},
		{"encrypted record truncated", true, set("a", func(v []byte) []byte { return v[:20] }), []string{"a"}, filestore.ErrCorrupt},
		{"empty record", false, set("a", func([]byte) []byte { return []byte{} }), []string{"a"}, filestore.ErrCorrupt},
		{"plain JSON damaged", false, set("a", func(v []byte) []byte { return v[:len(v)-3] }), []string{"a"}, filestore.ErrCorrupt},
		{"plaintext record planted in encrypted store", true, set("a", func([]byte) []byte {
			return append([]byte{1, 0}, `{"name":"a","access_token":"evil"}`...)
		}), []string{"a"}, filestore.ErrCorrupt},
		{"encrypted record in plain store", false, set("a", func(v []byte) []byte { v[1] = 1; return append(v, make([]byte, 32)...) }), []string{"a"}, filestore.ErrCorrupt},
		{"newer record version", false, set("a", func(v []byte) []byte { v[0] = 9; return v }), []string{"a"}, filestore.ErrUnsupportedVersion},
		{"record version zero", false, set("a", func(v []byte) []byte { v[0] = 0; return v }), []string{"a"}, filestore.ErrCorrupt},
		{"unknown record cipher", false, set("a", func(v []byte) []byte { v[1] = 7; return v }), []string{"a"}, filestore.ErrCorrupt},
		{"plain record checksum wrong", false, set("a", func(v []byte) []byte { v[3] ^= 1; return v }), []string{"a"}, filestore.ErrCorrupt},
		{"plain record JSON damaged, checksum fixed", false, set("a", func([]byte) []byte { return plainRecord("a", `{"name":"a",`) }), []string{"a"}, filestore.ErrCorrupt},
		{"plain record of another name, checksum fixed", false, set("a", func([]byte) []byte { return plainRecord("a", `{"name":"b"}`) }), []string{"a"}, filestore.ErrCorrupt},
		{"expiry out of range", false, set("a", func([]byte) []byte {
			return plainRecord("a", `{"name":"a","expiry":"0000-01-01T00:00:00+01:00"}`)
		}), []string{"a"}, filestore.ErrCorrupt},
		{"saved_at out of range", false, set("a", func([]byte) []byte {
			return plainRecord("a", `{"name":"a","saved_at":"9999-12-31T23:00:00-02:00"}`)
		}), []string{"a"}, filestore.ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var k []byte
			if tt.encrypted {
				k = key(6)
			}
			path := storeFile(t, k)
			withBolt(t, path, func(tx *bolt.Tx) error { return tt.edit(tx.Bucket([]byte("tokens"))) })
			s := open(t, path, filestore.Options{Key: k})
			for _, n := range []string{"a", "b", "c"} {
				got, err := s.Load(t.Context(), n)
				bad := false
				for _, b := range tt.bad {
					bad = bad || b == n
				}
				if !bad {
					if err != nil {
						t.Errorf("Load(%q), an intact record: %v", n, err)
					} else if got.AccessToken != "at-"+n {
						t.Errorf("Load(%q) = %q", n, got.AccessToken)
					}
					continue
				}
				if !errors.Is(err, tt.want) {
					t.Errorf("Load(%q) = %v, want %v", n, err, tt.want)
					continue
				}
				if msg := err.Error(); strings.Contains(msg, "at-") || strings.Contains(msg, "evil") {
					t.Errorf("error %q quotes the record", msg)
				}
				if !strings.Contains(err.Error(), `"`+n+`"`) {
					t.Errorf("error %q does not name the token", err)
				}
			}
			// Save replaces a damaged record.
			if err := s.Save(t.Context(), "a", sampleToken("at-new")); err != nil {
				t.Fatal(err)
			}
			if got, err := s.Load(t.Context(), "a"); err != nil || got.AccessToken != "at-new" {
				t.Errorf("Load after Save = %v, %v", got, err)
			}
		})
	}
}

// TestRandomDamage damages random bytes and pages of a store's used pages
// (seeded, so failures reproduce) and checks that nothing hangs, crashes,
// panics or returns a damaged token: Open fails with a typed refusal, or
// Load fails with ErrCorrupt (or ErrNotFound: bbolt keeps no checksums, so
// a damaged key loses its record), or the damage missed the records. Before the structural walk in boltcheck.go,
// a damaged page header made bbolt's own check loop for minutes.
func TestRandomDamage(t *testing.T) {
	iterations := 400
	if testing.Short() {
		iterations = 50
	}
	srcs := map[bool][]byte{false: read(t, storeFile(t, nil)), true: read(t, storeFile(t, key(8)))}
	outcomes := map[string]int{}
	for seed := range uint64(iterations) {
		r := rand.New(rand.NewPCG(seed, 42))
		enc := seed%2 == 1
		b := bytes.Clone(srcs[enc])
		ps := pageSize(b)
		hwm := int(max(binary.NativeEndian.Uint64(b[16+40:]), binary.NativeEndian.Uint64(b[ps+16+40:])))
		pg := 2 + r.IntN(hwm-2)
		switch r.IntN(3) {
		case 0: // a page of garbage
			for i := range ps {
				b[pg*ps+i] = byte(r.Uint32())
			}
		case 1: // a few bit flips in one page
			for range 1 + r.IntN(8) {
				b[pg*ps+r.IntN(ps)] ^= byte(1 << r.IntN(8))
			}
		case 2: // a few bytes anywhere in the used pages
			for range 1 + r.IntN(8) {
				b[r.IntN(hwm*ps)] = byte(r.Uint32())
			}
		}
		path := tempPath(t)
		write(t, path, b)
		var k []byte
		if enc {
			k = key(8)
		}
		s, err := filestore.Open(path, filestore.Options{Key: k, LockTimeout: 100 * time.Millisecond})
		if err != nil {
			// Damage can also make the file look foreign (the header
			// bucket's name) or newer (a version byte).
			if !errors.Is(err, filestore.ErrCorrupt) && !errors.Is(err, filestore.ErrForeignFile) && !errors.Is(err, filestore.ErrUnsupportedVersion) {
				t.Fatalf("seed %d: Open = %v, want ErrCorrupt, ErrForeignFile or ErrUnsupportedVersion", seed, err)
			}
			if errors.Is(err, filestore.ErrCorrupt) {
				outcomes["open: corrupt"]++
			} else {
				outcomes["open: other refusal"]++
			}
			continue
		}
		for _, n := range []string{"a", "b", "c"} {
			got, err := s.Load(t.Context(), n)
			switch {
			case err == nil:
				if d := diffTokens(sampleToken("at-"+n), got); d != "" {
					// Possible only if the damage forged a matching CRC-32C.
					t.Errorf("seed %d: Load(%q) returned a damaged token", seed, n)
				}
				outcomes["load: ok"]++
			case errors.Is(err, filestore.ErrCorrupt):
				outcomes["load: corrupt"]++
			case errors.Is(err, filestore.ErrUnsupportedVersion):
				outcomes["load: newer version"]++
			case errors.Is(err, tokenkeeper.ErrNotFound):
				outcomes["load: not found"]++
			default:
				t.Errorf("seed %d: Load(%q) = %v", seed, n, err)
			}
		}
		s.Close()
	}
	t.Log(outcomes)
	if outcomes["open: corrupt"] == 0 || outcomes["load: corrupt"] == 0 {
		t.Errorf("damage never detected: %v", outcomes)
	}
}

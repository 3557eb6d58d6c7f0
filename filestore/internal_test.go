package filestore

import (
	"bytes"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/oauth2"
)

// storeBytes returns the bytes of a store holding n tokens (with n large
// enough, the tokens bucket is a tree of branch and leaf pages).
func storeBytes(t *testing.T, n int, key []byte) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s.db")
	s, err := Open(path, Options{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := s.Save(t.Context(), fmt.Sprintf("key-%04d", i), &oauth2.Token{AccessToken: strings.Repeat("x", 300)}); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// current returns the meta page bbolt would use, and its offset.
func current(b []byte) (boltMeta, int) {
	m0 := parseBoltMeta(b)
	m1 := parseBoltMeta(b[m0.pageSize:])
	if m1.valid && m1.txid > m0.txid {
		return m1, int(m0.pageSize)
	}
	return m0, 0
}

// setMeta rewrites a field of the current meta page and its checksum.
func setMeta(b []byte, field int, v uint64) {
	_, off := current(b)
	m := b[off+boltPageHeader:]
	ne.PutUint64(m[field:], v)
	h := fnv.New64a()
	h.Write(m[:56])
	ne.PutUint64(m[56:], h.Sum64())
}

func TestCheckBoltFileDamage(t *testing.T) {
	const (
		hdrID, hdrFlags, hdrCount, hdrOverflow = 0, 8, 10, 12
		metaRoot, metaFreelist                 = 16, 32
	)
	page := func(b []byte, id uint64) []byte {
		m, _ := current(b)
		return b[id*uint64(m.pageSize):]
	}
	root := func(b []byte) []byte { m, _ := current(b); return page(b, m.root) }
	free := func(b []byte) []byte { m, _ := current(b); return page(b, m.freelist) }
	tests := []struct {
		name   string
		damage func(b []byte)
		want   string
	}{
		{"freelist of the wrong type", func(b []byte) { ne.PutUint16(free(b)[hdrFlags:], boltLeafPage) }, "freelist page"},
		{"freelist longer than its page", func(b []byte) {
			ne.PutUint16(free(b)[hdrCount:], boltFreelistLarge)
			ne.PutUint64(free(b)[boltPageHeader:], 1<<40)
		}, "lists more pages"},
		{"freelist listing a page beyond the end", func(b []byte) {
			ne.PutUint16(free(b)[hdrCount:], 1)
			ne.PutUint64(free(b)[boltPageHeader:], 1<<40)
		}, "outside the database"},
		{"root page overflowing", func(b []byte) { ne.PutUint32(root(b)[hdrOverflow:], 1<<31) }, "overflows"},
		{"root page with another page's header", func(b []byte) { ne.PutUint64(root(b)[hdrID:], 12345) }, "holds the header"},
		{"root page of meta type", func(b []byte) { ne.PutUint16(root(b)[hdrFlags:], 0x04) }, "want branch or leaf"},
		{"root page of unknown type, empty", func(b []byte) {
			ne.PutUint16(root(b)[hdrFlags:], 0x40)
			ne.PutUint16(root(b)[hdrCount:], 0)
		}, "want branch or leaf"},
		{"root page with too many elements", func(b []byte) { ne.PutUint16(root(b)[hdrCount:], 0xFFFF) }, "more elements than room"},
		{"leaf element out of bounds", func(b []byte) { ne.PutUint32(root(b)[boltPageHeader+4:], 1<<31) }, "out of bounds"},
		{"page referenced twice", func(b []byte) { m, _ := current(b); setMeta(b, metaRoot, m.freelist) }, "referenced twice"},
		{"root outside the database", func(b []byte) { setMeta(b, metaRoot, 1<<50) }, "outside the database"},
		{"bad page size", func(b []byte) {
			m := b[boltPageHeader:] // meta page 0 decides the page size
			ne.PutUint32(m[8:], 1000)
			h := fnv.New64a()
			h.Write(m[:56])
			ne.PutUint64(m[56:], h.Sum64())
		}, "page size"},
		// bbolt falls back to meta page 1, whichever was current; so
		// does the check.
		{"meta page 0 damaged", func(b []byte) { b[boltPageHeader+56] ^= 1 }, "NONE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := storeBytes(t, 3, nil)
			tt.damage(b)
			err := checkBoltFile(bytes.NewReader(b), int64(len(b)))
			if tt.want == "NONE" {
				if err != nil {
					t.Fatalf("checkBoltFile = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("checkBoltFile = %v, want ErrCorrupt saying %q", err, tt.want)
			}
		})
	}
}

// TestCheckBoltFileTree damages the branch pages of a larger store.
func TestCheckBoltFileTree(t *testing.T) {
	b := storeBytes(t, 120, nil)
	if err := checkBoltFile(bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
	m, _ := current(b)
	ps := int(m.pageSize)
	found, detected := 0, 0
	for id := 2; id < int(m.hwm); id++ {
		p := b[id*ps:]
		if ne.Uint64(p) != uint64(id) || ne.Uint16(p[8:]) != boltBranchPage {
			continue
		}
		found++
		for _, c := range []struct {
			off  int
			val  uint64
			want string
		}{
			{boltPageHeader + 8, 1 << 40, "outside"},       // child page id
			{boltPageHeader + 0, 1 << 31, "out of bounds"}, // key position
		} {
			d := bytes.Clone(b)
			if c.off == boltPageHeader+8 {
				ne.PutUint64(d[id*ps+c.off:], c.val)
			} else {
				ne.PutUint32(d[id*ps+c.off:], uint32(c.val))
			}
			err := checkBoltFile(bytes.NewReader(d), int64(len(d)))
			switch {
			case err == nil:
				// A freed page, no longer reachable: bbolt never reads it.
			case errors.Is(err, ErrCorrupt) && strings.Contains(err.Error(), c.want):
				detected++
			default:
				t.Errorf("branch page %d: checkBoltFile = %v, want ErrCorrupt saying %q", id, err, c.want)
			}
		}
	}
	if found == 0 || detected == 0 {
		t.Fatalf("%d branch pages, damage detected %d times: want a reachable branch page", found, detected)
	}
}

// TestConsistencyCheck makes a file that the structural walk accepts but
// bbolt's consistency check does not: keys out of order in a leaf.
func TestConsistencyCheck(t *testing.T) {
	k := bytes.Repeat([]byte{9}, KeySize)
	b := storeBytes(t, 3, k) // encrypted: the names appear only as keys
	b = bytes.Replace(b, []byte("key-0000"), []byte("key-TEMP"), 1)
	b = bytes.Replace(b, []byte("key-0002"), []byte("key-0000"), 1)
	b = bytes.Replace(b, []byte("key-TEMP"), []byte("key-0002"), 1)
	path := filepath.Join(t.TempDir(), "s.db")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(path, Options{Key: k})
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "consistency check") {
		t.Fatalf("Open = %v, want ErrCorrupt from the consistency check", err)
	}
	if strings.Contains(err.Error(), "key-") {
		t.Errorf("error %q quotes keys", err)
	}
}

func TestGuard(t *testing.T) {
	tests := []struct {
		name  string
		panic any
		want  string
	}{
		{"string", "invalid page type: 3", "invalid page type: 3"},
		{"error", errors.New("mergepgids bad len"), "mergepgids bad len"},
		{"runtime error", nil, "index out of range"},
		{"other", 42, "panic of type int"},
		{"long", strings.Repeat("x", 500), strings.Repeat("x", 200) + "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := guard(func() error {
				if tt.panic == nil {
					var s []int
					_ = s[len(tt.name)] // a runtime error
				}
				panic(tt.panic)
			})
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("guard = %v, want ErrCorrupt saying %q", err, tt.want)
			}
		})
	}
	if err := guard(func() error { return nil }); err != nil {
		t.Errorf("guard(ok) = %v", err)
	}
}

func TestBoltErrorMapping(t *testing.T) {
	tests := []struct {
		in   error
		want error
	}{
		{bolt.ErrTimeout, ErrLocked},
		{bolt.ErrInvalid, ErrCorrupt},
		{bolt.ErrChecksum, ErrCorrupt},
		{bolt.ErrVersionMismatch, ErrCorrupt},
		{newError(ErrForeignFile, nil, "x"), ErrForeignFile},
		{os.ErrPermission, os.ErrPermission},
	}
	for _, tt := range tests {
		err := boltError("/p", tt.in)
		if !errors.Is(err, tt.want) || !strings.HasPrefix(err.Error(), "tokenkeeper: filestore: ") {
			t.Errorf("boltError(%v) = %v, want %v", tt.in, err, tt.want)
		}
	}
	if got := (redactKV{}).KeyToString([]byte("s3cr3t")) + (redactKV{}).ValueToString([]byte("t0k3n")); strings.Contains(got, "s3cr3t") || strings.Contains(got, "t0k3n") {
		t.Errorf("redactKV shows data: %q", got)
	}
}

func TestCreateErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// The parent "directory" is a file.
	if _, err := Open(filepath.Join(file, "tokens.db"), Options{}); err == nil || !strings.HasPrefix(err.Error(), "tokenkeeper: filestore: ") {
		t.Errorf("Open under a file = %v", err)
	}
	// The directory cannot be written.
	ro := filepath.Join(dir, "ro")
	if err := os.Mkdir(ro, 0o500); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 { // root writes anyway
		if _, err := Open(filepath.Join(ro, "tokens.db"), Options{}); err == nil {
			t.Error("Open in a read-only directory succeeded")
		}
	}
	// Another process won the race to create the file: create reports it
	// and Open uses the existing file.
	path := filepath.Join(dir, "raced.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := create(path, Options{LockTimeout: DefaultLockTimeout}); !errors.Is(err, os.ErrExist) {
		t.Errorf("create over an existing file = %v, want ErrExist", err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}

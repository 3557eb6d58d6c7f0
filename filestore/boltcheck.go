package filestore

import (
	"encoding/binary"
	"hash/fnv"
	"io"
)

// This file checks a bbolt file's structure before bbolt maps it. bbolt
// trusts its file: a truncated file makes it read past the end of the
// mapping (a fault), and a damaged page header can make its consistency
// check loop for billions of iterations or fault in a goroutine of its own,
// where no recover reaches. So Open first walks the page tree here, reading
// with ReadAt and bounding every count by the file's size; only a file that
// passes is handed to bbolt.
//
// The layout is bbolt's on-disk format version 2 (go.etcd.io/bbolt/internal/
// common), in the machine's byte order: every page run starts with a 16-byte
// header (id uint64, flags uint16, count uint16, overflow uint32); a meta
// page follows it with magic, version, page size, flags, the root bucket
// (root page, sequence), the freelist page, the high-water mark, the
// transaction id and an FNV-1a checksum.

const (
	boltMagic         = 0xED0CDAED
	boltVersion       = 2
	boltPageHeader    = 16
	boltMetaSize      = 64 // up to and including the checksum
	boltElemSize      = 16 // branch and leaf page elements alike
	boltInBucketSize  = 16
	boltNoFreelist    = ^uint64(0)
	boltBranchPage    = 0x01
	boltLeafPage      = 0x02
	boltFreelistPage  = 0x10
	boltBucketLeaf    = 0x01
	boltMaxTreeDepth  = 64
	boltFreelistLarge = 0xFFFF
)

var ne = binary.NativeEndian

type boltMeta struct {
	magic, version, pageSize  uint32
	root, freelist, hwm, txid uint64
	valid                     bool // magic, version and checksum all good
}

func parseBoltMeta(b []byte) boltMeta {
	if len(b) < boltPageHeader+boltMetaSize {
		return boltMeta{}
	}
	b = b[boltPageHeader : boltPageHeader+boltMetaSize]
	m := boltMeta{
		magic:    ne.Uint32(b[0:]),
		version:  ne.Uint32(b[4:]),
		pageSize: ne.Uint32(b[8:]),
		root:     ne.Uint64(b[16:]),
		freelist: ne.Uint64(b[32:]),
		hwm:      ne.Uint64(b[40:]),
		txid:     ne.Uint64(b[48:]),
	}
	h := fnv.New64a()
	h.Write(b[:56])
	m.valid = m.magic == boltMagic && m.version == boltVersion && ne.Uint64(b[56:]) == h.Sum64()
	return m
}

// checkBoltFile inspects the file's meta pages the way bbolt chooses
// between them, then walks the tree and the free list of the current one.
// A file that is not a bbolt database is foreign; a damaged or truncated
// one is corrupt.
func checkBoltFile(f io.ReaderAt, size int64) error {
	if size == 0 {
		return newError(ErrCorrupt, nil, "file is empty (truncated?)")
	}
	buf := make([]byte, boltPageHeader+boltMetaSize)
	read := func(off int64) boltMeta {
		n, err := f.ReadAt(buf, off)
		if err != nil && err != io.EOF {
			return boltMeta{}
		}
		return parseBoltMeta(buf[:n])
	}
	// Like bbolt: the page size is that of meta page 0 if it is valid,
	// else that of the first valid meta page found one page in, for a page
	// size guessed from 1 KiB up; then the current meta page is the valid
	// one, at 0 or one page in, with the higher transaction id.
	m0 := read(0)
	sawMagic := m0.magic == boltMagic
	var pageSize uint64
	if m0.valid {
		pageSize = uint64(m0.pageSize)
	} else {
		for i := 0; i <= 14; i++ {
			off := int64(1024) << i
			if off >= size {
				break
			}
			m := read(off)
			sawMagic = sawMagic || m.magic == boltMagic
			if m.valid {
				pageSize = uint64(m.pageSize)
				break
			}
		}
	}
	if pageSize == 0 {
		if sawMagic {
			return newError(ErrCorrupt, nil, "both bbolt meta pages are damaged")
		}
		return newError(ErrForeignFile, nil, "not a bbolt database")
	}
	ps := pageSize
	if ps < 1024 || ps > 1<<24 || ps&(ps-1) != 0 {
		return newError(ErrCorrupt, nil, "bad page size %d", ps)
	}
	var m boltMeta
	if m0.valid {
		m = m0
	}
	if m1 := read(int64(ps)); m1.valid && (!m.valid || m1.txid > m.txid) {
		m = m1
	}
	switch {
	case !m.valid:
		return newError(ErrCorrupt, nil, "both bbolt meta pages are damaged")
	case m.hwm < 3 || m.root < 2 || m.root >= m.hwm || (m.freelist != boltNoFreelist && (m.freelist < 2 || m.freelist >= m.hwm)):
		return newError(ErrCorrupt, nil, "bbolt meta page points outside the database")
	case m.hwm > uint64(size)/ps:
		return newError(ErrCorrupt, nil, "truncated: the file has %d bytes, its database needs %d", size, m.hwm*ps)
	}
	w := &walker{r: f, ps: ps, hwm: m.hwm, seen: make(map[uint64]bool)}
	if m.freelist != boltNoFreelist {
		if err := w.freelist(m.freelist); err != nil {
			return err
		}
	}
	return w.tree(m.root, 0)
}

// walker visits the pages of one bbolt file, each at most once.
type walker struct {
	r    io.ReaderAt
	ps   uint64
	hwm  uint64
	seen map[uint64]bool
}

func damaged(format string, args ...any) error {
	return newError(ErrCorrupt, nil, "damaged bbolt page: "+format, args...)
}

// run reads the page run starting at id, after checking that its header
// names it and that it lies below the high-water mark and was not visited.
func (w *walker) run(id uint64) ([]byte, error) {
	if id < 2 || id >= w.hwm {
		return nil, damaged("reference to page %d outside [2, %d)", id, w.hwm)
	}
	var hdr [boltPageHeader]byte
	if _, err := w.r.ReadAt(hdr[:], int64(id*w.ps)); err != nil {
		return nil, damaged("page %d unreadable", id)
	}
	if got := ne.Uint64(hdr[0:]); got != id {
		return nil, damaged("page %d holds the header of page %d", id, got)
	}
	over := uint64(ne.Uint32(hdr[12:]))
	if over >= w.hwm-id {
		return nil, damaged("page %d overflows past the high-water mark", id)
	}
	for i := id; i <= id+over; i++ {
		if w.seen[i] {
			return nil, damaged("page %d is referenced twice", i)
		}
		w.seen[i] = true
	}
	b := make([]byte, (over+1)*w.ps)
	if _, err := w.r.ReadAt(b, int64(id*w.ps)); err != nil {
		return nil, damaged("page %d unreadable", id)
	}
	return b, nil
}

func (w *walker) freelist(id uint64) error {
	b, err := w.run(id)
	if err != nil {
		return err
	}
	if ne.Uint16(b[8:]) != boltFreelistPage {
		return damaged("freelist page %d has the wrong type", id)
	}
	idx, n := uint64(0), uint64(ne.Uint16(b[10:]))
	if n == boltFreelistLarge {
		idx, n = 1, ne.Uint64(b[boltPageHeader:])
	}
	if n > (uint64(len(b))-boltPageHeader)/8-idx {
		return damaged("freelist page %d lists more pages than it holds", id)
	}
	for i := range n {
		if p := ne.Uint64(b[boltPageHeader+8*(idx+i):]); p < 2 || p >= w.hwm {
			return damaged("freelist page %d lists page %d outside the database", id, p)
		}
	}
	return nil
}

// tree checks the B+tree rooted at page id.
func (w *walker) tree(id uint64, depth int) error {
	if depth > boltMaxTreeDepth {
		return damaged("tree deeper than %d", boltMaxTreeDepth)
	}
	b, err := w.run(id)
	if err != nil {
		return err
	}
	return w.node(b, id, depth)
}

// node checks one branch or leaf page (b is its run; id is 0 for a bucket
// stored inline in its parent's value).
func (w *walker) node(b []byte, id uint64, depth int) error {
	if len(b) < boltPageHeader {
		return damaged("page %d too short", id)
	}
	flags, count := ne.Uint16(b[8:]), uint64(ne.Uint16(b[10:]))
	if id == 0 && flags != boltLeafPage {
		return damaged("inline bucket page has type %#x, want leaf", flags)
	}
	if boltPageHeader+count*boltElemSize > uint64(len(b)) {
		return damaged("page %d has more elements than room", id)
	}
	span := func(e, pos, n uint64) ([]byte, bool) {
		start := e + pos
		if start < e || start+n < start || start+n > uint64(len(b)) {
			return nil, false
		}
		return b[start : start+n], true
	}
	for i := range count {
		e := boltPageHeader + i*boltElemSize
		switch flags {
		case boltBranchPage:
			if _, ok := span(e, uint64(ne.Uint32(b[e:])), uint64(ne.Uint32(b[e+4:]))); !ok {
				return damaged("page %d: key %d out of bounds", id, i)
			}
			if err := w.tree(ne.Uint64(b[e+8:]), depth+1); err != nil {
				return err
			}
		case boltLeafPage:
			kv, ok := span(e, uint64(ne.Uint32(b[e+4:])), uint64(ne.Uint32(b[e+8:]))+uint64(ne.Uint32(b[e+12:])))
			if !ok {
				return damaged("page %d: element %d out of bounds", id, i)
			}
			if ne.Uint32(b[e:])&boltBucketLeaf == 0 {
				continue
			}
			v := kv[ne.Uint32(b[e+8:]):]
			if len(v) < boltInBucketSize {
				return damaged("page %d: bucket header %d too short", id, i)
			}
			if depth+1 > boltMaxTreeDepth {
				return damaged("buckets nested deeper than %d", boltMaxTreeDepth)
			}
			var err error
			if root := ne.Uint64(v); root == 0 {
				err = w.node(v[boltInBucketSize:], 0, depth+1)
			} else {
				err = w.tree(root, depth+1)
			}
			if err != nil {
				return err
			}
		default:
			return damaged("page %d has type %#x, want branch or leaf", id, flags)
		}
	}
	if count == 0 && flags != boltLeafPage && flags != boltBranchPage {
		return damaged("page %d has type %#x, want branch or leaf", id, flags)
	}
	return nil
}

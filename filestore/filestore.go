package filestore

import (
	"bytes"
	"context"
	"crypto/cipher"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/oauth2"
)

// DefaultLockTimeout is how long Open waits for another process's lock on
// the file when Options.LockTimeout is zero.
const DefaultLockTimeout = time.Second

// DefaultExtraKeys returns the token extras kept when Options.ExtraKeys is
// nil: "id_token" (OIDC), "scope", "refresh_in" (a server's hint of when to
// refresh, read by the keeper), "refresh_expires_in" (Keycloak) and
// "refresh_token_expires_in" (Azure AD, GitHub).
func DefaultExtraKeys() []string {
	return []string{"id_token", "scope", "refresh_in", "refresh_expires_in", "refresh_token_expires_in"}
}

// Options configures Open. The zero value opens or creates an unencrypted
// store and waits up to a second for another process's lock.
type Options struct {
	// Key, if not nil, is the 32-byte key (see [ParseKey], [KeyFromFile],
	// [KeyFromEnv]) that encrypts every record with AES-256-GCM. A new file
	// is created encrypted. An existing file must match: an encrypted one
	// opened without the right key fails with ErrKeyRequired or
	// ErrWrongKey, an unencrypted one opened with a key fails with
	// ErrNotEncrypted.
	Key []byte
	// LockTimeout bounds how long Open waits for the file's lock, which
	// another process (or another Store in this process) may hold, before
	// failing with ErrLocked. If zero, DefaultLockTimeout; it must not be
	// negative.
	LockTimeout time.Duration
	// FixPermissions makes Open set the mode of an existing store file that
	// other users may read or write to 0600, instead of failing with
	// ErrInsecureFile.
	FixPermissions bool
	// ExtraKeys names the token extras (oauth2.Token.Extra) that Save keeps.
	// If nil, DefaultExtraKeys(); an empty, non-nil slice keeps none. Load
	// restores every extra a record holds, with numbers as float64 (as in a
	// JSON token response). An extra that cannot be encoded as JSON makes
	// Save fail.
	ExtraKeys []string
}

// Store is a [tokenkeeper.Store] in one local file. It is safe for
// concurrent use by many goroutines; only one Store, in one process, can
// have the file open at a time. Close it to release the file.
type Store struct {
	db        *bolt.DB
	path      string
	aead      cipher.AEAD // nil: unencrypted
	extraKeys []string

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

var _ tokenkeeper.Store = (*Store)(nil)

// Open opens the store file at path, creating it (mode 0600, and its
// directory, mode 0700) if it does not exist.
//
// An existing file is checked before anything is written to it: it must be
// a tokenkeeper store (else ErrForeignFile), undamaged as far as bbolt's
// consistency check can tell (else ErrCorrupt), of a known format (else
// ErrUnsupportedVersion), match opts.Key (else ErrKeyRequired, ErrWrongKey
// or ErrNotEncrypted) and be private to its owner (else ErrInsecureFile,
// unless opts.FixPermissions). A file that fails is never modified. If
// another process holds the file, Open fails with ErrLocked after
// opts.LockTimeout.
func Open(path string, opts Options) (*Store, error) {
	if path == "" {
		return nil, newError(nil, nil, "empty path")
	}
	if opts.Key != nil && len(opts.Key) != KeySize {
		return nil, newError(ErrBadKey, nil, "Options.Key has %d bytes, want %d (use ParseKey for encoded keys)", len(opts.Key), KeySize)
	}
	if opts.LockTimeout < 0 {
		return nil, newError(nil, nil, "negative Options.LockTimeout")
	}
	if opts.LockTimeout == 0 {
		opts.LockTimeout = DefaultLockTimeout
	}
	if opts.ExtraKeys == nil {
		opts.ExtraKeys = DefaultExtraKeys()
	} else {
		opts.ExtraKeys = slices.Clone(opts.ExtraKeys)
	}
	if opts.Key != nil {
		opts.Key = bytes.Clone(opts.Key)
	}

	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		// If another process creates the file meanwhile, open theirs.
		if err := create(path, opts); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
	} else if err != nil {
		return nil, newError(nil, err, "open")
	}
	return openExisting(path, opts)
}

// create makes a new store file at path without ever exposing a partial
// one: it builds the file under a temporary name in the same directory,
// syncs it, and links it into place (which fails if path appeared
// meanwhile). A crash leaves at most a stray temporary file.
func create(path string, opts Options) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return newError(nil, err, "create")
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return newError(nil, err, "create")
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	err = f.Chmod(0o600)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return newError(nil, err, "create")
	}

	var kc *keyCheck
	if opts.Key != nil {
		if kc, err = newKeyCheck(opts.Key); err != nil {
			return err
		}
	}
	db, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: opts.LockTimeout})
	if err != nil {
		return newError(nil, err, "create %s", path)
	}
	err = db.Update(func(tx *bolt.Tx) error { return writeHeader(tx, kc) })
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return newError(nil, err, "create %s", path)
	}

	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return err
		}
		// A file system without hard links: rename, which would replace a
		// file created in the last microseconds; check just before.
		if _, serr := os.Lstat(path); serr == nil {
			return fs.ErrExist
		}
		if err := os.Rename(tmp, path); err != nil {
			return newError(nil, err, "create")
		}
	}
	if err := syncDir(dir); err != nil {
		return newError(nil, err, "create %s: syncing directory", path)
	}
	return nil
}

// syncDir makes a new directory entry durable.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// openExisting validates the file read-only, then opens it for writing.
func openExisting(path string, opts Options) (*Store, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, newError(nil, err, "open")
	}
	switch {
	case !fi.Mode().IsRegular():
		return nil, newError(ErrForeignFile, nil, "open %s: not a regular file", path)
	case fi.Size() == 0:
		return nil, newError(ErrCorrupt, nil, "open %s: file is empty (truncated?)", path)
	}

	// Validate with a read-only handle, under bbolt's shared lock: bbolt
	// opened for writing may write to the file at once (to sync a free
	// list), and a file that fails must not be touched. Opening read-only
	// reads only the two meta pages, so it is safe before the structural
	// check; the check itself must run under the lock, or it could race
	// with another process's writes and report damage that is not there.
	var ro *bolt.DB
	err = guard(func() (err error) {
		ro, err = bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: opts.LockTimeout})
		return err
	})
	if err != nil {
		if !errors.Is(err, bolt.ErrTimeout) {
			// bbolt refused the file; say precisely why if we can.
			if perr := precheck(path); perr != nil {
				return nil, perr
			}
		}
		return nil, boltError(path, err)
	}
	err = precheck(path)
	if err == nil {
		err = guard(func() error {
			return ro.View(func(tx *bolt.Tx) error {
				if _, err := readHeader(tx, opts.Key); err != nil {
					return err
				}
				return checkConsistency(tx)
			})
		})
		if err != nil {
			err = openError(path, err)
		}
	}
	if cerr := ro.Close(); err == nil && cerr != nil {
		err = newError(nil, cerr, "open %s: closing", path)
	}
	if err != nil {
		return nil, err
	}

	if err := checkMode(path, opts.FixPermissions); err != nil {
		return nil, err
	}

	var db *bolt.DB
	err = guard(func() (err error) {
		db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout})
		return err
	})
	if err != nil {
		return nil, boltError(path, err)
	}
	s := &Store{db: db, path: path, extraKeys: opts.ExtraKeys}
	// Between the two opens the file was unlocked: check the header again
	// under the exclusive lock.
	err = guard(func() error {
		return db.View(func(tx *bolt.Tx) (err error) {
			s.aead, err = readHeader(tx, opts.Key)
			return err
		})
	})
	if err != nil {
		db.Close()
		return nil, openError(path, err)
	}
	return s, nil
}

// openError prefixes an error found while validating the file at path.
func openError(path string, err error) error {
	var se *storeError
	if errors.As(err, &se) {
		return &storeError{msg: "open " + path + ": " + se.msg, kind: se.kind, cause: se.cause}
	}
	return boltError(path, err)
}

// precheck runs checkBoltFile on the file at path.
func precheck(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return newError(nil, err, "open")
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return newError(nil, err, "open")
	}
	if err := checkBoltFile(f, fi.Size()); err != nil {
		return openError(path, err)
	}
	return nil
}

// checkConsistency runs bbolt's consistency check over the whole file.
func checkConsistency(tx *bolt.Tx) error {
	var first error
	n := 0
	for err := range tx.Check(bolt.WithKVStringer(redactKV{})) {
		if first == nil {
			first = err
		}
		n++
	}
	if first != nil {
		return newError(ErrCorrupt, nil, "bbolt consistency check found %d problem(s), the first: %s", n, truncate(first.Error(), 200))
	}
	return nil
}

// checkMode refuses (or fixes) a file that others may read or write.
func checkMode(path string, fix bool) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return newError(nil, err, "open")
	}
	perm := fi.Mode().Perm()
	if perm&0o077 == 0 {
		return nil
	}
	if !fix {
		return newError(ErrInsecureFile, nil, "open %s: mode %04o lets other users read or write it; chmod 600 it or set Options.FixPermissions", path, perm)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		return newError(nil, err, "open %s: fixing permissions", path)
	}
	return nil
}

// Path returns the file's path as given to Open.
func (s *Store) Path() string { return s.path }

// Encrypted reports whether the records are encrypted.
func (s *Store) Encrypted() bool { return s.aead != nil }

// Load returns the token saved under name. It fails with an error wrapping
// [tokenkeeper.ErrNotFound] for a name the store does not hold, with one
// matching ErrCorrupt for a record that cannot be decoded or authenticated
// (the other records stay readable), and with ErrClosed after Close.
func (s *Store) Load(ctx context.Context, name string) (*oauth2.Token, error) {
	tok, _, err := s.LoadSavedAt(ctx, name)
	return tok, err
}

// LoadSavedAt is Load that also returns when the token was saved; it
// implements [tokenkeeper.SavedAtLoader], so a keeper restarted on this store
// keeps each token's refresh window where it was.
func (s *Store) LoadSavedAt(ctx context.Context, name string) (*oauth2.Token, time.Time, error) {
	if err := s.precall(ctx, "load", name); err != nil {
		return nil, time.Time{}, err
	}
	var data []byte
	err := s.view(func(tx *bolt.Tx) error {
		data = bytes.Clone(tx.Bucket(bucketTokens).Get([]byte(name)))
		return nil
	})
	if err != nil {
		return nil, time.Time{}, s.opError("load", name, err)
	}
	if data == nil {
		return nil, time.Time{}, newError(tokenkeeper.ErrNotFound, nil, "load %q: not found", name)
	}
	e, err := decodeRecord(name, data, s.aead)
	if err != nil {
		return nil, time.Time{}, s.opError("load", name, err)
	}
	return e.token(), e.SavedAt, nil
}

// Save stores tok under name, replacing what was there, and returns once
// the write is on stable storage (one bbolt transaction, synced to disk).
// It fails with ErrClosed after Close. ctx is checked before the write
// starts; a write that has started is not interrupted.
func (s *Store) Save(ctx context.Context, name string, tok *oauth2.Token) error {
	if err := s.precall(ctx, "save", name); err != nil {
		return err
	}
	if tok == nil {
		return newError(nil, nil, "save %q: nil token", name)
	}
	rec, err := encodeRecord(name, tok, time.Now(), s.extraKeys, s.aead)
	if err != nil {
		return s.opError("save", name, err)
	}
	err = s.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTokens).Put([]byte(name), rec)
	})
	if err != nil {
		return s.opError("save", name, err)
	}
	return nil
}

// Delete removes the token saved under name, durably. Deleting a name the
// store does not hold is not an error.
func (s *Store) Delete(ctx context.Context, name string) error {
	if err := s.precall(ctx, "delete", name); err != nil {
		return err
	}
	err := s.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTokens).Delete([]byte(name))
	})
	if err != nil {
		return s.opError("delete", name, err)
	}
	return nil
}

// List returns the names of the saved tokens, in byte order.
func (s *Store) List(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, newError(nil, err, "list")
	}
	if s.closed.Load() {
		return nil, newError(ErrClosed, nil, "list")
	}
	var names []string
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTokens).ForEach(func(k, _ []byte) error {
			names = append(names, string(k))
			return nil
		})
	})
	if err != nil {
		return nil, s.opError("list", "", err)
	}
	return names, nil
}

// Close releases the file and its lock. It waits for running operations;
// later calls of any method fail with ErrClosed. Close is idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		if err := s.db.Close(); err != nil {
			s.closeErr = newError(nil, err, "close")
		}
	})
	return s.closeErr
}

func (s *Store) precall(ctx context.Context, op, name string) error {
	if err := ctx.Err(); err != nil {
		return newError(nil, err, "%s %q", op, name)
	}
	if s.closed.Load() {
		return newError(ErrClosed, nil, "%s %q", op, name)
	}
	if name == "" {
		return newError(nil, nil, "%s: empty token name", op)
	}
	return nil
}

func (s *Store) view(fn func(*bolt.Tx) error) error {
	return guard(func() error { return s.db.View(fn) })
}

func (s *Store) update(fn func(*bolt.Tx) error) error {
	return guard(func() error { return s.db.Update(fn) })
}

// opError adds the operation and name to err.
func (s *Store) opError(op, name string, err error) error {
	what := op
	if name != "" {
		what = fmt.Sprintf("%s %q", op, name)
	}
	if errors.Is(err, bolt.ErrDatabaseNotOpen) {
		return newError(ErrClosed, nil, "%s", what)
	}
	var se *storeError
	if errors.As(err, &se) {
		return &storeError{msg: what + ": " + se.msg, kind: se.kind, cause: se.cause}
	}
	return newError(nil, err, "%s", what)
}

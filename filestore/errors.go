package filestore

import (
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"

	bolt "go.etcd.io/bbolt"
)

// Sentinel errors. Test for them with errors.Is: the errors the package
// returns wrap them and add the path or token name and the reason.
var (
	// ErrLocked is returned by Open when another process (or another Store
	// in this process) holds the file open: bbolt locks it exclusively.
	ErrLocked = errors.New("tokenkeeper: filestore: store file is locked by another process")
	// ErrCorrupt means the file, or one record, is damaged: a file that is
	// empty, truncated or fails bbolt's consistency check, a header with bad
	// values, or a record that cannot be decoded or authenticated. The file
	// is left as it is.
	ErrCorrupt = errors.New("tokenkeeper: filestore: corrupt store data")
	// ErrForeignFile means the file is not a tokenkeeper store: not a bbolt
	// database at all, or a bbolt database of another application. The file
	// is left as it is.
	ErrForeignFile = errors.New("tokenkeeper: filestore: not a tokenkeeper store file")
	// ErrUnsupportedVersion means the file or a record was written in a
	// format newer than this package understands.
	ErrUnsupportedVersion = errors.New("tokenkeeper: filestore: unsupported format version")
	// ErrKeyRequired is returned by Open for an encrypted file when
	// Options.Key is nil.
	ErrKeyRequired = errors.New("tokenkeeper: filestore: store file is encrypted and no key was given")
	// ErrWrongKey is returned by Open for an encrypted file when Options.Key
	// is not the key it was created with.
	ErrWrongKey = errors.New("tokenkeeper: filestore: wrong encryption key")
	// ErrNotEncrypted is returned by Open for an unencrypted file when
	// Options.Key is set: the store refuses to mix, so that a configured key
	// is never silently ignored.
	ErrNotEncrypted = errors.New("tokenkeeper: filestore: store file is not encrypted but a key was given")
	// ErrBadKey is returned for key material that is not a 32-byte key (see
	// [ParseKey]).
	ErrBadKey = errors.New("tokenkeeper: filestore: invalid encryption key")
	// ErrInsecureFile is returned by Open for an existing file that users
	// other than its owner may read or write, unless Options.FixPermissions
	// is set.
	ErrInsecureFile = errors.New("tokenkeeper: filestore: store file is accessible to other users")
	// ErrClosed is returned by the methods of a closed Store.
	ErrClosed = errors.New("tokenkeeper: filestore: store is closed")
)

// storeError is every error the package returns: a message after the
// package prefix, the sentinel it matches and the underlying cause. Its text
// never holds a token value: causes are OS and bbolt errors only, never
// decoder errors that could quote stored bytes.
type storeError struct {
	msg   string
	kind  error // a sentinel, or nil
	cause error // or nil
}

func (e *storeError) Error() string {
	s := "tokenkeeper: filestore: " + e.msg
	if e.cause != nil {
		s += ": " + e.cause.Error()
	}
	return s
}

func (e *storeError) Unwrap() []error {
	var errs []error
	if e.kind != nil {
		errs = append(errs, e.kind)
	}
	if e.cause != nil {
		errs = append(errs, e.cause)
	}
	return errs
}

func newError(kind, cause error, format string, args ...any) error {
	return &storeError{msg: fmt.Sprintf(format, args...), kind: kind, cause: cause}
}

// boltError classifies an error bbolt returned while opening a file.
func boltError(path string, err error) error {
	switch {
	case errors.Is(err, bolt.ErrTimeout):
		return newError(ErrLocked, nil, "open %s: file is locked by another process or Store (one process at a time, see the package documentation)", path)
	case errors.Is(err, bolt.ErrInvalid), errors.Is(err, bolt.ErrChecksum), errors.Is(err, bolt.ErrVersionMismatch):
		return newError(ErrCorrupt, err, "open %s: damaged bbolt file", path)
	default:
		var se *storeError
		if errors.As(err, &se) {
			return err
		}
		return newError(nil, err, "open %s", path)
	}
}

// guard runs f, turning a panic or a memory fault inside bbolt (a damaged
// page can make it index out of range or read past the end of the mapped
// file) into an error matching ErrCorrupt. bbolt's View and Update roll the
// transaction back on a panic.
func guard(f func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			err = newError(ErrCorrupt, nil, "damaged database page (%s)", panicText(r))
		}
	}()
	return f()
}

// panicText describes a recovered panic. bbolt panics with strings and
// runtime errors about pages and offsets, never with stored values.
func panicText(r any) string {
	var s string
	switch v := r.(type) {
	case runtime.Error:
		s = v.Error()
	case string:
		s = v
	case error:
		s = v.Error()
	default:
		s = fmt.Sprintf("panic of type %T", r)
	}
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

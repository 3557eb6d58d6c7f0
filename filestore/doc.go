// Package filestore is tokenkeeper's default durable [tokenkeeper.Store]:
// one local file, embedded (no server), built on go.etcd.io/bbolt.
//
//	st, err := filestore.Open("/var/lib/tokenkeeper/tokens.db", filestore.Options{Key: key})
//	if err != nil { ... }
//	defer st.Close()
//	k, err := tokenkeeper.New(tokenkeeper.Config{Store: st})
//
// # Durability
//
// Each Save and Delete is one bbolt read-write transaction, and bbolt
// syncs a transaction to stable storage (fdatasync) before the call
// returns, with data pages written and synced before the meta page that
// makes them current. A crash at any moment, including kill -9 in the middle
// of a write, leaves the file with either the old or the new value of the
// token, never a mixture: the keeper saves a refreshed token before it hands
// it out, so a rotated refresh token survives any crash after Save returns.
// A new file is built under a temporary name, synced and then linked into
// place, so there is never a half-initialised store at the path. (bbolt's
// NoSync is never set; durability against power loss also relies on the
// disk honouring flushes.)
//
// # File format
//
// The file is a bbolt database, mode 0600, with two buckets:
//
//   - "tokenkeeper", the header: "magic" = "tokenkeeper.filestore",
//     "format" = the format version (uint32, big endian, now 1), "cipher" =
//     "none" or "aes-256-gcm", "created" = creation time (RFC 3339), for an
//     encrypted file "salt" (32 random bytes) and "keycheck" (see below), and
//     "sum", a CRC-32C of the other entries, so that a damaged header is
//     reported as damage and not, say, as a wrong key.
//   - "tokens": one record per token, keyed by the token's name.
//
// A record is a version byte (1), a cipher byte (0 plain, 1 AES-256-GCM)
// and a JSON envelope, after a CRC-32C (plain) or sealed (encrypted); both
// cover the token's name, so a record moved to another name is refused.
// The envelope holds the name, the time of saving ("saved_at") and the
// token's fields ("access_token", "token_type", "refresh_token", "expiry"
// in RFC 3339, "expires_in") and selected extras ("extra", see
// [Options].ExtraKeys: by default id_token, scope, refresh_in,
// refresh_expires_in and refresh_token_expires_in; x/oauth2 keeps extras in
// an unexported field, so only named ones can be read back and stored).
//
// Open checks an existing file before anything writes to it, under bbolt's
// shared lock: bbolt's meta pages (a file that is not a bbolt database is
// foreign; one that is truncated or damaged is corrupt), a bounded walk of
// the page tree and free list (bbolt trusts its file: a damaged page header
// could otherwise make it fault or loop), the header, and bbolt's
// consistency check of every page. A file that fails is reported with an
// error matching ErrForeignFile, ErrCorrupt or ErrUnsupportedVersion and is
// never overwritten, repaired or reinitialised: that is left to a person.
// A damaged record makes Load fail with ErrCorrupt for that name only; Save
// replaces it. (bbolt keeps no checksums of its own pages: damage to a
// record's key, rather than its value, loses that record.)
//
// # Encryption
//
// With [Options].Key (32 bytes; see [ParseKey], [KeyFromFile],
// [KeyFromEnv]) a new file is encrypted: each record's envelope is sealed
// with AES-256-GCM under a fresh random 96-bit nonce. The record key is
// derived with HKDF-SHA256 from the user's key and the file's random salt;
// the header keeps an HMAC-SHA256 of a constant under a second derived key
// (the key check value), so Open detects a wrong key at once
// (ErrWrongKey) without revealing anything about the key. The record's
// header bytes and its token name are authenticated with it as additional
// data, so a record copied to another name, or to another file, fails to
// open. An encrypted file opened without a key fails with ErrKeyRequired;
// an unencrypted file opened with a key fails with ErrNotEncrypted rather
// than silently leaving tokens in the clear (to encrypt, create a new store
// and save the tokens into it). Token names and the header are not
// encrypted.
//
// # Permissions
//
// A new file is created with mode 0600 (and its directory, if missing, with
// 0700). Open refuses an existing file that its group or other users may
// read or write (ErrInsecureFile), or with [Options].FixPermissions sets it
// to 0600. Keep a key file 0600 as well.
//
// # Locking and the one-process limit
//
// bbolt locks the file exclusively (flock) for as long as a Store is open:
// one process, and within it one Store, uses a file at a time, and even a
// read-only reader must wait. A second Open fails with ErrLocked after
// [Options].LockTimeout (1 s by default) instead of hanging. The lock goes
// away with the process, so a crashed agent never leaves a stale lock. In
// tokenkeeper's design the agent holds the store: other programs ask the
// agent for tokens instead of opening the file. Several processes, or
// machines, that share tokens need a shared store (redisstore).
//
// # Errors
//
// Errors start with "tokenkeeper: filestore: " and match the sentinels below
// with errors.Is; Load's not-found error matches [tokenkeeper.ErrNotFound].
// No error text contains a token value or key material.
package filestore

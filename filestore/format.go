package filestore

import (
	"bytes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"maps"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/oauth2"
)

// File layout. See the package documentation.
const (
	formatVersion = 1 // of the file (header bucket)
	recordVersion = 1 // of each record

	magic = "tokenkeeper.filestore"

	cipherNameNone = "none"
	cipherNameAES  = "aes-256-gcm"

	recordPlain = 0 // record cipher byte: plaintext JSON behind a CRC-32C
	recordAES   = 1 // record cipher byte: AES-256-GCM
	nonceSize   = 12
	crcSize     = 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// recordCRC is the checksum of a plaintext record: of its additional data
// (so it also binds the name) and its body.
func recordCRC(hdr []byte, name string, body []byte) uint32 {
	return crc32.Update(crc32.Checksum(recordAD(hdr, name), castagnoli), castagnoli, body)
}

var (
	bucketHeader = []byte("tokenkeeper")
	bucketTokens = []byte("tokens")

	keyMagic    = []byte("magic")
	keyFormat   = []byte("format")
	keyCipher   = []byte("cipher")
	keySalt     = []byte("salt")
	keyKeyCheck = []byte("keycheck")
	keyCreated  = []byte("created")
	keySum      = []byte("sum")
)

// headerSum is the CRC-32C of the header's other entries, in key order,
// each as a big-endian uint32 length and bytes for the key, then the same
// for the value. It tells a damaged header (say, a salt with a flipped bit)
// from a wrong key.
func headerSum(h *bolt.Bucket) []byte {
	var crc uint32
	var n [4]byte
	h.ForEach(func(k, v []byte) error {
		if string(k) == string(keySum) {
			return nil
		}
		for _, b := range [][]byte{k, v} {
			binary.BigEndian.PutUint32(n[:], uint32(len(b)))
			crc = crc32.Update(crc, castagnoli, n[:])
			crc = crc32.Update(crc, castagnoli, b)
		}
		return nil
	})
	return binary.BigEndian.AppendUint32(nil, crc)
}

// writeHeader fills a new file: the header bucket and the empty tokens
// bucket. kc holds the key material of an encrypted file, nil otherwise.
func writeHeader(tx *bolt.Tx, kc *keyCheck) error {
	h, err := tx.CreateBucket(bucketHeader)
	if err != nil {
		return err
	}
	if _, err := tx.CreateBucket(bucketTokens); err != nil {
		return err
	}
	var ver [4]byte
	binary.BigEndian.PutUint32(ver[:], formatVersion)
	put := [][2][]byte{
		{keyMagic, []byte(magic)},
		{keyFormat, ver[:]},
		{keyCreated, []byte(time.Now().UTC().Format(time.RFC3339))},
		{keyCipher, []byte(cipherNameNone)},
	}
	if kc != nil {
		put[3][1] = []byte(cipherNameAES)
		put = append(put, [2][]byte{keySalt, kc.salt}, [2][]byte{keyKeyCheck, kc.check})
	}
	for _, kv := range put {
		if err := h.Put(kv[0], kv[1]); err != nil {
			return err
		}
	}
	return h.Put(keySum, headerSum(h))
}

// readHeader checks that tx's file is a tokenkeeper store of a known format
// and that key fits it. It returns the record cipher (nil for an
// unencrypted file).
func readHeader(tx *bolt.Tx, key []byte) (cipher.AEAD, error) {
	h := tx.Bucket(bucketHeader)
	if h == nil {
		return nil, newError(ErrForeignFile, nil, "bbolt database without a tokenkeeper header (a file of another application?)")
	}
	sum := h.Get(keySum)
	switch {
	case sum == nil && string(h.Get(keyMagic)) != magic:
		return nil, newError(ErrForeignFile, nil, "bbolt database whose header is not a tokenkeeper store's")
	case sum == nil:
		return nil, newError(ErrCorrupt, nil, "header checksum missing")
	case !bytes.Equal(sum, headerSum(h)):
		return nil, newError(ErrCorrupt, nil, "header checksum mismatch (damaged header)")
	case string(h.Get(keyMagic)) != magic:
		return nil, newError(ErrForeignFile, nil, "bbolt database whose header is not a tokenkeeper store's")
	}
	v := h.Get(keyFormat)
	if len(v) != 4 || binary.BigEndian.Uint32(v) == 0 {
		return nil, newError(ErrCorrupt, nil, "header: bad format version field")
	}
	if n := binary.BigEndian.Uint32(v); n > formatVersion {
		return nil, newError(ErrUnsupportedVersion, nil, "file format %d is newer than this package's (%d)", n, formatVersion)
	}
	if tx.Bucket(bucketTokens) == nil {
		return nil, newError(ErrCorrupt, nil, "tokens bucket missing")
	}
	switch c := string(h.Get(keyCipher)); c {
	case cipherNameNone:
		if key != nil {
			return nil, newError(ErrNotEncrypted, nil, "the file is not encrypted but a key was given (create a new store to encrypt)")
		}
		return nil, nil
	case cipherNameAES:
		if key == nil {
			return nil, newError(ErrKeyRequired, nil, "the file is encrypted (aes-256-gcm) and no key was given")
		}
		salt, check := h.Get(keySalt), h.Get(keyKeyCheck)
		if len(salt) != saltSize || len(check) != checkSize {
			return nil, newError(ErrCorrupt, nil, "header: bad salt or key check value")
		}
		kc := deriveKeys(key, salt)
		if !hmac.Equal(kc.check, check) {
			return nil, newError(ErrWrongKey, nil, "the key is not the one the file was encrypted with")
		}
		return newAEAD(kc.enc), nil
	default:
		return nil, newError(ErrUnsupportedVersion, nil, "header: unknown cipher %q", truncate(c, 32))
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// envelope is a record's payload: the token, its name and when it was saved.
type envelope struct {
	Name         string         `json:"name"`
	SavedAt      time.Time      `json:"saved_at,omitzero"`
	AccessToken  string         `json:"access_token,omitempty"`
	TokenType    string         `json:"token_type,omitempty"`
	RefreshToken string         `json:"refresh_token,omitempty"`
	Expiry       time.Time      `json:"expiry,omitzero"`
	ExpiresIn    int64          `json:"expires_in,omitempty"`
	Extra        map[string]any `json:"extra,omitempty"`
}

// token returns a new token with e's fields and extras.
func (e *envelope) token() *oauth2.Token {
	t := &oauth2.Token{
		AccessToken:  e.AccessToken,
		TokenType:    e.TokenType,
		RefreshToken: e.RefreshToken,
		Expiry:       e.Expiry,
		ExpiresIn:    e.ExpiresIn,
	}
	if len(e.Extra) > 0 {
		t = t.WithExtra(maps.Clone(e.Extra))
	}
	return t
}

// recordAD is the additional data authenticated with an encrypted record:
// its two header bytes and the name it is stored under, so that a record
// moved to another name fails to open.
func recordAD(hdr []byte, name string) []byte {
	ad := make([]byte, 0, 32+len(name))
	ad = append(ad, "tokenkeeper.filestore.record\x00"...)
	ad = append(ad, hdr[:2]...)
	return append(ad, name...)
}

// encodeRecord builds the stored value of tok under name: a version byte, a
// cipher byte and the JSON envelope, either after a CRC-32C (big endian) or,
// if aead is not nil, sealed behind a random nonce. Only the extras named in
// extraKeys are kept.
func encodeRecord(name string, tok *oauth2.Token, savedAt time.Time, extraKeys []string, aead cipher.AEAD) ([]byte, error) {
	e := envelope{
		Name:         name,
		SavedAt:      savedAt.UTC(),
		AccessToken:  tok.AccessToken,
		TokenType:    tok.TokenType,
		RefreshToken: tok.RefreshToken,
		ExpiresIn:    tok.ExpiresIn,
	}
	if !tok.Expiry.IsZero() {
		e.Expiry = tok.Expiry.UTC()
	}
	for _, k := range extraKeys {
		v := tok.Extra(k)
		if v == nil || v == "" {
			continue // absent (an absent url.Values key reads as "")
		}
		if _, err := json.Marshal(v); err != nil {
			return nil, newError(nil, nil, "token extra %q (of type %T) cannot be stored as JSON", k, v)
		}
		if e.Extra == nil {
			e.Extra = make(map[string]any)
		}
		e.Extra[k] = v
	}
	body, err := json.Marshal(&e)
	if err != nil {
		// Only a time outside years 0-9999 gets here; the text of the
		// error holds no token value, but keep it out anyway.
		return nil, newError(nil, nil, "token of %q cannot be encoded (expiry outside years 0-9999?)", name)
	}
	if aead == nil {
		out := make([]byte, 2+crcSize, 2+crcSize+len(body))
		out[0], out[1] = recordVersion, recordPlain
		binary.BigEndian.PutUint32(out[2:], recordCRC(out, name, body))
		return append(out, body...), nil
	}
	out := make([]byte, 2+nonceSize, 2+nonceSize+len(body)+aead.Overhead())
	out[0], out[1] = recordVersion, recordAES
	nonce := out[2 : 2+nonceSize]
	if _, err := rand.Read(nonce); err != nil {
		return nil, newError(nil, err, "reading random nonce")
	}
	out = aead.Seal(out, nonce, body, recordAD(out, name))
	clear(body)
	return out, nil
}

// decodeRecord is the inverse of encodeRecord. Every failure matches
// ErrCorrupt (or ErrUnsupportedVersion); none quotes the data.
func decodeRecord(name string, data []byte, aead cipher.AEAD) (*envelope, error) {
	if len(data) < 2 {
		return nil, newError(ErrCorrupt, nil, "record too short")
	}
	switch v := data[0]; {
	case v > recordVersion:
		return nil, newError(ErrUnsupportedVersion, nil, "record format %d is newer than this package's (%d)", v, recordVersion)
	case v != recordVersion:
		return nil, newError(ErrCorrupt, nil, "bad record format version %d", v)
	}
	var body []byte
	switch data[1] {
	case recordPlain:
		if aead != nil {
			return nil, newError(ErrCorrupt, nil, "unencrypted record in an encrypted store")
		}
		if len(data) < 2+crcSize {
			return nil, newError(ErrCorrupt, nil, "record too short")
		}
		body = data[2+crcSize:]
		if binary.BigEndian.Uint32(data[2:]) != recordCRC(data, name, body) {
			return nil, newError(ErrCorrupt, nil, "record checksum mismatch (damaged, or moved from another name)")
		}
	case recordAES:
		if aead == nil {
			return nil, newError(ErrCorrupt, nil, "encrypted record in an unencrypted store")
		}
		if len(data) < 2+nonceSize+aead.Overhead() {
			return nil, newError(ErrCorrupt, nil, "encrypted record too short")
		}
		var err error
		body, err = aead.Open(nil, data[2:2+nonceSize], data[2+nonceSize:], recordAD(data, name))
		if err != nil {
			return nil, newError(ErrCorrupt, nil, "record fails authentication (damaged, tampered with, or moved from another name)")
		}
		defer clear(body)
	default:
		return nil, newError(ErrCorrupt, nil, "unknown record cipher %d", data[1])
	}
	var e envelope
	if err := json.Unmarshal(body, &e); err != nil {
		return nil, newError(ErrCorrupt, nil, "record payload is not a valid token envelope")
	}
	if e.Name != name {
		return nil, newError(ErrCorrupt, nil, "record was saved under another name")
	}
	e.SavedAt, e.Expiry = e.SavedAt.UTC(), e.Expiry.UTC()
	if y := e.Expiry.Year(); y < 0 || y > 9999 {
		return nil, newError(ErrCorrupt, nil, "record expiry out of range")
	}
	if y := e.SavedAt.Year(); y < 0 || y > 9999 {
		return nil, newError(ErrCorrupt, nil, "record save time out of range")
	}
	for k, v := range e.Extra {
		if v == nil {
			delete(e.Extra, k)
		}
	}
	if len(e.Extra) == 0 {
		e.Extra = nil
	}
	return &e, nil
}

// redactKV keeps keys and values out of bbolt's consistency-check messages.
type redactKV struct{}

func (redactKV) KeyToString(k []byte) string   { return fmt.Sprintf("<key of %d bytes>", len(k)) }
func (redactKV) ValueToString(v []byte) string { return fmt.Sprintf("<value of %d bytes>", len(v)) }

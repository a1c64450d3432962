package badger

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	badgerdb "github.com/dgraph-io/badger/v4"

	"github.com/mdmauth/mdmauth/internal/store"
)

// Key layout. Every key starts with a one-byte kind:
//
//	t <hash:32>               token record (JSON), TTL = purge time
//	e <id>                    enrollment record (JSON)
//	x <id> 0x00 <hash:32>     index: token bound to enrollment (empty value), same TTL as the token
//	l <key>                   login state (JSON), TTL = its expiry
//	s <name>                  secret (raw bytes)
//	c <hash:32>               authorization code (JSON), TTL = its expiry plus codeGrace
//	f <id>                    token family (JSON), TTL = purge time
//	y <id> 0x00 <hash:32>     index: token issued in family (empty value), same TTL as the token
//	u <len><iss><len><sub><id> index: enrollment owned by the user (empty value), no TTL
//	g <len><iss><len><sub> t <hash:32>
//	                          index: token issued to the user (empty value), same TTL as the token
//	g <len><iss><len><sub> f <id>
//	                          index: token family of the user (empty value), same TTL as the family
//	m <name>                  schema marker (empty value), no TTL
//	p                         never written; read by Ping
//
// In the user and grant indexes, <len> is the uvarint length of the string
// that follows it. The encoding is self-delimiting, so the prefix of one
// (iss, sub) is never a prefix of another's keys, whatever bytes (zero bytes
// included) iss and sub contain. Records without an owner (empty iss and
// sub) are in neither index.
const (
	kindToken       = 't'
	kindEnrollment  = 'e'
	kindIndex       = 'x'
	kindLoginState  = 'l'
	kindSecret      = 's'
	kindCode        = 'c'
	kindFamily      = 'f'
	kindFamilyIndex = 'y'
	kindUserIndex   = 'u'
	kindGrantIndex  = 'g'
	kindMeta        = 'm'
)

// Kinds of grant in the grant index, after the owner.
const (
	grantToken  = 't'
	grantFamily = 'f'
)

var pingKey = []byte{'p'}

func tokenKey(h store.Hash) []byte { return withHash(kindToken, h) }

func codeKey(h store.Hash) []byte { return withHash(kindCode, h) }

func enrollmentKey(id string) []byte { return withKind(kindEnrollment, id) }

func familyKey(id string) []byte { return withKind(kindFamily, id) }

func loginStateKey(key string) []byte { return withKind(kindLoginState, key) }

func secretKey(name string) []byte { return withKind(kindSecret, name) }

func withKind(kind byte, s string) []byte {
	k := make([]byte, 0, 1+len(s))
	return append(append(k, kind), s...)
}

func withHash(kind byte, h store.Hash) []byte {
	k := make([]byte, 0, 1+len(h))
	return append(append(k, kind), h[:]...)
}

// indexPrefix is the common prefix of the index keys of one enrollment.
func indexPrefix(id string) []byte { return listPrefix(kindIndex, id) }

func indexKey(id string, h store.Hash) []byte { return append(indexPrefix(id), h[:]...) }

// familyIndexPrefix is the common prefix of the index keys of one family.
func familyIndexPrefix(id string) []byte { return listPrefix(kindFamilyIndex, id) }

func familyIndexKey(id string, h store.Hash) []byte { return append(familyIndexPrefix(id), h[:]...) }

// listPrefix is kind, id and a zero byte, with room for a hash after it.
func listPrefix(kind byte, id string) []byte {
	k := make([]byte, 0, 2+len(id)+len(store.Hash{}))
	k = append(k, kind)
	k = append(k, id...)
	return append(k, 0)
}

// indexHash extracts the token hash from an index key under prefix. It
// reports false for keys of other enrollments or families whose id merely
// starts with this one's id and a zero byte.
func indexHash(prefix, key []byte) (store.Hash, bool) {
	var h store.Hash
	if len(key) != len(prefix)+len(h) {
		return h, false
	}
	copy(h[:], key[len(prefix):])
	return h, true
}

// ownerPrefix is kind followed by the self-delimiting encoding of (iss,
// sub), with room for extra bytes after it.
func ownerPrefix(kind byte, iss, sub string, extra int) []byte {
	k := make([]byte, 0, 1+2*binary.MaxVarintLen64+len(iss)+len(sub)+extra)
	k = append(k, kind)
	k = binary.AppendUvarint(k, uint64(len(iss)))
	k = append(k, iss...)
	k = binary.AppendUvarint(k, uint64(len(sub)))
	return append(k, sub...)
}

// userIndexPrefix is the common prefix of the user index keys of the
// enrollments owned by (iss, sub).
func userIndexPrefix(iss, sub string) []byte { return ownerPrefix(kindUserIndex, iss, sub, 0) }

func userIndexKey(iss, sub, id string) []byte { return append(userIndexPrefix(iss, sub), id...) }

// grantPrefix is the common prefix of the grant index keys of one kind of
// grant (grantToken or grantFamily) of (iss, sub).
func grantPrefix(iss, sub string, grant byte) []byte {
	return append(ownerPrefix(kindGrantIndex, iss, sub, 1+len(store.Hash{})), grant)
}

// tokenGrantKey is the grant index key of t; nil if t is nil or has no
// owner.
func tokenGrantKey(t *store.Token) []byte {
	if t == nil || !hasOwner(t.Issuer, t.Subject) {
		return nil
	}
	return append(grantPrefix(t.Issuer, t.Subject, grantToken), t.Hash[:]...)
}

// familyGrantKey is the grant index key of f; nil if f is nil or has no
// owner.
func familyGrantKey(f *store.Family) []byte {
	if f == nil || !hasOwner(f.Issuer, f.Subject) {
		return nil
	}
	return append(grantPrefix(f.Issuer, f.Subject, grantFamily), f.ID...)
}

// hasOwner reports whether a record of (iss, sub) has an owner to be
// indexed under.
func hasOwner(iss, sub string) bool { return iss != "" || sub != "" }

// Schema markers: each is present once every record is in the index it
// names; see backfillUserIndex and backfillGrantIndex.
var (
	userIndexMarker  = withKind(kindMeta, "user-index")
	grantIndexMarker = withKind(kindMeta, "grant-index")
)

// getJSON decodes the record under key into v; store.ErrNotFound if absent.
// what names the record in decoding errors.
func getJSON(txn *badgerdb.Txn, key []byte, v any, what string) error {
	item, err := txn.Get(key)
	if errors.Is(err, badgerdb.ErrKeyNotFound) {
		return store.ErrNotFound
	}
	if err != nil {
		return err
	}
	return decode(item, v, what)
}

// decode unmarshals the JSON value of item into v; what names the record
// in errors.
func decode(item *badgerdb.Item, v any, what string) error {
	if err := item.Value(func(b []byte) error { return json.Unmarshal(b, v) }); err != nil {
		return fmt.Errorf("badger: %s: %w", what, err)
	}
	return nil
}

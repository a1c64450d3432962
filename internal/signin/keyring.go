package signin

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// Keyring encrypts the identity provider's refresh tokens at rest
// (AES-256-GCM). Each ciphertext names its key, so a new key can be added
// as current while older ciphertexts still decrypt.
type Keyring struct {
	current string
	keys    map[string]cipher.AEAD
}

// ParseKeyring reads "id:base64key[,id:base64key...]"; the first key is
// current. Keys are 32 bytes (standard or URL base64).
func ParseKeyring(spec string) (*Keyring, error) {
	k := &Keyring{keys: map[string]cipher.AEAD{}}
	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		id, b64, ok := strings.Cut(item, ":")
		if !ok || id == "" {
			return nil, errors.New("keyring: want id:base64key")
		}
		raw, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			raw, err = base64.RawURLEncoding.DecodeString(strings.TrimRight(b64, "="))
		}
		if err != nil || len(raw) != 32 {
			return nil, fmt.Errorf("keyring: key %q must be 32 bytes of base64", id)
		}
		if err := k.Add(id, raw); err != nil {
			return nil, err
		}
	}
	if k.current == "" {
		return nil, errors.New("keyring: no keys")
	}
	return k, nil
}

// NewKeyring returns a keyring with one key.
func NewKeyring(id string, key []byte) (*Keyring, error) {
	k := &Keyring{keys: map[string]cipher.AEAD{}}
	return k, k.Add(id, key)
}

// Add adds a key; the first key added is current.
func (k *Keyring) Add(id string, key []byte) error {
	if _, dup := k.keys[id]; dup {
		return fmt.Errorf("keyring: duplicate key id %q", id)
	}
	block, err := aes.NewCipher(key)
	if err != nil || len(key) != 32 {
		return fmt.Errorf("keyring: key %q must be 32 bytes", id)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return err
	}
	k.keys[id] = aead
	if k.current == "" {
		k.current = id
	}
	return nil
}

// Seal encrypts plaintext under the current key, bound to aad.
func (k *Keyring) Seal(plaintext, aad []byte) (ciphertext []byte, keyID string, err error) {
	aead := k.keys[k.current]
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, "", err
	}
	return aead.Seal(nonce, nonce, plaintext, aad), k.current, nil
}

// Open decrypts a ciphertext made by Seal with key keyID.
func (k *Keyring) Open(ciphertext []byte, keyID string, aad []byte) ([]byte, error) {
	aead, ok := k.keys[keyID]
	if !ok {
		return nil, fmt.Errorf("keyring: unknown key %q", keyID)
	}
	if len(ciphertext) < aead.NonceSize() {
		return nil, errors.New("keyring: ciphertext too short")
	}
	n := aead.NonceSize()
	return aead.Open(nil, ciphertext[:n], ciphertext[n:], aad)
}

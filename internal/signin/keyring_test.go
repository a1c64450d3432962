package signin

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
)

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func TestKeyringRoundTrip(t *testing.T) {
	k, err := NewKeyring("k1", testKey(1))
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("rt-provider-refresh-token")
	ad := aad("https://idp.example.com", "alice-sub")
	ct, kid, err := k.Seal(secret, ad)
	if err != nil {
		t.Fatal(err)
	}
	if kid != "k1" {
		t.Errorf("key id %q, want k1", kid)
	}
	if bytes.Contains(ct, secret) {
		t.Errorf("the ciphertext contains the plaintext")
	}
	// 12-byte nonce, 16-byte tag.
	if len(ct) != 12+len(secret)+16 {
		t.Errorf("ciphertext of %d bytes, want %d", len(ct), 12+len(secret)+16)
	}
	pt, err := k.Open(ct, kid, ad)
	if err != nil || !bytes.Equal(pt, secret) {
		t.Fatalf("Open: %q, %v", pt, err)
	}
	// A fresh nonce every time.
	ct2, _, err := k.Seal(secret, ad)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(ct[:12], ct2[:12]) || bytes.Equal(ct, ct2) {
		t.Errorf("two seals share a nonce")
	}
	// The empty plaintext round-trips too.
	ct3, _, err := k.Seal(nil, ad)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := k.Open(ct3, "k1", ad); err != nil || len(pt) != 0 {
		t.Errorf("empty plaintext: %q, %v", pt, err)
	}
}

// Open refuses anything but the exact ciphertext, key and associated data.
func TestKeyringOpenRefuses(t *testing.T) {
	k, err := ParseKeyring("k2:" + base64.StdEncoding.EncodeToString(testKey(2)) + ",k1:" + base64.StdEncoding.EncodeToString(testKey(1)))
	if err != nil {
		t.Fatal(err)
	}
	ad := aad("https://idp.example.com", "alice-sub")
	ct, kid, err := k.Seal([]byte("secret"), ad)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		c := bytes.Clone(ct)
		c[i] ^= 1
		return c
	}
	for name, c := range map[string]struct {
		ct  []byte
		kid string
		aad []byte
	}{
		"other subject":       {ct, kid, aad("https://idp.example.com", "bob-sub")},
		"other issuer":        {ct, kid, aad("https://other.example.com", "alice-sub")},
		"subject shifted":     {ct, kid, aad("https://idp.example.com\x00alice", "sub")},
		"no aad":              {ct, kid, nil},
		"other existing key":  {ct, "k1", ad},
		"unknown key":         {ct, "k9", ad},
		"empty key id":        {ct, "", ad},
		"nonce changed":       {flip(0), kid, ad},
		"ciphertext changed":  {flip(12), kid, ad},
		"tag changed":         {flip(len(ct) - 1), kid, ad},
		"truncated":           {ct[:len(ct)-1], kid, ad},
		"shorter than nonce":  {ct[:11], kid, ad},
		"only the nonce":      {ct[:12], kid, ad},
		"empty":               {nil, kid, ad},
		"ciphertext appended": {append(bytes.Clone(ct), 0), kid, ad},
	} {
		t.Run(name, func(t *testing.T) {
			if pt, err := k.Open(c.ct, c.kid, c.aad); err == nil {
				t.Errorf("opened to %q", pt)
			}
		})
	}
}

// A new current key is used for new ciphertexts; older ones open with the
// key they name as long as it stays in the keyring.
func TestKeyringRotation(t *testing.T) {
	b64 := func(b byte) string { return base64.StdEncoding.EncodeToString(testKey(b)) }
	ad := []byte("ad")
	old, err := ParseKeyring("2024:" + b64(1))
	if err != nil {
		t.Fatal(err)
	}
	ctOld, kidOld, err := old.Seal([]byte("old"), ad)
	if err != nil || kidOld != "2024" {
		t.Fatalf("seal: %q, %v", kidOld, err)
	}
	rotated, err := ParseKeyring("2025:" + b64(2) + ", 2024:" + b64(1))
	if err != nil {
		t.Fatal(err)
	}
	ctNew, kidNew, err := rotated.Seal([]byte("new"), ad)
	if err != nil || kidNew != "2025" {
		t.Fatalf("the first key is not current: %q, %v", kidNew, err)
	}
	if pt, err := rotated.Open(ctOld, kidOld, ad); err != nil || string(pt) != "old" {
		t.Errorf("old ciphertext after rotation: %q, %v", pt, err)
	}
	if _, err := old.Open(ctNew, kidNew, ad); err == nil {
		t.Errorf("the old keyring opened a ciphertext of the new key")
	}
	retired, err := ParseKeyring("2025:" + b64(2))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := retired.Open(ctOld, kidOld, ad); err == nil {
		t.Errorf("a retired key still opens")
	}
	if pt, err := retired.Open(ctNew, kidNew, ad); err != nil || string(pt) != "new" {
		t.Errorf("new ciphertext: %q, %v", pt, err)
	}
	// Add appends without changing the current key.
	if err := retired.Add("2026", testKey(3)); err != nil {
		t.Fatal(err)
	}
	if _, kid, _ := retired.Seal([]byte("x"), ad); kid != "2025" {
		t.Errorf("Add changed the current key to %q", kid)
	}
}

func TestParseKeyring(t *testing.T) {
	key := testKey(7)
	std := base64.StdEncoding.EncodeToString(key)
	url := base64.URLEncoding.EncodeToString(key)
	rawURL := base64.RawURLEncoding.EncodeToString(key)
	// A key whose encodings differ between the alphabets.
	odd := bytes.Repeat([]byte{0xfb, 0xff}, 16)
	oddStd, oddURL := base64.StdEncoding.EncodeToString(odd), base64.RawURLEncoding.EncodeToString(odd)
	for name, c := range map[string]struct {
		spec    string
		current string
		ids     []string
	}{
		"one key, standard base64": {"k1:" + std, "k1", []string{"k1"}},
		"URL base64 with padding":  {"k1:" + url, "k1", []string{"k1"}},
		"raw URL base64":           {"k1:" + rawURL, "k1", []string{"k1"}},
		"standard with + and /":    {"k1:" + oddStd, "k1", []string{"k1"}},
		"URL with - and _":         {"k1:" + oddURL, "k1", []string{"k1"}},
		"two keys, first current":  {"new:" + std + ",old:" + oddStd, "new", []string{"new", "old"}},
		"spaces and empty items":   {" new:" + std + " , ,old:" + oddURL + ",", "new", []string{"new", "old"}},
		"id with dots and dashes":  {"2025-01.a:" + std, "2025-01.a", []string{"2025-01.a"}},
	} {
		t.Run(name, func(t *testing.T) {
			k, err := ParseKeyring(c.spec)
			if err != nil {
				t.Fatal(err)
			}
			if k.current != c.current || len(k.keys) != len(c.ids) {
				t.Errorf("current %q, %d keys; want %q, %d", k.current, len(k.keys), c.current, len(c.ids))
			}
			for _, id := range c.ids {
				if _, ok := k.keys[id]; !ok {
					t.Errorf("key %q missing", id)
				}
			}
		})
	}
	// The same key decodes the same from every alphabet.
	a, _ := ParseKeyring("k:" + oddStd)
	b, _ := ParseKeyring("k:" + oddURL)
	ct, _, err := a.Seal([]byte("x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Open(ct, "k", nil); err != nil {
		t.Errorf("standard and URL base64 give different keys: %v", err)
	}
}

func TestParseKeyringErrors(t *testing.T) {
	key := base64.StdEncoding.EncodeToString(testKey(7))
	for name, spec := range map[string]string{
		"empty":              "",
		"only separators":    " , ,",
		"no colon":           "k1" + key,
		"no id":              ":" + key,
		"no key":             "k1:",
		"not base64":         "k1:not*base64!",
		"16-byte key":        "k1:" + base64.StdEncoding.EncodeToString(testKey(1)[:16]),
		"24-byte key":        "k1:" + base64.StdEncoding.EncodeToString(testKey(1)[:24]),
		"31-byte key":        "k1:" + base64.StdEncoding.EncodeToString(testKey(1)[:31]),
		"33-byte key":        "k1:" + base64.StdEncoding.EncodeToString(append(testKey(1), 1)),
		"hex key":            "k1:" + strings.Repeat("ab", 32),
		"duplicate id":       "k1:" + key + ",k1:" + key,
		"second key bad":     "k1:" + key + ",k2:short",
		"second key without": "k1:" + key + ",k2",
	} {
		t.Run(name, func(t *testing.T) {
			k, err := ParseKeyring(spec)
			if err == nil {
				t.Fatalf("accepted %q", spec)
			}
			if k != nil {
				t.Errorf("a keyring returned with the error")
			}
			if strings.Contains(err.Error(), key) {
				t.Errorf("the error shows the key: %v", err)
			}
		})
	}
	if _, err := NewKeyring("k1", testKey(1)[:16]); err == nil {
		t.Errorf("NewKeyring accepted a 16-byte key")
	}
	k, _ := NewKeyring("k1", testKey(1))
	if err := k.Add("k1", testKey(2)); err == nil {
		t.Errorf("Add accepted a duplicate id")
	}
}

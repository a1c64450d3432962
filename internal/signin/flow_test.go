package signin

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
)

var flowKey = bytes.Repeat([]byte{0x5a}, 32)

func testSigner() Signer { return Signer{Key: flowKey, MaxAge: 24 * time.Hour} }

// pathSafe is the shape of an encoded flow: two base64url parts, nothing
// that a URL path or the device's query replacement could alter.
var pathSafe = regexp.MustCompile(`^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$`)

// signRaw signs an arbitrary payload with s's key, bypassing Encode.
func signRaw(s Signer, payload string) string {
	return payload + "." + base64.RawURLEncoding.EncodeToString(mac(s.Key, payload))
}

func jsonPayload(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func TestSignerRoundTrip(t *testing.T) {
	s := testSigner()
	for _, f := range []Flow{
		{Kind: KindEnroll, Mode: "byod", ModelFamily: "iPhone", IssuedAt: epoch.Add(987654321 * time.Nanosecond)},
		{Kind: KindEnroll, Mode: "adde", IssuedAt: epoch.In(time.FixedZone("CET", 3600))},
		{Kind: KindReauth, Mode: "byod", ModelFamily: "Mac", EnrollmentID: "A1B2C3D4-0000-1111-2222-333344445555", IssuedAt: epoch},
	} {
		v, err := s.Encode(f)
		if err != nil {
			t.Fatal(err)
		}
		if !pathSafe.MatchString(v) {
			t.Errorf("encoded flow %q is not a plain path segment", v)
		}
		got, err := s.Decode(v, epoch.Add(time.Hour))
		if err != nil {
			t.Fatalf("Decode(Encode(%+v)): %v", f, err)
		}
		want := f
		want.IssuedAt = f.IssuedAt.UTC().Truncate(time.Second)
		if got.Kind != want.Kind || got.Mode != want.Mode || got.ModelFamily != want.ModelFamily ||
			got.EnrollmentID != want.EnrollmentID || !got.IssuedAt.Equal(want.IssuedAt) {
			t.Errorf("round trip: got %+v, want %+v", got, want)
		}
	}
}

func TestSignerEncodeRefusesShortKey(t *testing.T) {
	for _, key := range [][]byte{nil, {}, bytes.Repeat([]byte{1}, 31)} {
		if v, err := (Signer{Key: key}).Encode(enrollFlow); err == nil {
			t.Errorf("Encode with a %d-byte key = %q, want an error", len(key), v)
		}
	}
}

func TestSignerDecodeRefuses(t *testing.T) {
	s := testSigner()
	now := epoch
	good := func(f Flow) string {
		t.Helper()
		if f.IssuedAt.IsZero() {
			f.IssuedAt = now
		}
		v, err := s.Encode(f)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	valid := good(enrollFlow)
	payload, sig, _ := strings.Cut(valid, ".")

	// A payload changed to mode adde, keeping the signature of byod.
	tampered := jsonPayload(t, Flow{Kind: KindEnroll, Mode: "adde", ModelFamily: "iPhone", IssuedAt: now}) + "." + sig
	flipped := []byte(sig)
	if flipped[0] == 'A' {
		flipped[0] = 'B'
	} else {
		flipped[0] = 'A'
	}
	other := Signer{Key: bytes.Repeat([]byte{0x33}, 32), MaxAge: s.MaxAge}
	otherV, err := other.Encode(Flow{Kind: KindEnroll, Mode: "byod", IssuedAt: now})
	if err != nil {
		t.Fatal(err)
	}
	// The longest flow over the limit.
	long := good(Flow{Kind: KindEnroll, Mode: "byod", ModelFamily: strings.Repeat("x", 800)})

	cases := map[string]string{
		"empty":                   "",
		"no dot":                  payload + sig,
		"dot only":                ".",
		"payload only":            payload + ".",
		"signature only":          "." + sig,
		"tampered payload":        tampered,
		"tampered signature":      payload + "." + string(flipped),
		"truncated signature":     payload + "." + sig[:len(sig)-2],
		"extended signature":      valid + "AA",
		"second dot":              valid + ".x",
		"wrong key":               otherV,
		"garbage":                 "!!!.???",
		"padded base64":           payload + "." + sig + "==",
		"signed non-base64":       signRaw(s, "not*base64"),
		"signed non-json":         signRaw(s, base64.RawURLEncoding.EncodeToString([]byte("not json"))),
		"signed json array":       signRaw(s, jsonPayload(t, []string{"enroll"})),
		"signed unknown kind":     signRaw(s, jsonPayload(t, Flow{Kind: "admin", Mode: "byod", IssuedAt: now})),
		"signed empty kind":       signRaw(s, jsonPayload(t, Flow{Mode: "byod", IssuedAt: now})),
		"signed without mode":     signRaw(s, jsonPayload(t, Flow{Kind: KindEnroll, IssuedAt: now})),
		"too old":                 good(Flow{Kind: KindEnroll, Mode: "byod", IssuedAt: now.Add(-s.MaxAge - time.Second)}),
		"much too old":            good(Flow{Kind: KindReauth, Mode: "byod", IssuedAt: now.AddDate(-1, 0, 0)}),
		"from the future":         good(Flow{Kind: KindEnroll, Mode: "byod", IssuedAt: now.Add(5*time.Minute + time.Second)}),
		"over the length limit":   long,
		"valid then long garbage": valid + strings.Repeat("A", 1024),
	}
	if len(long) <= 1024 {
		t.Fatalf("test flow is only %d bytes", len(long))
	}
	for name, v := range cases {
		t.Run(name, func(t *testing.T) {
			f, err := s.Decode(v, now)
			if !errors.Is(err, ErrBadFlow) {
				t.Fatalf("Decode = %+v, %v; want ErrBadFlow", f, err)
			}
			if f != (Flow{}) {
				t.Errorf("refused Decode returned %+v", f)
			}
		})
	}
}

func TestSignerDecodeBoundaries(t *testing.T) {
	s := testSigner()
	now := epoch
	enc := func(s Signer, f Flow) string {
		t.Helper()
		v, err := s.Encode(f)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	accept := map[string]struct {
		s Signer
		v string
	}{
		"exactly MaxAge old":         {s, enc(s, Flow{Kind: KindEnroll, Mode: "byod", IssuedAt: now.Add(-s.MaxAge)})},
		"five minutes in the future": {s, enc(s, Flow{Kind: KindEnroll, Mode: "byod", IssuedAt: now.Add(5 * time.Minute)})},
		"no MaxAge, a year old":      {Signer{Key: flowKey}, enc(s, Flow{Kind: KindReauth, Mode: "adde", IssuedAt: now.AddDate(-1, 0, 0)})},
	}
	for name, c := range accept {
		if _, err := c.s.Decode(c.v, now); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}

	// The longest flow within the 1024-byte limit is accepted; the next
	// longer one is not.
	var within, over string
	for n := 0; over == ""; n++ {
		v := enc(s, Flow{Kind: KindEnroll, Mode: "byod", ModelFamily: strings.Repeat("m", n), IssuedAt: now})
		if len(v) <= 1024 {
			within = v
		} else {
			over = v
		}
	}
	if _, err := s.Decode(within, now); err != nil {
		t.Errorf("%d-byte flow refused: %v", len(within), err)
	}
	if _, err := s.Decode(over, now); !errors.Is(err, ErrBadFlow) {
		t.Errorf("%d-byte flow accepted", len(over))
	}
}

// A Signer without a usable key must not accept flows signed with that
// same missing key: Encode refuses such keys, Decode has to as well, or a
// zero Signer verifies anyone's forgery.
func TestSignerDecodeRefusesShortKey(t *testing.T) {
	for _, key := range [][]byte{nil, []byte("short")} {
		s := Signer{Key: key}
		forged := signRaw(s, jsonPayload(t, Flow{Kind: KindEnroll, Mode: "adde", IssuedAt: epoch}))
		if f, err := s.Decode(forged, epoch); !errors.Is(err, ErrBadFlow) {
			t.Errorf("Decode with a %d-byte key accepted a flow anyone can sign: %+v", len(key), f)
		}
	}
}

// downSecrets cannot be read until up.
type downSecrets struct{ up atomic.Bool }

func (d *downSecrets) Secret(context.Context, string, func() ([]byte, error)) ([]byte, error) {
	if !d.up.Load() {
		return nil, store.ErrUnavailable
	}
	return []byte("0123456789abcdef0123456789abcdef"), nil
}

// A key loaded on first use: while the store is down, Encode and Decode
// say so (ErrKeyUnavailable, which callers answer 503), never "bad link".
func TestSignerKeyRef(t *testing.T) {
	d := &downSecrets{}
	s := Signer{KeyRef: store.NewSecretRef(d, "signin-flow-hmac", nil), MaxAge: time.Hour}
	now := time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)
	if _, err := s.Encode(Flow{Kind: KindEnroll, Mode: "byod", IssuedAt: now}); !errors.Is(err, ErrKeyUnavailable) || !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Encode with the store down: %v", err)
	}
	if _, err := s.Decode("e30.AAAA", now); !errors.Is(err, ErrKeyUnavailable) || errors.Is(err, ErrBadFlow) {
		t.Fatalf("Decode with the store down: %v", err)
	}
	d.up.Store(true)
	v, err := s.Encode(Flow{Kind: KindEnroll, Mode: "byod", IssuedAt: now})
	if err != nil {
		t.Fatal(err)
	}
	fixed := Signer{Key: []byte("0123456789abcdef0123456789abcdef"), MaxAge: time.Hour}
	if f, err := fixed.Decode(v, now); err != nil || f.Mode != "byod" {
		t.Fatalf("the loaded key is not the store's: %+v, %v", f, err)
	}
}

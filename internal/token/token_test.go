package token

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
)

// fixed returns n bytes of b repeated, as a reader.
func fixed(b byte, n int) io.Reader { return bytes.NewReader(bytes.Repeat([]byte{b}, n)) }

// failingReader fails every read.
type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("no entropy") }

func TestMint(t *testing.T) {
	seed := make([]byte, Size)
	for i := range seed {
		seed[i] = byte(i * 7)
	}
	raw, h, err := Mint(bytes.NewReader(seed))
	if err != nil {
		t.Fatal(err)
	}
	if want := base64.RawURLEncoding.EncodeToString(seed); raw != want {
		t.Errorf("Mint = %q, want the base64url of the random bytes %q", raw, want)
	}
	if len(raw) != 43 {
		t.Errorf("len = %d, want 43", len(raw))
	}
	if h != sha256.Sum256([]byte(raw)) {
		t.Error("hash is not the SHA-256 of the token")
	}
	if !WellFormed(raw) {
		t.Error("minted token is not WellFormed")
	}

	seen := map[string]bool{}
	for i := 0; i < 200; i++ {
		raw, h, err := Mint(nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(raw) != 43 || strings.Trim(raw, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
			t.Fatalf("token %d has the wrong shape (len %d)", i, len(raw))
		}
		if !WellFormed(raw) || h != HashOf(raw) {
			t.Fatalf("token %d: not well-formed or hash mismatch", i)
		}
		if seen[raw] {
			t.Fatalf("token %d repeats an earlier one", i)
		}
		seen[raw] = true
	}
}

func TestMintRandomnessFailure(t *testing.T) {
	for name, r := range map[string]io.Reader{
		"error": failingReader{},
		"short": fixed(1, Size-1),
	} {
		t.Run(name, func(t *testing.T) {
			raw, h, err := Mint(r)
			if err == nil {
				t.Fatal("Mint succeeded without enough randomness")
			}
			if raw != "" || h != (store.Hash{}) {
				t.Errorf("Mint returned a token alongside the error")
			}
		})
	}
}

func TestWellFormed(t *testing.T) {
	minted, _, err := Mint(fixed(0xfb, Size)) // base64url of 0xfb bytes uses '-' and '_'
	if err != nil {
		t.Fatal(err)
	}
	if !strings.ContainsAny(minted, "-_") {
		t.Fatalf("fixture %q should exercise the URL-safe alphabet", minted)
	}
	a43 := strings.Repeat("A", 43)
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{"minted", minted, true},
		{"all letters", a43, true},
		{"digits and url-safe", strings.Repeat("0-_9", 10) + "abc", true},
		{"empty", "", false},
		{"one short", a43[:42], false},
		{"one long", a43 + "A", false},
		{"padded std base64", base64.StdEncoding.EncodeToString(make([]byte, Size)), false},
		{"plus", a43[:42] + "+", false},
		{"slash", "/" + a43[1:], false},
		{"padding char", a43[:42] + "=", false},
		{"space", a43[:20] + " " + a43[21:], false},
		{"dot (JWT-like)", a43[:10] + "." + a43[11:], false},
		{"NUL", a43[:42] + "\x00", false},
		{"non-ASCII", a43[:41] + "é", false}, // 43 bytes
		{"hex of 32 bytes", strings.Repeat("ab", 32), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := WellFormed(tt.in); got != tt.want {
				t.Errorf("WellFormed(len %d) = %v, want %v", len(tt.in), got, tt.want)
			}
		})
	}
}

func TestHashOf(t *testing.T) {
	const tok = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ"
	h1, h2 := HashOf(tok), HashOf(tok)
	if h1 != h2 {
		t.Fatal("HashOf is not stable")
	}
	if h1 != sha256.Sum256([]byte(tok)) {
		t.Fatal("HashOf is not SHA-256")
	}
	if HashOf(tok[:42]+"R") == h1 {
		t.Fatal("different tokens share a hash")
	}
	id := h1.ID()
	if len(id) != 24 || strings.Trim(id, "0123456789abcdef") != "" {
		t.Errorf("ID = %q, want 24 lowercase hex digits", id)
	}
	if strings.Contains(tok, id) {
		t.Error("ID reveals the token")
	}
}

func TestLifetimeValidate(t *testing.T) {
	tests := []struct {
		name string
		l    Lifetime
		ok   bool
	}{
		{"typical", Lifetime{TTL: 30 * 24 * time.Hour, Jitter: 0.1, Floor: DefaultFloor}, true},
		{"no jitter, no floor", Lifetime{TTL: time.Minute}, true},
		{"ttl equals floor", Lifetime{TTL: time.Hour, Floor: time.Hour}, true},
		{"jitter just below half", Lifetime{TTL: time.Hour, Jitter: 0.49}, true},
		{"zero ttl", Lifetime{}, false},
		{"negative ttl", Lifetime{TTL: -time.Hour}, false},
		{"negative jitter", Lifetime{TTL: time.Hour, Jitter: -0.01}, false},
		{"jitter half", Lifetime{TTL: time.Hour, Jitter: 0.5}, false},
		{"jitter above one", Lifetime{TTL: time.Hour, Jitter: 1.5}, false},
		{"ttl below floor", Lifetime{TTL: 30 * time.Minute, Floor: DefaultFloor}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.l.Validate()
			if tt.ok && err != nil {
				t.Fatalf("Validate = %v, want nil", err)
			}
			if !tt.ok && !errors.Is(err, ErrLifetime) {
				t.Fatalf("Validate = %v, want ErrLifetime", err)
			}
		})
	}
}

func TestLifetimeExpiry(t *testing.T) {
	now := time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)
	// Jitter 0.25 and TTL 8h keep the arithmetic exact.
	l := Lifetime{TTL: 8 * time.Hour, Jitter: 0.25, Floor: time.Hour}
	tests := []struct {
		name string
		l    Lifetime
		r    io.Reader
		want time.Duration
	}{
		{"lowest draw", l, fixed(0x00, 8), 6 * time.Hour},
		{"quarter draw", l, bytes.NewReader([]byte{0x40, 0, 0, 0, 0, 0, 0, 0}), 7 * time.Hour},
		{"middle draw", l, bytes.NewReader([]byte{0x80, 0, 0, 0, 0, 0, 0, 0}), 8 * time.Hour},
		{"three-quarter draw", l, bytes.NewReader([]byte{0xc0, 0, 0, 0, 0, 0, 0, 0}), 9 * time.Hour},
		{"no jitter reads nothing", Lifetime{TTL: 8 * time.Hour}, failingReader{}, 8 * time.Hour},
		{"floor lifts a short draw", Lifetime{TTL: time.Hour, Jitter: 0.25, Floor: time.Hour}, fixed(0x00, 8), time.Hour},
		{"floor lifts an unvalidated ttl", Lifetime{TTL: time.Minute, Floor: time.Hour}, nil, time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.l.Expiry(now, tt.r)
			if err != nil {
				t.Fatal(err)
			}
			if d := got.Sub(now); d != tt.want {
				t.Errorf("lifetime = %s, want %s", d, tt.want)
			}
		})
	}

	t.Run("highest draw stays below ttl plus jitter", func(t *testing.T) {
		got, err := l.Expiry(now, fixed(0xff, 8))
		if err != nil {
			t.Fatal(err)
		}
		if d := got.Sub(now); d >= 10*time.Hour || d < 10*time.Hour-time.Microsecond {
			t.Errorf("lifetime = %s, want just below 10h", d)
		}
	})

	t.Run("random draws stay in bounds", func(t *testing.T) {
		tests := []Lifetime{
			{TTL: 30 * 24 * time.Hour, Jitter: 0.1, Floor: DefaultFloor},
			{TTL: 90 * time.Minute, Jitter: 0.49, Floor: DefaultFloor}, // floor cuts into the range
		}
		for _, l := range tests {
			lo := time.Duration(float64(l.TTL) * (1 - l.Jitter))
			hi := time.Duration(float64(l.TTL) * (1 + l.Jitter))
			lo = max(lo, l.Floor)
			var sawLow, sawHigh bool
			for i := 0; i < 2000; i++ {
				got, err := l.Expiry(now, nil)
				if err != nil {
					t.Fatal(err)
				}
				d := got.Sub(now)
				if d < lo || d > hi || d < l.Floor {
					t.Fatalf("%+v: lifetime %s outside [%s, %s]", l, d, lo, hi)
				}
				sawLow = sawLow || d < l.TTL
				sawHigh = sawHigh || d > l.TTL
			}
			if !sawLow || !sawHigh {
				t.Errorf("%+v: 2000 draws never spread both ways around the TTL", l)
			}
		}
	})

	t.Run("randomness failure", func(t *testing.T) {
		for name, r := range map[string]io.Reader{"error": failingReader{}, "short": fixed(0, 7)} {
			if _, err := l.Expiry(now, r); err == nil {
				t.Errorf("%s: Expiry succeeded without randomness", name)
			}
		}
	})
}

func BenchmarkMint(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Mint(nil); err != nil {
			b.Fatal(err)
		}
	}
}

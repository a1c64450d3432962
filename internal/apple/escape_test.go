package apple

import "testing"

func TestEscape(t *testing.T) {
	for _, tc := range []struct{ in, keep, want string }{
		{"a+b@example.com", "@+", "a+b@example.com"},
		{"a+b@example.com", "", "a%2Bb%40example.com"},
		{"a b", "", "a%20b"},
		{"A-Z_a.z~0", "", "A-Z_a.z~0"},
		{"x&y=z/?#", "@+", "x%26y%3Dz%2F%3F%23"},
		{"\xff\x00", "", "%FF%00"},
		{"", "", ""},
	} {
		if got := Escape(tc.in, tc.keep); got != tc.want {
			t.Errorf("Escape(%q, %q) = %q, want %q", tc.in, tc.keep, got, tc.want)
		}
	}
}

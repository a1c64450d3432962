package apple

import (
	"strings"
	"testing"
)

func TestParseBearer(t *testing.T) {
	long := strings.Repeat("a", maxAuthorizationHeader-len("Bearer "))
	tests := []struct {
		header string
		token  string
		ok     bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer abc", "abc", true},
		{"BEARER abc", "abc", true},
		{"BeArEr abc", "abc", true},
		{"Bearer Zm9v-YmFy_baz.qux~1+2/3", "Zm9v-YmFy_baz.qux~1+2/3", true},
		{"Bearer abc==", "abc==", true},
		{"Bearer " + long, long, true},
		{"Bearer " + long + "a", "", false},
		{"", "", false},
		{"Bearer", "", false},
		{"Bearer ", "", false},
		{"Bearer  abc", "", false},
		{"Bearer\tabc", "", false},
		{"Bearerabc", "", false},
		{"Basic abc", "", false},
		{"Bearer abc ", "", false},
		{" Bearer abc", "", false},
		{"Bearer a b", "", false},
		{"Bearer =abc", "", false},
		{"Bearer ==", "", false},
		{"Bearer ab=c", "", false},
		{"Bearer abc,def", "", false},
		{"Bearer abc\"", "", false},
		{"Bearer ab\x00c", "", false},
		{"Bearer äbc", "", false},
		{"Bearer abc\r\n", "", false},
	}
	for _, tt := range tests {
		token, ok := ParseBearer(tt.header)
		if token != tt.token || ok != tt.ok {
			t.Errorf("ParseBearer(%q) = %q, %v; want %q, %v", tt.header, token, ok, tt.token, tt.ok)
		}
	}
}

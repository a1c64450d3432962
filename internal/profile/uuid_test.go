package profile

import (
	"bytes"
	"testing"
)

func TestNewUUID(t *testing.T) {
	src := bytes.Repeat([]byte{0xff}, 16)
	u, err := newUUID(bytes.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	if want := "FFFFFFFF-FFFF-4FFF-BFFF-FFFFFFFFFFFF"; u != want {
		t.Errorf("newUUID = %s, want %s", u, want)
	}
	u, err = newUUID(bytes.NewReader(make([]byte, 16)))
	if err != nil {
		t.Fatal(err)
	}
	if want := "00000000-0000-4000-8000-000000000000"; u != want {
		t.Errorf("newUUID = %s, want %s", u, want)
	}
	if _, err := newUUID(bytes.NewReader(make([]byte, 15))); err == nil {
		t.Error("newUUID succeeded on a short reader")
	}
}

func TestIsUUID(t *testing.T) {
	tests := []struct {
		s    string
		want bool
	}{
		{"CB90E976-AD44-4B69-8108-8095E6260978", true},
		{"cb90e976-ad44-4b69-8108-8095e6260978", true},
		{"", false},
		{"CB90E976AD444B6981088095E6260978", false},
		{"CB90E976-AD44-4B69-8108-8095E626097", false},
		{"CB90E976-AD44-4B69-8108_8095E6260978", false},
		{"GB90E976-AD44-4B69-8108-8095E6260978", false},
		{"{B90E976-AD44-4B69-8108-8095E626097}", false},
	}
	for _, tc := range tests {
		if got := isUUID(tc.s); got != tc.want {
			t.Errorf("isUUID(%q) = %v, want %v", tc.s, got, tc.want)
		}
	}
}

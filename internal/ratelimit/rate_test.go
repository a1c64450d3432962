package ratelimit

import (
	"errors"
	"testing"
	"time"
)

func TestParseRate(t *testing.T) {
	tests := []struct {
		in   string
		want Rate
		str  string
	}{
		{"off", Rate{}, "off"},
		{"60/m", Rate{Events: 60, Per: time.Minute}, "60/m"},
		{"60/m burst 20", Rate{Events: 60, Per: time.Minute, Burst: 20}, "60/m burst 20"},
		{" 1000/h  burst 50 ", Rate{Events: 1000, Per: time.Hour, Burst: 50}, "1000/h burst 50"},
		{"10/30s", Rate{Events: 10, Per: 30 * time.Second}, "10/30s"},
		{"5/s", Rate{Events: 5, Per: time.Second}, "5/s"},
		{"2/90m", Rate{Events: 2, Per: 90 * time.Minute}, "2/90m"},
	}
	for _, tc := range tests {
		got, err := ParseRate(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseRate(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			continue
		}
		if s := got.String(); s != tc.str {
			t.Errorf("String() = %q, want %q", s, tc.str)
		}
		if again, err := ParseRate(got.String()); err != nil || again != got {
			t.Errorf("round trip of %q: %+v, %v", tc.in, again, err)
		}
	}
	for _, in := range []string{"", "60", "60/", "60/d", "0/m", "-1/m", "x/m", "60/0m", "60/m burst", "60/m burst 0",
		"60/m bust 5", "60/m burst x", "off off", "1/m burst 2 3"} {
		if r, err := ParseRate(in); err == nil || !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseRate(%q) = %+v, %v; want a syntax error", in, r, err)
		}
	}
}

func TestRateEnabled(t *testing.T) {
	if (Rate{}).Enabled() || (Rate{Events: 1}).Enabled() || !(Rate{Events: 1, Per: time.Second}).Enabled() {
		t.Fatal("Enabled")
	}
}

func TestSeconds(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "1", -time.Second: "1", time.Millisecond: "1", time.Second: "1",
		1500 * time.Millisecond: "2", time.Minute: "60"} {
		if got := Seconds(d); got != want {
			t.Errorf("Seconds(%v) = %q, want %q", d, got, want)
		}
	}
}

package main

import (
	"reflect"
	"testing"

	"github.com/mdmauth/mdmauth/internal/bench"
)

func TestParseUpstreams(t *testing.T) {
	tests := []struct {
		in   string
		want []bench.Upstream
		ok   bool
	}{
		{"fast,nanomdm", []bench.Upstream{bench.UpstreamFast, bench.UpstreamNanoMDM}, true},
		{" nanomdm ", []bench.Upstream{bench.UpstreamNanoMDM}, true},
		{"", nil, true},
		{"fast,caddy", nil, false},
	}
	for _, tc := range tests {
		got, err := parseUpstreams(tc.in)
		if (err == nil) != tc.ok || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseUpstreams(%q) = %v, %v; want %v (ok %v)", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestParseInts(t *testing.T) {
	tests := []struct {
		in   string
		want []int
		ok   bool
	}{
		{"10000,100_000", []int{10000, 100000}, true},
		{"", nil, true},
		{"10k", nil, false},
		{"0", nil, false},
	}
	for _, tc := range tests {
		got, err := parseInts(tc.in)
		if (err == nil) != tc.ok || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseInts(%q) = %v, %v; want %v (ok %v)", tc.in, got, err, tc.want, tc.ok)
		}
	}
	d := bench.DefaultOptions()
	if joinInts(d.ScaleSizes) != "10000,100000" || joinUpstreams(d.Upstreams) != "fast,nanomdm" || !d.Postgres {
		t.Errorf("flag defaults %q %q, postgres %v", joinInts(d.ScaleSizes), joinUpstreams(d.Upstreams), d.Postgres)
	}
}

func TestQuickIsSmall(t *testing.T) {
	o := bench.DefaultOptions()
	applyQuick(&o)
	if o.Devices > 1000 || o.Duration.Seconds() > 2 || o.Rounds != 1 || o.EnrollMax > 100 || len(o.ScaleSizes) == 0 || o.ScaleSizes[len(o.ScaleSizes)-1] > 10_000 {
		t.Errorf("-quick sizes %+v", o)
	}
}

package bench

import (
	"strings"
	"testing"
)

func TestAtLeastAtMost(t *testing.T) {
	tests := []struct {
		got                 TargetResult
		status, gap, wanted string
	}{
		{atLeast("x", 0.95, 0.90, asRatio), StatusMet, "", "≥ 0.900"},
		{atLeast("x", 0.90, 0.90, asRatio), StatusMet, "", "≥ 0.900"},
		{atLeast("x", 0.81, 0.90, asRatio), StatusMissed, "short by 0.090 (10.0 %)", "≥ 0.900"},
		{atMost("x", 100, 100, asMicros), StatusMet, "", "≤ 100.0 µs"},
		{atMost("x", 150, 100, asMicros), StatusMissed, "over by 50.0 µs (50.0 %)", "≤ 100.0 µs"},
		{atMost("x", -20, 100, asMicros), StatusMet, "", "≤ 100.0 µs"},
		{atMost("x", 301, 20, asCount), StatusMissed, "over by 281 (1405.0 %)", "≤ 20"},
	}
	for i, tc := range tests {
		if tc.got.Status != tc.status || tc.got.Gap != tc.gap || tc.got.Want != tc.wanted {
			t.Errorf("%d: %+v, want status %q gap %q want %q", i, tc.got, tc.status, tc.gap, tc.wanted)
		}
	}
}

func TestEvaluate(t *testing.T) {
	byName := func(ts []TargetResult) map[string]TargetResult {
		m := map[string]TargetResult{}
		for _, x := range ts {
			m[x.Name] = x
		}
		return m
	}
	got := byName(sampleReport().Targets)
	want := map[string]string{ // name → status
		"throughput B/A, fast upstream, max rate":                 StatusMet,         // 0.95
		"throughput B/A, nanomdm upstream, max rate":              StatusNotMeasured, // no NanoMDM runs
		"added p50 at a fixed rate, fast upstream":                StatusMet,         // 30 µs
		"added p99 at a fixed rate, fast upstream":                StatusMet,         // 80 µs
		"added p50 at a fixed rate, nanomdm upstream":             StatusNotMeasured, //
		"gateway hot path per request (" + HotPathBenchmark + ")": StatusMissed,      // 29.8 µs
		"gateway hot path allocations per request":                StatusMissed,      // 301
		"throughput at 1M live tokens / at 10k":                   StatusMet,         // 8500/9000 = 0.944
		"Caddy peak RSS at 1M live tokens":                        StatusMissed,      // 300 MiB
		"Caddy anonymous RSS (heap) at 1M live tokens":            StatusMet,         // 120.5 MiB
		"Badger reopen at 1M live tokens":                         StatusMet,         // 1.5 s
		"full enrollments per second through the gateway":         StatusMissed,      // 20/s
		"enrollment errors":                                       StatusMet,         //
		"gateway CPU per enrollment":                              StatusMet,         // 3 ms
	}
	for name, status := range want {
		g, ok := got[name]
		if !ok {
			t.Errorf("no target %q", name)
			continue
		}
		if g.Status != status {
			t.Errorf("%s: %s (%s, %s), want %s", name, g.Status, g.Got, g.Gap, status)
		}
	}
	if n := len(sampleReport().Targets); n != 15 {
		t.Errorf("%d targets, want 15", n)
	}
	if rss, anon := got["Caddy peak RSS at 1M live tokens"], got["Caddy anonymous RSS (heap) at 1M live tokens"]; rss.Got != "300.0 MiB" ||
		anon.Got != "120.5 MiB" || anon.Want != "≤ 256.0 MiB" || anon.Gap != "" {
		t.Errorf("RSS targets: total %+v, anonymous %+v", rss, anon)
	}
	if g := got["full enrollments per second through the gateway"].Gap; !strings.Contains(g, "the IdP used 9.00 ms CPU per enrollment, the gateway 3.00 ms") {
		t.Errorf("enrollment gap %q does not name the IdP's share", g)
	}
	if g := got["throughput B/A, nanomdm upstream, max rate"].Gap; g != "no A/B run at max rate" {
		t.Errorf("not-measured reason %q", g)
	}
}

func TestEvaluateWithoutLargeScale(t *testing.T) {
	r := &Report{Scale: []ScaleFigures{{Tokens: 10_000, RPS: 900},
		{Tokens: 100_000, RPS: 880, CaddyRSSMiB: 90, CaddyAnonRSSMiB: 50, CaddyFileRSSMiB: 39.5, ReopenSeconds: 0.2}},
		Enrollment: &EnrollFigures{Started: 10, Completed: 8, Errors: map[string]int{"sign-in": 2}, PerSecond: 150, CaddyCPUms: 6}}
	got := map[string]TargetResult{}
	for _, x := range Evaluate(r) {
		got[x.Name] = x
	}
	flat := got["throughput at 1M live tokens / at 10k"]
	if flat.Status != StatusNotMeasured || !strings.Contains(flat.Gap, "no run at 1M tokens (-scale-full); largest measured: 100000 tokens, 880 req/s, RSS 90.0 MiB (anon 50.0, file 39.5)") {
		t.Errorf("flat: %+v", flat)
	}
	if anon := got["Caddy anonymous RSS (heap) at 1M live tokens"]; anon.Status != StatusNotMeasured || anon.Gap != flat.Gap {
		t.Errorf("anonymous RSS: %+v", anon)
	}
	if e := got["enrollment errors"]; e.Status != StatusMissed || e.Got != "2" || e.Gap != "2 of 10 failed" {
		t.Errorf("errors: %+v", e)
	}
	if e := got["full enrollments per second through the gateway"]; e.Status != StatusMet {
		t.Errorf("rate: %+v", e)
	}
	if e := got["gateway CPU per enrollment"]; e.Status != StatusMissed || e.Gap != "over by 1.00 ms (20.0 %)" {
		t.Errorf("cpu: %+v", e)
	}
	for _, x := range Evaluate(&Report{}) {
		if x.Status != StatusNotMeasured || x.Gap == "" {
			t.Errorf("empty report: %+v", x)
		}
	}
}

// TestEvaluateWithoutAnonRSS: a report from before the split has a
// total RSS at 1M tokens but no anonymous part, which is not zero.
func TestEvaluateWithoutAnonRSS(t *testing.T) {
	r := &Report{Scale: []ScaleFigures{{Tokens: 1_000_000, RPS: 800, CaddyRSSMiB: 693.7, ReopenSeconds: 0.02}}}
	got := map[string]TargetResult{}
	for _, x := range Evaluate(r) {
		got[x.Name] = x
	}
	if rss := got["Caddy peak RSS at 1M live tokens"]; rss.Status != StatusMissed || rss.Got != "693.7 MiB" {
		t.Errorf("total: %+v", rss)
	}
	if anon := got["Caddy anonymous RSS (heap) at 1M live tokens"]; anon.Status != StatusNotMeasured || anon.Gap != "anonymous RSS not recorded" {
		t.Errorf("anonymous: %+v", anon)
	}
	r.Scale[0].CaddyAnonRSSMiB = 260
	for _, x := range Evaluate(r) {
		if x.Name == "Caddy anonymous RSS (heap) at 1M live tokens" && (x.Status != StatusMissed || x.Gap != "over by 4.0 MiB (1.6 %)") {
			t.Errorf("anonymous over the target: %+v", x)
		}
	}
}

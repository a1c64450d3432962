package soak

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// goodRun is a report of a clean run of 60 s with a 15 s warm-up.
func goodRun(o Options) *Report {
	r := &Report{Started: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC), Settings: settingsOf(o), Seconds: 60,
		Counts: Counts{Visits: 3000, Accepted: 3000, RefusedExpired: 100, RefusedRevoked: 50, SignInsWeb: 80,
			SignInsOAuth2: 20, Enrollments: 20, Refreshes: 60, RefreshesRefused: 20, AdminActions: 50,
			Admin: map[string]int64{"reauth": 50}, Commands: 200, CheckIns: 100, TokensIssued: 400},
		Responses: map[string]map[string]int64{classMDM: {"200": 3000, "401": 150}},
		Store:     healthyStore(),
	}
	for i := range 13 {
		r.Samples = append(r.Samples, Sample{T: float64(5 * i), Goroutines: 140 + i%3, FDs: 90, RSS: 80 << 20,
			Anon: 30<<20 + int64(i%2)<<20, StoreDisk: int64(i) << 17})
	}
	return r
}

func testOptions() Options {
	o := DefaultOptions()
	o.Duration, o.Warmup, o.SampleEvery = time.Minute, 15*time.Second, 5*time.Second
	o.ReenrollShare = 0.01
	return o
}

func TestEvaluateGoodRun(t *testing.T) {
	o := testOptions()
	r := goodRun(o)
	evaluate(r, o)
	if !r.Pass {
		for _, c := range r.Criteria {
			if !c.Pass {
				t.Errorf("%s: %s (limit %s)", c.Name, c.Measured, c.Limit)
			}
		}
	}
	if len(r.Criteria) != 10 {
		t.Fatalf("%d criteria", len(r.Criteria))
	}
	if g := r.Growth[0]; g.Samples != 10 { // t = 15 … 60 s
		t.Fatalf("judged %d samples, want the 10 after the warm-up", g.Samples)
	}
	// The sample taken after the load stopped is not judged.
	r.Samples = append(r.Samples, Sample{T: 60, AfterLoad: true, Goroutines: 1000, FDs: 1000, Anon: 1 << 30})
	evaluate(r, o)
	if g := r.Growth[0]; g.Samples != 10 || !r.Pass {
		t.Fatalf("the sample after the load was judged: %d samples, pass %v", g.Samples, r.Pass)
	}
}

// TestEvaluateFailures: each way a run can go wrong fails it.
func TestEvaluateFailures(t *testing.T) {
	o := testOptions()
	for name, spoil := range map[string]func(r *Report){
		"an unexpected outcome": func(r *Report) { r.Errors.Total = 1 },
		"a 502 somewhere":       func(r *Report) { r.HTTPFailures.Total = 1 },
		"interrupted":           func(r *Report) { r.Stopped = "interrupted" },
		"no refresh happened":   func(r *Report) { r.Counts.Refreshes = 0 },
		"no admin action":       func(r *Report) { r.Counts.AdminActions = 0 },
		"goroutines leak": func(r *Report) {
			for i := range r.Samples {
				r.Samples[i].Goroutines += 20 * i
			}
		},
		"file descriptors leak": func(r *Report) {
			for i := range r.Samples {
				r.Samples[i].FDs += 10 * i
			}
		},
		"memory leaks": func(r *Report) {
			for i := range r.Samples {
				r.Samples[i].Anon += int64(i) * 8 << 20
			}
		},
		"too few samples": func(r *Report) { r.Samples = r.Samples[:7] },
		"store garbage":   func(r *Report) { r.Store.EndDisk = 300 << 20 },
		"store not read":  func(r *Report) { r.Store.End = StoreContent{} },
	} {
		r := goodRun(o)
		spoil(r)
		evaluate(r, o)
		if r.Pass {
			t.Errorf("%s: the run passed", name)
		}
	}
}

func TestReportRendersAndRoundTrips(t *testing.T) {
	o := testOptions()
	r := goodRun(o)
	r.Errors = Errors{Total: 1, ByKind: map[string]int64{"mdm: 502": 1}, Examples: []string{"Status Idle answered 502 | x"}}
	evaluate(r, o)
	var text bytes.Buffer
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"FAIL", "Verdict: FAIL", "mdm: 502", "(warm-up)", "no growth: Caddy goroutines"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report without %q", want)
		}
	}
	var md bytes.Buffer
	r.WriteMarkdown(&md)
	if !strings.Contains(md.String(), `answered 502 \| x`) || !strings.Contains(md.String(), "| criterion | measured | limit | result |") ||
		!strings.Contains(md.String(), "| &nbsp;&nbsp;answered 200 |") {
		t.Errorf("markdown:\n%s", md.String())
	}

	dir := t.TempDir()
	path := filepath.Join(dir, "r.json")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.WriteJSON(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	back, err := ReadJSON(path)
	if err != nil {
		t.Fatal(err)
	}
	if back.Pass != r.Pass || len(back.Samples) != len(r.Samples) || back.Store.End.Bytes != r.Store.End.Bytes ||
		back.Counts.Refreshes != r.Counts.Refreshes || len(back.Criteria) != len(r.Criteria) {
		t.Fatal("the JSON report does not round-trip")
	}

	doc := filepath.Join(dir, "soak.md")
	if err := os.WriteFile(doc, []byte("# Soak\n\nintro\n\n"+ResultsBegin+"\nold\n"+ResultsEnd+"\n\nafter\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.Command = "go run ./cmd/mdmsoak -devices 10"
	if err := UpdateDocs(doc, r); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(doc)
	s := string(b)
	if strings.Contains(s, "\nold\n") || !strings.Contains(s, "go run ./cmd/mdmsoak -devices 10") ||
		!strings.HasPrefix(s, "# Soak\n\nintro") || !strings.HasSuffix(s, ResultsEnd+"\n\nafter\n") {
		t.Fatalf("docs:\n%s", s)
	}
	if err := UpdateDocs(filepath.Join(dir, "r.json"), r); err == nil {
		t.Fatal("a file without the markers was updated")
	}
}

func TestOptionsDefaultsAndChecks(t *testing.T) {
	o := DefaultOptions()
	o.TB = t
	got, err := o.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if got.Warmup != 5*time.Minute || got.SampleEvery != 30*time.Second || got.Logf == nil {
		t.Fatalf("derived warm-up %s, sampling %s", got.Warmup, got.SampleEvery)
	}
	for name, spoil := range map[string]func(o *Options){
		"no TB":                   func(o *Options) { o.TB = nil },
		"one device":              func(o *Options) { o.Devices = 1 },
		"warm-up as long as all":  func(o *Options) { o.Warmup = o.Duration },
		"too few samples":         func(o *Options) { o.SampleEvery = o.Duration / 4 },
		"a share above 1":         func(o *Options) { o.AdminShare = 1.5 },
		"visit shares above 1":    func(o *Options) { o.CommandShare, o.CheckInShare = 0.6, 0.6 },
		"a negative rate":         func(o *Options) { o.Rate = -1 },
		"a duration of 5 seconds": func(o *Options) { o.Duration = 5 * time.Second },
	} {
		o := DefaultOptions()
		o.TB = t
		spoil(&o)
		if _, err := o.withDefaults(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

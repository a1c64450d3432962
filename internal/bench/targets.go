package bench

import (
	"fmt"
	"strconv"
)

// Target statuses.
const (
	StatusMet         = "met"
	StatusMissed      = "missed"
	StatusNotMeasured = "not measured"
)

// TargetResult is one target of the performance issue, evaluated.
type TargetResult struct {
	Name   string `json:"name"`
	Want   string `json:"want"`
	Got    string `json:"got,omitempty"`
	Status string `json:"status"`
	// Gap says by how much a missed target was missed.
	Gap string `json:"gap,omitempty"`
}

// Targets of the issue.
const (
	TargetRatioFast      = 0.90 // throughput B/A against the fast upstream
	TargetRatioNanoMDM   = 0.97 // throughput B/A against NanoMDM
	TargetAddedP50us     = 100  // added latency at the fixed rate
	TargetAddedP99us     = 500
	TargetHotPathNs      = 15000 // the handler's own work per request
	TargetHotPathAllocs  = 20
	TargetFlatRatio      = 0.90 // throughput at 1M tokens over 10k
	TargetRSSMiB         = 256  // Caddy at 1M tokens, peak RSS and its anonymous part
	TargetReopenSeconds  = 5    // Badger at 1M tokens
	TargetEnrollPerSec   = 100
	TargetEnrollCPUms    = 5
	HotPathBenchmark     = "BenchmarkGuardBoundToken"
	scaleSmall, scaleBig = 10_000, 1_000_000
)

// quantity formats a value and its unit.
type quantity struct {
	digits int
	unit   string
}

func (q quantity) format(v float64) string {
	s := strconv.FormatFloat(v, 'f', q.digits, 64)
	if q.unit != "" {
		s += " " + q.unit
	}
	return s
}

var (
	asRatio  = quantity{3, ""}
	asMicros = quantity{1, "µs"}
	asMiB    = quantity{1, "MiB"}
	asSecs   = quantity{2, "s"}
	asMillis = quantity{2, "ms"}
	asCount  = quantity{0, ""}
	asPerSec = quantity{1, "/s"}
)

// atLeast evaluates got ≥ limit.
func atLeast(name string, got, limit float64, q quantity) TargetResult {
	t := TargetResult{Name: name, Want: "≥ " + q.format(limit), Got: q.format(got), Status: StatusMet}
	if got < limit {
		t.Status = StatusMissed
		t.Gap = "short by " + q.format(limit-got) + relative(limit-got, limit)
	}
	return t
}

// atMost evaluates got ≤ limit.
func atMost(name string, got, limit float64, q quantity) TargetResult {
	t := TargetResult{Name: name, Want: "≤ " + q.format(limit), Got: q.format(got), Status: StatusMet}
	if got > limit {
		t.Status = StatusMissed
		t.Gap = "over by " + q.format(got-limit) + relative(got-limit, limit)
	}
	return t
}

func relative(diff, limit float64) string {
	if limit == 0 {
		return ""
	}
	return fmt.Sprintf(" (%.1f %%)", 100*diff/limit)
}

func notMeasured(name, want, why string) TargetResult {
	return TargetResult{Name: name, Want: want, Status: StatusNotMeasured, Gap: why}
}

// Evaluate checks the report against the targets. A target whose
// figure the run did not produce is StatusNotMeasured, with the reason.
func Evaluate(r *Report) []TargetResult {
	var out []TargetResult
	for _, c := range []struct {
		up    Upstream
		limit float64
	}{{UpstreamFast, TargetRatioFast}, {UpstreamNanoMDM, TargetRatioNanoMDM}} {
		name := fmt.Sprintf("throughput B/A, %s upstream, max rate", c.up)
		if rt := findRatio(r.Ratios, c.up, ModeMax); rt != nil {
			out = append(out, atLeast(name, rt.RPS, c.limit, asRatio))
		} else {
			out = append(out, notMeasured(name, "≥ "+asRatio.format(c.limit), "no A/B run at max rate"))
		}
	}
	for _, up := range []Upstream{UpstreamFast, UpstreamNanoMDM} {
		p50 := fmt.Sprintf("added p50 at a fixed rate, %s upstream", up)
		p99 := fmt.Sprintf("added p99 at a fixed rate, %s upstream", up)
		if a := findAdded(r.Added, up); a != nil {
			out = append(out, atMost(p50, a.P50, TargetAddedP50us, asMicros), atMost(p99, a.P99, TargetAddedP99us, asMicros))
		} else {
			out = append(out, notMeasured(p50, "≤ "+asMicros.format(TargetAddedP50us), "no A/B run at a fixed rate"),
				notMeasured(p99, "≤ "+asMicros.format(TargetAddedP99us), "no A/B run at a fixed rate"))
		}
	}
	if b := findGoBench(r.GoBench, HotPathBenchmark); b != nil {
		out = append(out, atMost("gateway hot path per request ("+HotPathBenchmark+")", b.NsPerOp/1000, TargetHotPathNs/1000, asMicros),
			atMost("gateway hot path allocations per request", b.AllocsPerOp, TargetHotPathAllocs, asCount))
	} else {
		out = append(out, notMeasured("gateway hot path per request ("+HotPathBenchmark+")", "≤ "+asMicros.format(TargetHotPathNs/1000), "Go benchmarks not run"),
			notMeasured("gateway hot path allocations per request", "≤ "+asCount.format(TargetHotPathAllocs), "Go benchmarks not run"))
	}
	out = append(out, scaleTargets(r.Scale)...)
	out = append(out, enrollTargets(r.Enrollment)...)
	return out
}

func scaleTargets(sc []ScaleFigures) []TargetResult {
	const (
		flat   = "throughput at 1M live tokens / at 10k"
		rss    = "Caddy peak RSS at 1M live tokens"
		anon   = "Caddy anonymous RSS (heap) at 1M live tokens"
		reopen = "Badger reopen at 1M live tokens"
	)
	small, big := findScale(sc, scaleSmall), findScale(sc, scaleBig)
	var out []TargetResult
	if small != nil && big != nil {
		out = append(out, atLeast(flat, ratio(big.RPS, small.RPS), TargetFlatRatio, asRatio))
	} else {
		out = append(out, notMeasured(flat, "≥ "+asRatio.format(TargetFlatRatio), scaleGap(sc, small == nil, big == nil)))
	}
	if big != nil {
		out = append(out, atMost(rss, big.CaddyRSSMiB, TargetRSSMiB, asMiB))
		if big.CaddyAnonRSSMiB > 0 {
			out = append(out, atMost(anon, big.CaddyAnonRSSMiB, TargetRSSMiB, asMiB))
		} else { // a report from before the split: no process has no anonymous memory
			out = append(out, notMeasured(anon, "≤ "+asMiB.format(TargetRSSMiB), "anonymous RSS not recorded"))
		}
		out = append(out, atMost(reopen, big.ReopenSeconds, TargetReopenSeconds, asSecs))
	} else {
		why := scaleGap(sc, false, true)
		out = append(out, notMeasured(rss, "≤ "+asMiB.format(TargetRSSMiB), why),
			notMeasured(anon, "≤ "+asMiB.format(TargetRSSMiB), why),
			notMeasured(reopen, "≤ "+asSecs.format(TargetReopenSeconds), why))
	}
	return out
}

// scaleGap explains which scale step is missing, and what the largest
// measured one showed.
func scaleGap(sc []ScaleFigures, noSmall, noBig bool) string {
	var why string
	switch {
	case noSmall && noBig:
		why = "no run at 10k or 1M tokens"
	case noSmall:
		why = "no run at 10k tokens"
	default:
		why = "no run at 1M tokens (-scale-full)"
	}
	if len(sc) > 0 {
		l := sc[len(sc)-1]
		why += fmt.Sprintf("; largest measured: %d tokens, %.0f req/s, RSS %.1f MiB (anon %.1f, file %.1f), reopen %.2f s",
			l.Tokens, l.RPS, l.CaddyRSSMiB, l.CaddyAnonRSSMiB, l.CaddyFileRSSMiB, l.ReopenSeconds)
	}
	return why
}

func enrollTargets(e *EnrollFigures) []TargetResult {
	const (
		rate   = "full enrollments per second through the gateway"
		errs   = "enrollment errors"
		cpu    = "gateway CPU per enrollment"
		notRun = "enrollment phase not run"
	)
	if e == nil {
		return []TargetResult{
			notMeasured(rate, "≥ "+asPerSec.format(TargetEnrollPerSec), notRun),
			notMeasured(errs, "= 0", notRun),
			notMeasured(cpu, "≤ "+asMillis.format(TargetEnrollCPUms), notRun),
		}
	}
	r := atLeast(rate, e.PerSecond, TargetEnrollPerSec, asPerSec)
	if r.Status == StatusMissed && e.IdPCPUms > e.CaddyCPUms {
		r.Gap += fmt.Sprintf("; the IdP used %.2f ms CPU per enrollment, the gateway %.2f ms", e.IdPCPUms, e.CaddyCPUms)
	}
	var n int
	for _, c := range e.Errors {
		n += c
	}
	er := TargetResult{Name: errs, Want: "= 0", Got: strconv.Itoa(n), Status: StatusMet}
	if n > 0 {
		er.Status, er.Gap = StatusMissed, fmt.Sprintf("%d of %d failed", n, e.Started)
	}
	return []TargetResult{r, er, atMost(cpu, e.CaddyCPUms, TargetEnrollCPUms, asMillis)}
}

// findRatio returns B / A for up and mode.
func findRatio(rs []Ratio, up Upstream, mode string) *Ratio {
	for i := range rs {
		if c, base := rs[i].Pair(); c == ConfigB && base == ConfigA && rs[i].Upstream == up && rs[i].Mode == mode {
			return &rs[i]
		}
	}
	return nil
}

// findAdded returns B − A for up.
func findAdded(as []AddedLatency, up Upstream) *AddedLatency {
	for i := range as {
		if c, base := as[i].Pair(); c == ConfigB && base == ConfigA && as[i].Upstream == up {
			return &as[i]
		}
	}
	return nil
}

func findGoBench(bs []GoBench, name string) *GoBench {
	for i := range bs {
		if bs[i].Name == name {
			return &bs[i]
		}
	}
	return nil
}

func findScale(sc []ScaleFigures, tokens int) *ScaleFigures {
	for i := range sc {
		if sc[i].Tokens == tokens {
			return &sc[i]
		}
	}
	return nil
}

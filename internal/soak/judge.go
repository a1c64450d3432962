package soak

import (
	"fmt"
	"math"
	"slices"
)

// MinJudgedSamples is the fewest measured samples (after the warm-up) a
// growth verdict needs: two in each third.
const MinJudgedSamples = 6

// Tolerance is how much a figure may grow over the measured part of a run:
// the median of its last third of samples may exceed the median of its
// first third by Rel (a fraction of the first median) plus Abs (in the
// figure's unit).
type Tolerance struct {
	Rel float64 `json:"rel"`
	Abs float64 `json:"abs"`
}

// Growth is the verdict on one sampled figure.
type Growth struct {
	Metric string `json:"metric"`
	Unit   string `json:"unit"`
	// Samples is the number of measured samples judged.
	Samples int `json:"samples"`
	// First and Last are the medians of the first and the last third of
	// them; Limit is what Last may reach; Min and Max the extremes seen.
	First float64   `json:"first_third_median"`
	Last  float64   `json:"last_third_median"`
	Limit float64   `json:"limit"`
	Min   float64   `json:"min"`
	Max   float64   `json:"max"`
	Tol   Tolerance `json:"tolerance"`
	Pass  bool      `json:"pass"`
	// Reason says why it failed.
	Reason string `json:"reason,omitempty"`
}

// JudgeGrowth compares the median of the last third of values with the
// median of the first third. Medians of thirds are robust to single
// spikes (a garbage collection, a burst of sign-ins) and to a slow
// machine: nothing depends on how many requests ran between samples, only
// on the order of the samples. A leak shows as a last third above the
// first by more than the tolerance. Fewer than MinJudgedSamples values
// fail: a verdict on too little is none.
func JudgeGrowth(metric, unit string, values []float64, tol Tolerance) Growth {
	g := Growth{Metric: metric, Unit: unit, Samples: len(values), Tol: tol}
	if len(values) < MinJudgedSamples {
		g.Reason = fmt.Sprintf("%d samples after the warm-up, need at least %d", len(values), MinJudgedSamples)
		return g
	}
	g.Min, g.Max = slices.Min(values), slices.Max(values)
	third := len(values) / 3
	g.First = median(values[:third])
	g.Last = median(values[len(values)-third:])
	g.Limit = g.First*(1+tol.Rel) + tol.Abs
	g.Pass = g.Last <= g.Limit
	if !g.Pass {
		g.Reason = fmt.Sprintf("grew from %s to %s (limit %s)", fmtValue(g.First, unit), fmtValue(g.Last, unit), fmtValue(g.Limit, unit))
	}
	return g
}

// median returns the median of v (which it does not modify).
func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return math.NaN()
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// fmtValue formats v in unit ("bytes" as MiB, others as numbers).
func fmtValue(v float64, unit string) string {
	if unit == UnitBytes {
		return fmtBytes(int64(v))
	}
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

// fmtBytes formats n bytes as MiB.
func fmtBytes(n int64) string {
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

// Units of the sampled figures.
const (
	UnitCount = "count"
	UnitBytes = "bytes"
)

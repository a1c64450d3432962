package bench

import (
	"math"
	"math/bits"
	"time"
)

// subBits sets the histogram's precision: every power-of-two range of
// values is split into 2^subBits equal buckets, so a recorded value is
// known to within 1/2^subBits (0.4 %) of itself. Values below 2^subBits
// nanoseconds are exact.
const subBits = 8

const (
	subCount = 1 << subBits
	// maxExp covers durations up to 2^40 ns (about 18 minutes); longer
	// ones are clamped into the last bucket.
	maxExp     = 40 - subBits + 1
	numBuckets = (maxExp + 1) * subCount
)

// Histogram records latencies with a bounded relative error, like an HDR
// histogram: log-linear buckets of nanoseconds. Count, Min, Max and Sum are
// exact. The zero value is ready to use; it is not safe for concurrent use
// (give each worker its own and Merge them).
type Histogram struct {
	counts []uint64
	n      uint64
	sum    time.Duration
	min    time.Duration
	max    time.Duration
}

// bucketOf returns the bucket index of v nanoseconds.
func bucketOf(v uint64) int {
	if v < subCount {
		return int(v)
	}
	shift := bits.Len64(v) - subBits - 1 // v>>shift is in [subCount, 2*subCount)
	exp := shift + 1
	if exp > maxExp {
		return numBuckets - 1
	}
	return exp*subCount + int(v>>uint(shift)) - subCount
}

// bucketRange returns the smallest and largest value of bucket i.
func bucketRange(i int) (lo, hi uint64) {
	if i < subCount {
		return uint64(i), uint64(i)
	}
	exp := i / subCount
	shift := uint(exp - 1)
	lo = uint64(i%subCount+subCount) << shift
	return lo, lo + (1 << shift) - 1
}

// Record adds one observation. Negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	if h.counts == nil {
		h.counts = make([]uint64, numBuckets)
	}
	h.counts[bucketOf(uint64(d))]++
	if h.n == 0 || d < h.min {
		h.min = d
	}
	if d > h.max {
		h.max = d
	}
	h.n++
	h.sum += d
}

// Merge adds every observation of o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o == nil || o.n == 0 {
		return
	}
	if h.counts == nil {
		h.counts = make([]uint64, numBuckets)
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	h.sum += o.sum
}

// Count returns the number of observations.
func (h *Histogram) Count() uint64 { return h.n }

// Min returns the smallest observation (0 when empty).
func (h *Histogram) Min() time.Duration { return h.min }

// Max returns the largest observation (0 when empty).
func (h *Histogram) Max() time.Duration { return h.max }

// Mean returns the average observation (0 when empty).
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return h.sum / time.Duration(h.n)
}

// Quantile returns the value below or at which a fraction q (0..1) of the
// observations lie: the nearest-rank quantile, reported as the middle of
// its bucket and clamped to [Min, Max]. It returns 0 when empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	switch {
	case q <= 0:
		return h.min
	case q >= 1:
		return h.max
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank == 0 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		if c == 0 {
			continue
		}
		seen += c
		if seen >= rank {
			lo, hi := bucketRange(i)
			v := time.Duration(lo + (hi-lo)/2)
			return min(max(v, h.min), h.max)
		}
	}
	return h.max
}

// Summary is the latency part of a result, in microseconds.
type Summary struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50_us"`
	P90   float64 `json:"p90_us"`
	P99   float64 `json:"p99_us"`
	Max   float64 `json:"max_us"`
	Mean  float64 `json:"mean_us"`
}

// Summary returns the histogram's percentiles in microseconds.
func (h *Histogram) Summary() Summary {
	return Summary{
		Count: h.n,
		P50:   micros(h.Quantile(0.50)),
		P90:   micros(h.Quantile(0.90)),
		P99:   micros(h.Quantile(0.99)),
		Max:   micros(h.max),
		Mean:  micros(h.Mean()),
	}
}

// micros converts d to microseconds, rounded to 0.1 µs.
func micros(d time.Duration) float64 {
	return math.Round(float64(d)/100) / 10
}

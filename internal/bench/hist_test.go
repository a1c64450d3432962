package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketsCoverValuesInOrder(t *testing.T) {
	prev := -1
	for _, v := range []uint64{0, 1, 255, 256, 257, 511, 512, 513, 1000, 4095, 4096, 123456, 1e9, 1 << 39, 1<<40 - 1} {
		i := bucketOf(v)
		if i < prev {
			t.Fatalf("bucketOf(%d) = %d < bucketOf of a smaller value (%d)", v, i, prev)
		}
		prev = i
		lo, hi := bucketRange(i)
		if v < lo || v > hi {
			t.Errorf("value %d in bucket %d = [%d, %d]", v, i, lo, hi)
		}
		if v >= subCount && float64(hi-lo+1)/float64(lo) > 1.0/subCount+1e-12 {
			t.Errorf("bucket %d = [%d, %d] is wider than 1/%d of its values", i, lo, hi, subCount)
		}
	}
	if i := bucketOf(math.MaxUint64); i != numBuckets-1 {
		t.Errorf("bucketOf(max) = %d, want the last bucket %d", i, numBuckets-1)
	}
}

func TestQuantilesMatchASortedSample(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var h Histogram
	sample := make([]time.Duration, 100_000)
	for i := range sample {
		// Log-normal around 300 µs with a long tail, like request latency.
		d := time.Duration(math.Exp(rng.NormFloat64()*0.8) * float64(300*time.Microsecond))
		sample[i] = d
		h.Record(d)
	}
	slices.Sort(sample)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		exact := sample[int(math.Ceil(q*float64(len(sample))))-1]
		got := h.Quantile(q)
		if rel := math.Abs(float64(got-exact)) / float64(exact); rel > 1.0/subCount {
			t.Errorf("q%.3f = %v, exact %v: relative error %.4f > %.4f", q, got, exact, rel, 1.0/subCount)
		}
	}
	if h.Min() != sample[0] || h.Max() != sample[len(sample)-1] || h.Count() != uint64(len(sample)) {
		t.Errorf("min %v max %v count %d, want %v %v %d", h.Min(), h.Max(), h.Count(), sample[0], sample[len(sample)-1], len(sample))
	}
	if h.Quantile(0) != h.Min() || h.Quantile(1) != h.Max() {
		t.Errorf("q0 = %v, q1 = %v, want min and max", h.Quantile(0), h.Quantile(1))
	}
}

func TestSmallValuesAreExact(t *testing.T) {
	var h Histogram
	for _, d := range []time.Duration{10, 20, 30, 40, 200} {
		h.Record(d)
	}
	for q, want := range map[float64]time.Duration{0.2: 10, 0.4: 20, 0.5: 30, 0.6: 30, 0.8: 40, 0.99: 200} {
		if got := h.Quantile(q); got != want {
			t.Errorf("Quantile(%v) = %v, want %v", q, got, want)
		}
	}
	if h.Mean() != 60 {
		t.Errorf("Mean = %v, want 60ns", h.Mean())
	}
}

func TestMerge(t *testing.T) {
	var a, b, all Histogram
	for i := 1; i <= 1000; i++ {
		d := time.Duration(i) * time.Microsecond
		all.Record(d)
		if i%3 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	var m Histogram
	m.Merge(&a)
	m.Merge(&b)
	m.Merge(nil)
	m.Merge(&Histogram{})
	if m.Summary() != all.Summary() || m.Min() != all.Min() {
		t.Errorf("merged %+v, want %+v", m.Summary(), all.Summary())
	}
}

func TestEmptyAndNegative(t *testing.T) {
	var h Histogram
	if h.Quantile(0.5) != 0 || h.Mean() != 0 || h.Summary() != (Summary{}) {
		t.Errorf("empty histogram: %+v", h.Summary())
	}
	h.Record(-time.Second)
	if h.Max() != 0 || h.Count() != 1 {
		t.Errorf("negative recorded as max %v count %d, want 0 and 1", h.Max(), h.Count())
	}
}

func TestSummaryInMicroseconds(t *testing.T) {
	var h Histogram
	h.Record(123456 * time.Nanosecond)
	s := h.Summary()
	if s.Count != 1 || s.Max != 123.5 || math.Abs(s.P50-123.5) > 0.5 {
		t.Errorf("summary %+v, want 123.5 µs", s)
	}
}

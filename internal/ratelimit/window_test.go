package ratelimit

import (
	"testing"
	"time"
)

func TestWindow(t *testing.T) {
	c := newClock()
	w := NewWindow(10*time.Minute, 10, c.Now)
	if w.Count() != 0 || w.Drain(1) != 0 {
		t.Fatal("new window not empty")
	}
	w.Add(5)
	c.Advance(3 * time.Minute)
	w.Add(7)
	if n := w.Count(); n != 12 {
		t.Fatalf("count %d, want 12", n)
	}
	// The first 5 leave once the span (plus at most one slot) has passed
	// since they were counted.
	c.Advance(7 * time.Minute)
	if n := w.Count(); n != 12 {
		t.Fatalf("events of the last span dropped early: %d", n)
	}
	d := w.Drain(12)
	if d <= 0 || d > time.Minute {
		t.Fatalf("drain below 12: %v, want within a slot", d)
	}
	c.Advance(d)
	if n := w.Count(); n != 7 {
		t.Fatalf("after the drain time: %d, want 7", n)
	}
	c.Advance(11 * time.Minute)
	if n := w.Count(); n != 0 {
		t.Fatalf("after the span: %d, want 0", n)
	}
	// A slot reused after a full turn starts from zero.
	w.Add(1)
	if n := w.Count(); n != 1 {
		t.Fatalf("reused slot: %d", n)
	}
}

// Count never under-counts the events of the last span.
func TestWindowUpperBound(t *testing.T) {
	c := newClock()
	span := time.Minute
	w := NewWindow(span, 6, c.Now)
	type ev struct{ at time.Time }
	var evs []ev
	for i := 0; i < 500; i++ {
		w.Add(1)
		evs = append(evs, ev{c.Now()})
		c.Advance(time.Duration(i%13) * time.Second)
		exact := int64(0)
		for _, e := range evs {
			if c.Now().Sub(e.at) < span {
				exact++
			}
		}
		if got := w.Count(); got < exact || got > exact+int64(len(evs)) {
			t.Fatalf("step %d: count %d below the exact %d", i, got, exact)
		}
	}
}

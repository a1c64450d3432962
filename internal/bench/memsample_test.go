package bench

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestMemPeak(t *testing.T) {
	var p memPeak
	for _, m := range []Memory{
		{RSS: 50, Anon: 40, File: 10},
		{RSS: 70, Anon: 20, File: 50}, // the parts peak at different times
		{RSS: 30, Anon: 25, File: 5},
	} {
		p.add(m)
	}
	if p != (memPeak{anon: 40, file: 50}) {
		t.Errorf("peak %+v, want anon 40, file 50", p)
	}
}

func TestMemSamplerKeepsPeaks(t *testing.T) {
	var n atomic.Int64
	// Anonymous memory rises to a peak at the third sample and falls;
	// file-backed memory only grows.
	anon := []int64{10, 30, 90, 40, 20}
	read := func() (Memory, error) {
		i := n.Add(1) - 1
		a := anon[min(int(i), len(anon)-1)]
		return Memory{Anon: a, File: 5 * (i + 1)}, nil
	}
	s := startMemSampler(read, time.Millisecond)
	for n.Load() < int64(len(anon))+2 {
		time.Sleep(time.Millisecond)
	}
	peak, err := s.finish()
	reads := n.Load()
	if err != nil || peak.anon != 90 || peak.file != 5*reads {
		t.Errorf("finish = %+v, %v after %d reads; want anon 90, file %d", peak, err, reads, 5*reads)
	}
	time.Sleep(5 * time.Millisecond)
	if n.Load() != reads {
		t.Errorf("%d reads after finish, want none", n.Load()-reads)
	}
}

func TestMemSamplerSamplesAtStart(t *testing.T) {
	// A run shorter than the interval still has its first sample.
	s := startMemSampler(func() (Memory, error) { return Memory{Anon: 7, File: 3}, nil }, time.Hour)
	time.Sleep(10 * time.Millisecond)
	if peak, err := s.finish(); err != nil || peak != (memPeak{anon: 7, file: 3}) {
		t.Errorf("finish = %+v, %v; want the first sample", peak, err)
	}
}

func TestMemSamplerStopsAtError(t *testing.T) {
	gone := errors.New("no such process")
	var n atomic.Int64
	read := func() (Memory, error) {
		if n.Add(1) > 2 {
			return Memory{}, gone
		}
		return Memory{Anon: 8, File: 4}, nil
	}
	s := startMemSampler(read, time.Millisecond)
	time.Sleep(20 * time.Millisecond)
	peak, err := s.finish()
	if !errors.Is(err, gone) || peak != (memPeak{anon: 8, file: 4}) || n.Load() != 3 {
		t.Errorf("finish = %+v, %v after %d reads; want the error after 3 reads", peak, err, n.Load())
	}
}

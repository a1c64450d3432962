package ratelimit

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestLimiterBurstAndRefill(t *testing.T) {
	c := newClock()
	l := New(Config{Rate: Rate{Events: 60, Per: time.Minute, Burst: 3}, Now: c.Now})
	for i := 0; i < 3; i++ {
		if r := l.Allow("a"); !r.OK {
			t.Fatalf("event %d of the burst refused", i)
		}
	}
	r := l.Allow("a")
	if r.OK || !r.First || r.RetryAfter != time.Second {
		t.Fatalf("past the burst: %+v, want refused, first, retry 1s", r)
	}
	if r := l.Allow("a"); r.OK || r.First {
		t.Fatalf("second refusal: %+v, want refused and not first", r)
	}
	if r := l.Allow("b"); !r.OK {
		t.Fatal("another key is limited by the first")
	}
	c.Advance(500 * time.Millisecond)
	if r := l.Allow("a"); r.OK || r.RetryAfter != 500*time.Millisecond {
		t.Fatalf("half a token: %+v", r)
	}
	c.Advance(500 * time.Millisecond)
	if r := l.Allow("a"); !r.OK {
		t.Fatal("refilled token refused")
	}
	if r := l.Allow("a"); r.OK || !r.First {
		t.Fatalf("refusal after an allowed event must be first again: %+v", r)
	}
	c.Advance(time.Hour)
	for i := 0; i < 3; i++ {
		if r := l.Allow("a"); !r.OK {
			t.Fatal("refill is not capped at the burst, or not complete")
		}
	}
	if l.Allow("a").OK {
		t.Fatal("refill exceeded the burst")
	}
}

func TestLimiterDefaultBurst(t *testing.T) {
	c := newClock()
	l := New(Config{Rate: Rate{Events: 5, Per: time.Hour}, Now: c.Now})
	n := 0
	for l.Allow("k").OK {
		n++
	}
	if n != 5 {
		t.Fatalf("burst without a setting: %d, want the events (5)", n)
	}
}

func TestLimiterOff(t *testing.T) {
	l := New(Config{})
	for i := 0; i < 1000; i++ {
		if !l.Allow(fmt.Sprint(i % 3)).OK {
			t.Fatal("a disabled limiter refused")
		}
	}
	if l.Len() != 0 {
		t.Fatalf("a disabled limiter tracks %d keys", l.Len())
	}
	var nilL *Limiter
	if !nilL.Allow("x").OK {
		t.Fatal("a nil limiter refused")
	}
}

// Spraying keys cannot grow memory past MaxKeys; the least recently seen
// keys go first, so a key in active use keeps its state.
func TestLimiterBoundedKeys(t *testing.T) {
	c := newClock()
	const max = 320
	l := New(Config{Rate: Rate{Events: 1, Per: time.Hour}, MaxKeys: max, Now: c.Now})
	l.Allow("hot")
	if l.Allow("hot").OK {
		t.Fatal("second event of hot allowed")
	}
	for i := 0; i < 100*max; i++ {
		l.Allow(fmt.Sprintf("spray-%d", i))
		if i%7 == 0 {
			if l.Allow("hot").OK {
				t.Fatalf("hot key was evicted while in use (after %d sprayed keys)", i)
			}
		}
		if n := l.Len(); n > max {
			t.Fatalf("%d keys tracked, max %d", n, max)
		}
	}
	if n := l.Len(); n < max/2 {
		t.Fatalf("only %d keys tracked: eviction too eager", n)
	}
	// An idle key is eventually forgotten: a fresh bucket.
	l.Allow("idle")
	for i := 0; i < 100*max; i++ {
		l.Allow(fmt.Sprintf("more-%d", i))
	}
	if !l.Allow("idle").OK {
		t.Fatal("the idle key was not evicted")
	}
}

func TestLimiterConcurrent(t *testing.T) {
	c := newClock()
	l := New(Config{Rate: Rate{Events: 100, Per: time.Hour}, MaxKeys: 4096, Now: c.Now})
	var (
		wg sync.WaitGroup
		mu sync.Mutex
		ok = map[string]int{}
	)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				k := fmt.Sprint("k", i%4)
				if l.Allow(k).OK {
					mu.Lock()
					ok[k]++
					mu.Unlock()
				}
				if i%50 == 0 {
					l.Allow(fmt.Sprint("spray", g, i))
				}
			}
		}(g)
	}
	wg.Wait()
	for k, n := range ok {
		if n != 100 {
			t.Errorf("key %s: %d events allowed, want exactly the burst (100)", k, n)
		}
	}
	if len(ok) != 4 {
		t.Errorf("keys allowed: %v", ok)
	}
}

func BenchmarkLimiterAllow(b *testing.B) {
	l := New(Config{Rate: Rate{Events: 1000, Per: time.Second}, MaxKeys: 10000})
	keys := make([]string, 50000)
	for i := range keys {
		keys[i] = fmt.Sprint("198.51.100.", i)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			l.Allow(keys[i%len(keys)])
			i++
		}
	})
}

package ratelimit

import (
	"sync"
	"time"
)

// Window counts events over a sliding span of time, in slots: Count covers
// at least the last span (and at most one slot more), so it is an upper
// bound of the events of the last span. Memory is fixed by the slot count.
// It is safe for concurrent use.
type Window struct {
	mu    sync.Mutex
	width int64 // nanoseconds per slot
	slots []slot
	now   func() time.Time
}

type slot struct {
	epoch int64 // time / width of the events counted, -1 if none
	n     int64
}

// NewWindow returns a Window over span split in slots parts (at least 1);
// now is the clock (default time.Now).
func NewWindow(span time.Duration, slots int, now func() time.Time) *Window {
	if slots < 1 {
		slots = 1
	}
	if now == nil {
		now = time.Now
	}
	w := &Window{width: int64(span) / int64(slots), now: now, slots: make([]slot, slots+1)}
	if w.width <= 0 {
		w.width = 1
	}
	for i := range w.slots {
		w.slots[i].epoch = -1
	}
	return w
}

// Add counts n events now.
func (w *Window) Add(n int64) {
	ep := w.now().UnixNano() / w.width
	w.mu.Lock()
	s := &w.slots[ep%int64(len(w.slots))]
	if s.epoch != ep {
		s.epoch, s.n = ep, 0
	}
	s.n += n
	w.mu.Unlock()
}

// Count returns the events of the last span (rounded up to whole slots).
func (w *Window) Count() int64 {
	ep := w.now().UnixNano() / w.width
	oldest := ep - int64(len(w.slots)) + 1
	var n int64
	w.mu.Lock()
	for _, s := range w.slots {
		if s.epoch >= oldest && s.epoch <= ep {
			n += s.n
		}
	}
	w.mu.Unlock()
	return n
}

// Drain returns how long until Count drops below max, assuming no new
// events (0 when it is already below).
func (w *Window) Drain(max int64) time.Duration {
	now := w.now().UnixNano()
	ep := now / w.width
	w.mu.Lock()
	defer w.mu.Unlock()
	total := int64(0)
	for _, s := range w.slots {
		if s.epoch > ep-int64(len(w.slots)) && s.epoch <= ep {
			total += s.n
		}
	}
	if total < max {
		return 0
	}
	// Slots leave the window oldest first.
	for k := ep - int64(len(w.slots)) + 1; k <= ep; k++ {
		s := w.slots[k%int64(len(w.slots))]
		if s.epoch == k {
			total -= s.n
		}
		if total < max {
			// Slot k leaves the window when epoch k+len begins.
			return time.Duration((k+int64(len(w.slots)))*w.width - now)
		}
	}
	return time.Duration(int64(len(w.slots)) * w.width)
}

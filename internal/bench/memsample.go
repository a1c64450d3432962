package bench

import "time"

// memSampleInterval is how often a memSampler reads the resident set.
const memSampleInterval = 250 * time.Millisecond

// memPeak is the largest anonymous and file-backed resident set seen in
// samples of one process, in bytes. The kernel keeps a peak of the whole
// resident set (VmHWM) but not of its parts, so these are sampled, and
// a peak shorter than the interval may be missed.
type memPeak struct {
	anon, file int64
}

// add takes the sample m into the peaks.
func (p *memPeak) add(m Memory) {
	p.anon = max(p.anon, m.Anon)
	p.file = max(p.file, m.File)
}

// memSampler reads a process's resident set in its own goroutine, once at
// the start and then at every tick, until finish.
type memSampler struct {
	read func() (Memory, error)
	stop chan struct{}
	done chan struct{}
	// peak and err belong to the goroutine until done is closed.
	peak memPeak
	err  error
}

// startMemSampler starts sampling read every interval.
func startMemSampler(read func() (Memory, error), every time.Duration) *memSampler {
	s := &memSampler{read: read, stop: make(chan struct{}), done: make(chan struct{})}
	go s.loop(every)
	return s
}

func (s *memSampler) loop(every time.Duration) {
	defer close(s.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for s.sample() {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
	}
}

// sample reads once; false after the first error, which ends sampling.
func (s *memSampler) sample() bool {
	m, err := s.read()
	if err != nil {
		s.err = err
		return false
	}
	s.peak.add(m)
	return true
}

// finish stops the sampler and returns the peaks and the error that
// ended sampling early, if any. Call it once.
func (s *memSampler) finish() (memPeak, error) {
	close(s.stop)
	<-s.done
	return s.peak, s.err
}

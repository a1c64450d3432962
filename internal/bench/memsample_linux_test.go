package bench

import (
	"syscall"
	"testing"
	"time"
)

// TestMemSamplerSelf catches a transient rise of this process's anonymous
// memory that is gone by the time sampling ends. The memory is mapped
// directly, so neither the Go heap's reuse nor the race detector's shadow
// memory blurs it.
func TestMemSamplerSelf(t *testing.T) {
	const size = 64 << 20
	base, err := readMemory(0)
	if err != nil {
		t.Fatal(err)
	}
	s := startMemSampler(func() (Memory, error) { return readMemory(0) }, 5*time.Millisecond)
	buf, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		s.finish()
		t.Fatal(err)
	}
	for i := 0; i < size; i += 4096 {
		buf[i] = 1
	}
	time.Sleep(50 * time.Millisecond)
	if err := syscall.Munmap(buf); err != nil {
		t.Fatal(err)
	}
	now, err := readMemory(0)
	if err != nil {
		t.Fatal(err)
	}
	peak, err := s.finish()
	if err != nil {
		t.Fatal(err)
	}
	if peak.anon < base.Anon+size-4<<20 || peak.file <= 0 {
		t.Errorf("peak %+v from a base of anon %d: the 64 MiB mapping was not seen", peak, base.Anon)
	}
	if now.Anon >= peak.anon-size/2 {
		t.Errorf("anon now %d, peak %d: the mapping was not released, the test proves nothing", now.Anon, peak.anon)
	}
}

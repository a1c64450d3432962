package bench

import (
	"os"
	"testing"
)

// TestMain lets the harness start this test binary as its fast upstream.
func TestMain(m *testing.M) {
	MaybeServeUpstream()
	os.Exit(m.Run())
}

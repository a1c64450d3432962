// Package storetest is the conformance suite for store.Store backends. Every
// backend runs it unchanged from its own tests:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, storetest.Factory{New: ..., Reopen: ...})
//	}
package storetest

import (
	"crypto/sha256"
	"sync"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
)

// Factory opens stores for the suite.
type Factory struct {
	// New opens a fresh, empty store whose logical clock is now. Backends
	// must use now for every expiry decision. New should register its own
	// cleanup (closing an already closed store must be harmless).
	New func(t *testing.T, now func() time.Time) store.Store
	// Reopen closes s and opens the same data again, to prove durability.
	// It may be nil for backends without persistence; the durability tests
	// are then not run.
	Reopen func(t *testing.T, s store.Store, now func() time.Time) store.Store
}

// Run runs the whole suite against the backend f opens.
func Run(t *testing.T, f Factory) {
	if f.New == nil {
		t.Fatal("storetest: Factory.New is nil")
	}
	t.Run("Tokens", func(t *testing.T) { testTokens(t, f) })
	t.Run("Enrollments", func(t *testing.T) { testEnrollments(t, f) })
	t.Run("Bind", func(t *testing.T) { testBind(t, f) })
	t.Run("Lookup", func(t *testing.T) { testLookup(t, f) })
	t.Run("TokensForEnrollment", func(t *testing.T) { testTokensForEnrollment(t, f) })
	t.Run("EnrollmentsForUser", func(t *testing.T) { testEnrollmentsForUser(t, f) })
	t.Run("LoginStates", func(t *testing.T) { testLoginStates(t, f) })
	t.Run("Secrets", func(t *testing.T) { testSecrets(t, f) })
	t.Run("Codes", func(t *testing.T) { testCodes(t, f) })
	t.Run("Families", func(t *testing.T) { testFamilies(t, f) })
	t.Run("TokensForFamily", func(t *testing.T) { testTokensForFamily(t, f) })
	t.Run("ScanEnrollments", func(t *testing.T) { testScanEnrollments(t, f) })
	t.Run("ScanTokens", func(t *testing.T) { testScanTokens(t, f) })
	t.Run("ScanFamilies", func(t *testing.T) { testScanFamilies(t, f) })
	t.Run("CountLoginStates", func(t *testing.T) { testCountLoginStates(t, f) })
	t.Run("TokensForUser", func(t *testing.T) { testTokensForUser(t, f) })
	t.Run("FamiliesForUser", func(t *testing.T) { testFamiliesForUser(t, f) })
	t.Run("Size", func(t *testing.T) { testSize(t, f) })
	t.Run("Lifecycle", func(t *testing.T) { testLifecycle(t, f) })
	if f.Reopen != nil {
		t.Run("Durability", func(t *testing.T) { testDurability(t, f) })
		t.Run("InventoryDurability", func(t *testing.T) { testInventoryDurability(t, f) })
	}
}

// epoch is the start of every test clock. It lies far from the wall clock
// on purpose: a backend that decides expiry by time.Now fails the suite.
var epoch = time.Date(2031, time.March, 4, 5, 6, 7, 0, time.UTC)

// Clock is a controllable logical clock, safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock that starts at start.
func NewClock(start time.Time) *Clock { return &Clock{now: start} }

// Now returns the clock's current time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// open returns a fresh store and the clock it runs on.
func open(t *testing.T, f Factory) (store.Store, *Clock) {
	t.Helper()
	c := NewClock(epoch)
	s := f.New(t, c.Now)
	if s == nil {
		t.Fatal("Factory.New returned nil")
	}
	return s, c
}

// hashOf returns the hash of a made-up access token.
func hashOf(seed string) store.Hash { return sha256.Sum256([]byte(seed)) }

package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
)

// putState stores a login state and fails the test on error.
func putState(t *testing.T, s store.Store, key string, ls store.LoginState) {
	t.Helper()
	if err := s.PutLoginState(context.Background(), key, ls); err != nil {
		t.Fatalf("PutLoginState(%q): %v", key, err)
	}
}

// assertTake takes the state under key and checks it equals want.
func assertTake(t *testing.T, s store.Store, key string, want store.LoginState) {
	t.Helper()
	got, err := s.TakeLoginState(context.Background(), key)
	if err != nil {
		t.Fatalf("TakeLoginState(%q): %v", key, err)
	}
	if !bytes.Equal(got.Data, want.Data) || !got.ExpiresAt.Equal(want.ExpiresAt) {
		t.Fatalf("TakeLoginState(%q) = {%q %v}, want {%q %v}", key, got.Data, got.ExpiresAt, want.Data, want.ExpiresAt)
	}
}

// assertTakeNotFound fails unless TakeLoginState reports ErrNotFound.
func assertTakeNotFound(t *testing.T, s store.Store, key string) {
	t.Helper()
	if _, err := s.TakeLoginState(context.Background(), key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("TakeLoginState(%q): got %v, want ErrNotFound", key, err)
	}
}

func testLoginStates(t *testing.T, f Factory) {
	ctx := context.Background()
	state := func(c *Clock, data string) store.LoginState {
		return store.LoginState{Data: []byte(data), ExpiresAt: c.Now().Add(10 * time.Minute)}
	}

	t.Run("PutThenTake", func(t *testing.T) {
		s, c := open(t, f)
		want := state(c, "state-one")
		putState(t, s, "k1", want)
		putState(t, s, "k2", state(c, "state-two"))
		assertTake(t, s, "k1", want)
		assertTake(t, s, "k2", state(c, "state-two"))
	})

	t.Run("SingleUse", func(t *testing.T) {
		s, c := open(t, f)
		putState(t, s, "k", state(c, "once"))
		assertTake(t, s, "k", state(c, "once"))
		assertTakeNotFound(t, s, "k")
	})

	t.Run("UnknownIsErrNotFound", func(t *testing.T) {
		s, _ := open(t, f)
		assertTakeNotFound(t, s, "nope")
	})

	t.Run("DuplicateIsErrExists", func(t *testing.T) {
		s, c := open(t, f)
		want := state(c, "first")
		putState(t, s, "k", want)
		if err := s.PutLoginState(ctx, "k", state(c, "second")); !errors.Is(err, store.ErrExists) {
			t.Fatalf("second PutLoginState: got %v, want ErrExists", err)
		}
		assertTake(t, s, "k", want)
	})

	t.Run("ExpiryByInjectedClock", func(t *testing.T) {
		s, c := open(t, f)
		live := state(c, "live")
		putState(t, s, "live", live)
		putState(t, s, "stale", state(c, "stale"))
		c.Advance(9 * time.Minute)
		assertTake(t, s, "live", live)
		c.Advance(time.Minute + time.Second)
		assertTakeNotFound(t, s, "stale")
		// An expired state stays unusable: it is not revived by time or by
		// the failed take.
		assertTakeNotFound(t, s, "stale")
	})

	t.Run("AlreadyExpiredIsNeverReturned", func(t *testing.T) {
		s, c := open(t, f)
		err := s.PutLoginState(ctx, "k", store.LoginState{Data: []byte("x"), ExpiresAt: c.Now().Add(-time.Second)})
		if err != nil {
			t.Fatalf("PutLoginState: %v", err)
		}
		assertTakeNotFound(t, s, "k")
	})

	t.Run("ConcurrentTakesOneWinner", func(t *testing.T) {
		s, c := open(t, f)
		const rounds, n = 5, 50
		for round := range rounds {
			key := fmt.Sprintf("k%d", round)
			want := state(c, "contended-"+key)
			putState(t, s, key, want)
			var (
				wg      sync.WaitGroup
				start   = make(chan struct{})
				mu      sync.Mutex
				winners int
				others  []error
			)
			for range n {
				wg.Go(func() {
					<-start
					got, err := s.TakeLoginState(ctx, key)
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err == nil:
						winners++
						if !bytes.Equal(got.Data, want.Data) {
							others = append(others, errors.New("winner got wrong data"))
						}
					case !errors.Is(err, store.ErrNotFound):
						others = append(others, err)
					}
				})
			}
			close(start)
			wg.Wait()
			if winners != 1 {
				t.Errorf("%s: %d of %d concurrent takes succeeded, want exactly 1", key, winners, n)
			}
			for _, err := range others {
				t.Errorf("%s: losing take: got %v, want ErrNotFound", key, err)
			}
		}
	})
}

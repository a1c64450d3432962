package badger

import (
	"fmt"

	"github.com/mdmauth/mdmauth/internal/store"
)

// spaceGuard refuses writes when the store's file system has less than min
// bytes free. It asks the file system on every write: a statfs costs
// microseconds, a synced commit milliseconds.
type spaceGuard struct {
	dir  string
	min  uint64
	free func(dir string) (uint64, error) // nil: no check
}

func newSpaceGuard(dir string, min int64) spaceGuard {
	if min < 0 {
		return spaceGuard{}
	}
	if min == 0 {
		min = DefaultMinFreeSpace
	}
	return spaceGuard{dir: dir, min: uint64(min), free: freeSpace}
}

// check returns an error wrapping store.ErrNoSpace below the reserve. A
// file system that cannot be asked is not taken for a full one.
func (g spaceGuard) check() error {
	if g.free == nil {
		return nil
	}
	free, err := g.free(g.dir)
	if err != nil || free >= g.min {
		return nil
	}
	return fmt.Errorf("%w: %d MiB free on the file system of %s, below the %d MiB reserve", store.ErrNoSpace, free>>20, g.dir, g.min>>20)
}

//go:build !unix

package badger

import "errors"

// freeSpace is not implemented here: the check is skipped.
func freeSpace(string) (uint64, error) { return 0, errors.New("free space unknown") }

//go:build !unix

package testenv

import "os"

// lockFile does nothing: without flock only the in-process mutex serializes installs.
func lockFile(*os.File) error { return nil }

// unlockFile does nothing.
func unlockFile(*os.File) error { return nil }

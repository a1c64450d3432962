//go:build !linux

package testenv

import "errors"

// Tmpfs is only available on Linux.
func Tmpfs(tb TB, size int64) (string, error) {
	return "", errors.New("testenv: Tmpfs needs Linux")
}

// Fill is only available on Linux.
func Fill(dir string, leave int64) (string, error) {
	return "", errors.New("testenv: Fill needs Linux")
}

package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Tmpfs mounts a tmpfs of size bytes on a new directory under tb's
// temporary directory and unmounts it at cleanup: a small file system of
// its own, to fill up in disk-full tests. Mounting needs root (or
// CAP_SYS_ADMIN), as the CI runs with.
func Tmpfs(tb TB, size int64) (string, error) {
	tb.Helper()
	dir := filepath.Join(tb.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", err
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		return "", fmt.Errorf("mounting a %d-byte tmpfs on %s (needs root or CAP_SYS_ADMIN): %w", size, dir, err)
	}
	tb.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			tb.Logf("unmounting %s: %v", dir, err)
		}
	})
	return dir, nil
}

// Fill writes a file in dir until its file system is full, then shrinks
// it so that leave bytes are free, and returns the file's path (remove it
// to free the space).
func Fill(dir string, leave int64) (string, error) {
	p := filepath.Join(dir, "filler")
	f, err := os.Create(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	var n int64
	for {
		w, err := f.Write(buf)
		n += int64(w)
		if err != nil {
			break // ENOSPC
		}
	}
	// Pages are freed when the file shrinks.
	if n -= leave; n < 0 {
		n = 0
	}
	if err := f.Truncate(n); err != nil {
		return "", err
	}
	return p, f.Sync()
}

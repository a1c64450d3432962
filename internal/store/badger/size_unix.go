//go:build unix

package badger

import (
	"io/fs"
	"syscall"
)

// diskBytes is the space a file occupies on disk: its allocated blocks,
// which for Badger's preallocated, sparse files is far less than their
// length.
func diskBytes(info fs.FileInfo) int64 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return int64(st.Blocks) * 512
	}
	return info.Size()
}

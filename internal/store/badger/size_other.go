//go:build !unix

package badger

import "io/fs"

// diskBytes is the space a file occupies on disk; here, its length.
func diskBytes(info fs.FileInfo) int64 { return info.Size() }

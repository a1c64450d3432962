package badger

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	badgerdb "github.com/dgraph-io/badger/v4"

	"github.com/mdmauth/mdmauth/internal/store"
)

// ErrNotEmpty is returned by Restore when the directory already holds
// something.
var ErrNotEmpty = errors.New("badger: restore: directory is not empty")

// restorePending bounds the batches a restore has in flight.
const restorePending = 256

// maxFrame bounds one frame of a backup stream. Badger's stream sends
// batches of about 100 MiB at most; a larger length prefix means the
// stream is damaged.
const maxFrame = 1 << 30

var _ store.Backuper = (*Store)(nil)

// Backup writes Badger's backup stream of everything the store holds to w:
// every live record and index entry, with its expiry. It reads one
// snapshot, so the store stays usable and the backup consistent while it
// runs. A done ctx or a Close ends it with an error; w then holds an
// incomplete stream.
func (s *Store) Backup(ctx context.Context, w io.Writer) error {
	leave, err := s.enterLong(ctx)
	if err != nil {
		return err
	}
	defer leave()
	sw := &stopWriter{w: w, ctx: ctx, s: s}
	stream := s.db.NewStream()
	stream.LogPrefix = "badger: backup"
	// Each producer reads in its own transaction; with one, the whole
	// stream comes from a single snapshot.
	stream.NumGo = 1
	if _, err := stream.Backup(sw, 0); err != nil {
		if sw.err != nil {
			// Badger reports its own cancellation instead.
			err = sw.err
		}
		return fmt.Errorf("badger: backup: %w", err)
	}
	return nil
}

// stopWriter passes writes to w until ctx is done, the store is being
// closed or w fails, and then fails them, which ends the backup stream. It
// remembers why. Badger's stream calls it from one goroutine at a time.
type stopWriter struct {
	w   io.Writer
	ctx context.Context
	s   *Store
	err error
}

func (sw *stopWriter) Write(p []byte) (int, error) {
	if sw.err == nil {
		if err := sw.ctx.Err(); err != nil {
			sw.err = err
		} else if sw.s.closing.Load() {
			sw.err = store.ErrClosed
		}
	}
	if sw.err != nil {
		return 0, sw.err
	}
	n, err := sw.w.Write(p)
	if err != nil {
		sw.err = err
	}
	return n, err
}

// Restore loads a stream written by Store.Backup into a new database in
// dir. It is for offline use: no Store may have dir open. dir is created
// if missing; if it exists it must be empty, or Restore fails with
// ErrNotEmpty and touches nothing. Records keep their expiry (Badger's
// TTLs are wall-clock times), and indexes are restored with them; Open
// then serves the restored data. If the restore fails, what it wrote to
// dir is removed again.
func Restore(dir string, r io.Reader) (err error) {
	if dir == "" {
		return errors.New("badger: restore: no directory given")
	}
	entries, err := os.ReadDir(dir)
	created := errors.Is(err, fs.ErrNotExist)
	switch {
	case created:
	case err != nil:
		return fmt.Errorf("badger: restore: %w", err)
	case len(entries) > 0:
		return fmt.Errorf("%w: %s", ErrNotEmpty, dir)
	}
	// What a failed restore wrote is removed: the directory if it created
	// it, else its contents, but only once it holds Badger's directory
	// lock, so that it never removes what another process put there.
	locked := false
	defer func() {
		if err != nil && (created || locked) {
			if cerr := removeRestored(dir, created); cerr != nil {
				err = errors.Join(err, cerr)
			}
		}
	}()
	db, err := badgerdb.Open(dbOptions(dir, slog.New(slog.DiscardHandler)))
	if err != nil {
		return fmt.Errorf("badger: restore: open %s: %w", dir, err)
	}
	locked = true
	lerr := db.Load(&frameReader{r: r}, restorePending)
	if cerr := db.Close(); cerr != nil || lerr != nil {
		return fmt.Errorf("badger: restore into %s: %w", dir, errors.Join(lerr, cerr))
	}
	return nil
}

// removeRestored removes what a failed Restore wrote: everything in dir,
// which was empty before, or dir itself if Restore created it.
func removeRestored(dir string, created bool) error {
	if created {
		return os.RemoveAll(dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		errs = append(errs, os.RemoveAll(filepath.Join(dir, e.Name())))
	}
	return errors.Join(errs...)
}

// frameReader passes a backup stream through, checking the length prefix
// of every frame (a little-endian uint64 before each encoded batch) as it
// goes by: Badger's Load allocates whatever a prefix says, so a damaged
// stream could otherwise crash or exhaust the restore.
type frameReader struct {
	r    io.Reader
	hdr  [8]byte
	nhdr int    // prefix bytes of the next frame seen so far
	left uint64 // bytes of the current frame not seen yet
}

func (f *frameReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	for b := p[:n]; len(b) > 0; {
		if f.left > 0 {
			k := min(uint64(len(b)), f.left)
			f.left -= k
			b = b[k:]
			continue
		}
		k := copy(f.hdr[f.nhdr:], b)
		f.nhdr += k
		b = b[k:]
		if f.nhdr < len(f.hdr) {
			continue
		}
		f.nhdr = 0
		f.left = binary.LittleEndian.Uint64(f.hdr[:])
		if f.left > maxFrame {
			return 0, fmt.Errorf("badger: restore: damaged backup stream: frame of %d bytes", f.left)
		}
	}
	return n, err
}

package soak

import (
	"fmt"

	badgerdb "github.com/dgraph-io/badger/v4"
)

// StoreContent is what a store directory holds: the latest version of
// every record that is neither deleted nor past its Badger TTL, by kind
// (the first byte of the key, see internal/store/badger), with the bytes
// of their keys and values.
type StoreContent struct {
	Records int64            `json:"records"`
	Bytes   int64            `json:"bytes"`
	ByKind  map[string]int64 `json:"records_by_kind"`
	BytesBy map[string]int64 `json:"bytes_by_kind"`
}

// storeKinds names the store's key kinds.
var storeKinds = map[byte]string{
	't': "token", 'e': "enrollment", 'x': "enrollment-token index", 'l': "login state", 's': "secret",
	'c': "authorization code", 'f': "token family", 'y': "family-token index", 'u': "user-enrollment index",
	'g': "user-grant index", 'm': "schema marker",
}

// ScanStore reads the Badger directory dir read-only (no process may be
// writing it: stop Caddy first) and returns its live content. This is
// done offline rather than with a backup through the admin API, because a
// backup stream allocates tens of MiB inside Caddy and would hide or fake
// memory growth.
func ScanStore(dir string) (StoreContent, error) {
	c := StoreContent{ByKind: map[string]int64{}, BytesBy: map[string]int64{}}
	db, err := badgerdb.Open(badgerdb.DefaultOptions(dir).WithReadOnly(true).WithLogger(nil).
		WithMetricsEnabled(false).WithValueLogFileSize(64 << 20))
	if err != nil {
		return c, fmt.Errorf("soak: opening the store read-only: %w", err)
	}
	err = db.View(func(txn *badgerdb.Txn) error {
		it := txn.NewIterator(badgerdb.IteratorOptions{PrefetchValues: false})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			k := item.Key()
			kind := "other"
			if len(k) > 0 {
				if name, ok := storeKinds[k[0]]; ok {
					kind = name
				}
			}
			n := int64(len(k)) + item.ValueSize()
			c.Records++
			c.Bytes += n
			c.ByKind[kind]++
			c.BytesBy[kind] += n
		}
		return nil
	})
	if cerr := db.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return c, fmt.Errorf("soak: scanning the store: %w", err)
	}
	return c, nil
}

// StoreFigures are the store's size on disk and its live content at the
// start of the soak (after the preload, before Caddy opened the store) and
// at its end (disk: the last sample with Caddy running; content: after
// Caddy stopped).
type StoreFigures struct {
	StartDisk     int64        `json:"start_disk_bytes"`
	Start         StoreContent `json:"start"`
	EndDisk       int64        `json:"end_disk_bytes"`
	EndDiskClosed int64        `json:"end_disk_closed_bytes"`
	End           StoreContent `json:"end"`
	// Written counts what the run added that the store keeps (expired
	// tokens are kept 30 days): access tokens issued after the preload,
	// and enrollments (each device's first check-in and re-enrollments).
	Written int64 `json:"written"`
}

// StoreLimits bound the store.
type StoreLimits struct {
	// At the end, disk ≤ MaxRatio × live bytes + Slack: what Badger has not
	// reclaimed (old versions, deleted and expired records, write-ahead
	// logs) stays a bounded part of it.
	MaxRatio float64 `json:"max_ratio"`
	Slack    int64   `json:"slack_bytes"`
	// Overhead bounds the growth of disk − live from start to end.
	Overhead Tolerance `json:"overhead"`
	// PerWrite and GrowthSlack bound the growth of the live data: at most
	// PerWrite bytes per token or enrollment written, plus GrowthSlack.
	// The store grows with the credentials it hands out (kept 30 days after
	// they expire), never with the requests it serves.
	PerWrite    int64 `json:"per_write_bytes"`
	GrowthSlack int64 `json:"growth_slack_bytes"`
}

// StoreVerdicts are the three verdicts on the store.
type StoreVerdicts struct {
	Bound, Overhead, Growth Verdict
}

// Verdict is one judged figure.
type Verdict struct {
	Measured string `json:"measured"`
	Limit    string `json:"limit"`
	Pass     bool   `json:"pass"`
}

// JudgeStore checks f against l.
func JudgeStore(f StoreFigures, l StoreLimits) StoreVerdicts {
	var v StoreVerdicts
	if f.End.Bytes <= 0 || f.EndDisk <= 0 {
		no := Verdict{Measured: "the store was not measured at the end"}
		return StoreVerdicts{Bound: no, Overhead: no, Growth: no}
	}
	limit := int64(l.MaxRatio*float64(f.End.Bytes)) + l.Slack
	v.Bound = Verdict{
		Measured: fmt.Sprintf("%s on disk for %s of live data (%.2f ×)", fmtBytes(f.EndDisk), fmtBytes(f.End.Bytes), float64(f.EndDisk)/float64(f.End.Bytes)),
		Limit:    "≤ " + fmtBytes(limit),
		Pass:     f.EndDisk <= limit,
	}
	start, end := f.StartDisk-f.Start.Bytes, f.EndDisk-f.End.Bytes
	over := float64(max(start, 0))*(1+l.Overhead.Rel) + l.Overhead.Abs
	v.Overhead = Verdict{
		Measured: fmt.Sprintf("%s → %s", fmtBytes(start), fmtBytes(end)),
		Limit:    "≤ " + fmtBytes(int64(over)),
		Pass:     float64(end) <= over,
	}
	grew := f.End.Bytes - f.Start.Bytes
	allowed := l.PerWrite*f.Written + l.GrowthSlack
	per := "-"
	if f.Written > 0 {
		per = fmt.Sprintf("%.0f", float64(grew)/float64(f.Written))
	}
	v.Growth = Verdict{
		Measured: fmt.Sprintf("%s for %d tokens and enrollments written (%s bytes each)", fmtBytes(grew), f.Written, per),
		Limit:    fmt.Sprintf("≤ %d bytes each + %s", l.PerWrite, fmtBytes(l.GrowthSlack)),
		Pass:     grew <= allowed,
	}
	return v
}

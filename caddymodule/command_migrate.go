package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/store/badger"
	"github.com/mdmauth/mdmauth/internal/store/postgres"
)

// DSNEnv is the environment variable migrate-store reads the PostgreSQL
// connection string from (never a flag: command lines are visible to
// every local user).
const DSNEnv = "MDMAUTH_PG_DSN"

// newMigrateCommand: caddy mdm-auth migrate-store --from-dir <dir> --to-postgres
func newMigrateCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "migrate-store (--from-dir <dir> --to-postgres | --from-postgres --to-dir <dir>) [--schema <name>]",
		Short: "Moves the token store between Badger and PostgreSQL (offline)",
		Long: `
Copies every token, enrollment, OAuth 2 token family and the store's own
secrets from one store to another, with every Caddy using either stopped.
The PostgreSQL connection string is read from $` + DSNEnv + `. The
destination must hold nothing yet (an empty directory, or a schema without
records). Sign-ins in flight (at most 10 minutes old) are not carried:
those users start again. Then point the mdm_auth global option at the new
store and start Caddy: devices carry on with their tokens.`,
		Args: cobra.NoArgs,
	}
	c.Flags().String("from-dir", "", "The Badger store directory to read")
	c.Flags().Bool("from-postgres", false, "Read the PostgreSQL store ($"+DSNEnv+")")
	c.Flags().String("to-dir", "", "The Badger store directory to create (empty or absent)")
	c.Flags().Bool("to-postgres", false, "Write the PostgreSQL store ($"+DSNEnv+")")
	c.Flags().String("schema", postgres.DefaultSchema, "The PostgreSQL schema of mdmauth's tables")
	wrap(c, func(ctx context.Context, out io.Writer, fl caddycmd.Flags) (int, error) {
		fromDir, toDir := fl.String("from-dir"), fl.String("to-dir")
		fromPG, toPG := fl.Bool("from-postgres"), fl.Bool("to-postgres")
		if (fromDir == "") == !fromPG || (toDir == "") == !toPG || fromPG && toPG || fromDir != "" && toDir != "" {
			return 1, errors.New("name one source (--from-dir or --from-postgres) and one destination of the other kind (--to-postgres or --to-dir)")
		}
		open := func(dir string) (store.Store, error) {
			if dir != "" {
				if dir == toDir {
					if err := emptyDir(dir); err != nil {
						return nil, err
					}
				} else if _, err := os.Stat(dir); err != nil {
					return nil, err
				}
				return badger.Open(badger.Options{Dir: dir, GCInterval: -1})
			}
			dsn := os.Getenv(DSNEnv)
			if dsn == "" {
				return nil, fmt.Errorf("$%s is not set", DSNEnv)
			}
			return postgres.Open(ctx, postgres.Options{DSN: dsn, Schema: fl.String("schema"), PurgeInterval: -1, OpTimeout: time.Minute})
		}
		src, err := open(fromDir)
		if err != nil {
			return 1, fmt.Errorf("opening the source (is Caddy still running?): %v", err)
		}
		defer src.Close()
		dst, err := open(toDir)
		if err != nil {
			return 1, fmt.Errorf("opening the destination: %v", err)
		}
		defer dst.Close()
		n, err := migrateStore(ctx, src, dst)
		if err != nil {
			return 1, err
		}
		fmt.Fprintf(out, "migrated %d tokens, %d enrollments, %d token families, %d secrets\n",
			n[store.KindToken], n[store.KindEnrollment], n[store.KindFamily], n[store.KindSecret])
		return 0, nil
	})
	return c
}

// emptyDir checks that dir is absent or an empty directory.
func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return err
	case len(entries) > 0:
		return fmt.Errorf("%s is not empty: migrate only into a new store", dir)
	}
	return nil
}

// errStop ends a Dump early.
var errStop = errors.New("stop")

// migrateStore copies every record of src into dst, which must hold none,
// then checks that dst holds as many of each kind as src gave. It returns
// the counts by kind.
func migrateStore(ctx context.Context, src, dst store.Store) (map[string]int, error) {
	d, ok := src.(store.Dumper)
	if !ok {
		return nil, errors.New("the source store cannot list its records")
	}
	l, ok := dst.(store.Loader)
	if !ok {
		return nil, errors.New("the destination store cannot take records")
	}
	dd, ok := dst.(store.Dumper)
	if !ok {
		return nil, errors.New("the destination store cannot list its records")
	}
	err := dd.Dump(ctx, func(store.Record) error { return errStop })
	switch {
	case errors.Is(err, errStop):
		return nil, errors.New("the destination already holds records: migrate only into a new store")
	case err != nil:
		return nil, fmt.Errorf("reading the destination: %v", err)
	}
	n := map[string]int{}
	if err := d.Dump(ctx, func(r store.Record) error {
		kind, err := r.Kind()
		if err != nil {
			return err
		}
		if err := l.Load(ctx, r); err != nil {
			return fmt.Errorf("writing a %s: %v", kind, err)
		}
		n[kind]++
		return nil
	}); err != nil {
		return nil, fmt.Errorf("migrating: %v", err)
	}
	got := map[string]int{}
	if err := dd.Dump(ctx, func(r store.Record) error {
		kind, err := r.Kind()
		got[kind]++
		return err
	}); err != nil {
		return nil, fmt.Errorf("checking the destination: %v", err)
	}
	for _, k := range []string{store.KindToken, store.KindEnrollment, store.KindFamily, store.KindSecret} {
		if got[k] != n[k] {
			return nil, fmt.Errorf("the destination holds %d %s records after the migration, the source gave %d", got[k], k, n[k])
		}
	}
	return n, nil
}

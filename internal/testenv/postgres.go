package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresDatabase is the database Postgres creates; DSN names it.
const PostgresDatabase = "mdmauth"

// postgresSuperuser is the cluster's superuser, trusted on loopback.
const postgresSuperuser = "postgres"

// PG is a private PostgreSQL server for tests: a cluster of its own in a
// temporary directory, listening on a free loopback port (and a Unix
// socket in that directory), trusting every local connection.
type PG struct {
	// Addr is the listen address, 127.0.0.1:<port>.
	Addr string

	bin  string // directory of initdb and postgres
	root string // the cluster: data/ and sock/
	port int
	as   *osUser // the user the server runs as; nil for the current one
	proc *process
}

// Postgres initialises a PostgreSQL cluster in a new temporary directory,
// starts the server on a free loopback port and creates the database
// PostgresDatabase. The binaries (initdb and postgres) are taken from
// PostgresBinDir. The server runs with fsync off: fast, and it survives
// Kill (data reaches the operating system at every commit), but not a
// crash of the machine. PostgreSQL refuses to run as root: as root, the
// cluster belongs to, and the server runs as, the user "postgres" (which
// Debian's packages create) or else "nobody". tb's cleanup kills the
// server and removes the cluster.
func Postgres(tb TB) (*PG, error) {
	tb.Helper()
	bin, err := PostgresBinDir()
	if err != nil {
		return nil, err
	}
	as, err := serverUser()
	if err != nil {
		return nil, err
	}
	// Not under tb.TempDir: the server's user must reach the cluster, and
	// a Unix socket path must stay short (about 100 bytes).
	root, err := os.MkdirTemp("", "mdmauth-pg-")
	if err != nil {
		return nil, fmt.Errorf("testenv: postgres: %w", err)
	}
	tb.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Mkdir(filepath.Join(root, "sock"), 0o700); err != nil {
		return nil, fmt.Errorf("testenv: postgres: %w", err)
	}
	if err := chownTree(root, as); err != nil {
		return nil, fmt.Errorf("testenv: postgres: %w", err)
	}
	p := &PG{bin: bin, root: root, as: as}
	if err := p.initdb(); err != nil {
		return nil, err
	}
	env := childEnv([]string{"PG", "LC_", "LANG"}, map[string]string{"LC_ALL": "C"})
	p.proc = newProcess("postgres", logFile(tb.TempDir(), "postgres"), filepath.Join(bin, "postgres"), nil, env, root)
	registerCleanup(tb, p.proc)
	// Runs first: the backends too, before the cluster is removed.
	tb.Cleanup(func() { _ = killServer(p.proc) })
	var lastErr error
	for range 3 { // another process may take the free port first
		if p.port, err = FreePort(); err != nil {
			return nil, err
		}
		p.Addr = "127.0.0.1:" + strconv.Itoa(p.port)
		p.proc.args = []string{
			"-D", filepath.Join(root, "data"),
			"-p", strconv.Itoa(p.port),
			"-h", "127.0.0.1",
			"-k", filepath.Join(root, "sock"),
			"-c", "fsync=off",
			"-c", "full_page_writes=off",
			"-c", "max_connections=200",
			"-c", "shared_buffers=16MB",
		}
		if lastErr = p.Start(); lastErr == nil {
			break
		}
		if !strings.Contains(p.proc.tail(tailLines), "could not bind") {
			return nil, lastErr
		}
	}
	if lastErr != nil {
		return nil, lastErr
	}
	if _, err := p.CreateDatabase(PostgresDatabase); err != nil {
		return nil, err
	}
	return p, nil
}

// PostgresBinDir returns the directory of the PostgreSQL server binaries:
// that of $POSTGRES_BIN (the postgres executable) if set, else that of
// initdb and postgres on the PATH, else the newest
// /usr/lib/postgresql/<version>/bin (Debian's layout).
func PostgresBinDir() (string, error) {
	has := func(dir string) bool {
		for _, name := range []string{"initdb", "postgres"} {
			if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.IsDir() {
				return false
			}
		}
		return true
	}
	if env := os.Getenv(EnvVar("postgres")); env != "" {
		dir := filepath.Dir(env)
		if !has(dir) {
			return "", fmt.Errorf("testenv: %s=%s: no initdb and postgres in %s", EnvVar("postgres"), env, dir)
		}
		return dir, nil
	}
	if initdb, err := exec.LookPath("initdb"); err == nil {
		if pg, err := exec.LookPath("postgres"); err == nil {
			// Symbolic links (as Debian's postgresql-common makes) lead
			// to the real directory, where both must be.
			if real, err := filepath.EvalSymlinks(pg); err == nil && has(filepath.Dir(real)) {
				return filepath.Dir(real), nil
			}
			if filepath.Dir(initdb) == filepath.Dir(pg) {
				return filepath.Dir(pg), nil
			}
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(dir string) int {
		n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
		return n
	}
	slices.SortFunc(dirs, func(a, b string) int { return version(b) - version(a) })
	for _, dir := range dirs {
		if has(dir) {
			return dir, nil
		}
	}
	return "", errors.New("testenv: no PostgreSQL server binaries (initdb, postgres) on the PATH or in /usr/lib/postgresql/*/bin; install Debian's postgresql package")
}

// initdb creates the cluster in root/data.
func (p *PG) initdb() error {
	cmd := exec.Command(filepath.Join(p.bin, "initdb"),
		"-D", filepath.Join(p.root, "data"),
		"-U", postgresSuperuser,
		"-A", "trust",
		"-E", "UTF8",
		"--locale=C",
		"--no-sync",
	)
	cmd.Dir = p.root
	cmd.Env = childEnv([]string{"PG", "LC_", "LANG"}, map[string]string{"LC_ALL": "C"})
	cmd.SysProcAttr = runAs(p.as)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("testenv: initdb: %w\n%s", err, lastLines(string(out), tailLines))
	}
	return nil
}

// DSN returns the URL of the database PostgresDatabase, for the
// superuser, without TLS.
func (p *PG) DSN() string { return p.DSNFor(PostgresDatabase) }

// DSNFor returns the URL of database db on this server.
func (p *PG) DSNFor(db string) string {
	return fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", postgresSuperuser, p.Addr, db)
}

// CreateDatabase creates database name and returns its DSN.
func (p *PG) CreateDatabase(name string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.DSNFor("postgres"))
	if err != nil {
		return "", fmt.Errorf("testenv: postgres: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("testenv: postgres: creating database %s: %w", name, err)
	}
	return p.DSNFor(name), nil
}

// Start starts the server (again, after Stop or Kill) on the same data
// and port, and waits until it accepts queries; after Kill that includes
// crash recovery.
func (p *PG) Start() error {
	if err := startAs(p.proc, p.as); err != nil {
		return err
	}
	if err := p.proc.waitReady(StartTimeout, p.ready); err != nil {
		_ = p.proc.kill()
		return err
	}
	return nil
}

// ready succeeds once the server answers a query.
func (p *PG) ready(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, p.DSNFor("postgres")+"&connect_timeout=5")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.Ping(ctx)
}

// Stop shuts the server down cleanly (PostgreSQL's fast shutdown: open
// sessions are ended) and waits for it to exit, killing it after a grace
// time. Clients then get "connection refused".
func (p *PG) Stop() error {
	pid := p.proc.pid()
	if pid == 0 {
		return ErrNotRunning
	}
	if err := interrupt(pid); err != nil {
		return p.proc.kill()
	}
	select {
	case <-p.proc.exited():
		return nil
	case <-time.After(stopTimeout):
		return p.proc.kill()
	}
}

// Kill kills the server and its backends at once, like a crash; Start
// then recovers from the write-ahead log.
func (p *PG) Kill() error { return killServer(p.proc) }

// PID returns the process id of the postmaster, or 0 when it is not
// running.
func (p *PG) PID() int { return p.proc.pid() }

// Logs returns the server's output so far.
func (p *PG) Logs() string { return p.proc.logs() }

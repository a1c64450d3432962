package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
)

// GoBenchPackages are the packages whose Go benchmarks cover the hot path:
// the guard end to end (bearer parse, check-in peek, lookup, hand-off),
// the check-in peek and bearer parsing, challenge rendering, token
// minting and authorization, and the store's token lookup.
var GoBenchPackages = []string{
	"./internal/gateway",
	"./internal/apple",
	"./internal/token",
	"./internal/store/badger",
}

// GoBenchPostgresPackage holds the PostgreSQL store's lookup benchmark
// (BenchmarkLookup: one round trip to a private server on loopback,
// serial and parallel); Run adds it to GoBenchPackages with
// Options.Postgres. Its TestMain starts the server, so it needs the
// PostgreSQL server binaries.
const GoBenchPostgresPackage = "./internal/store/postgres"

// RunGoBench runs "go test -run ^$ -bench . -benchmem" on pkgs in the
// module at root and returns the parsed results.
func RunGoBench(ctx context.Context, root, benchtime string, pkgs []string) ([]GoBench, error) {
	args := []string{"test", "-run", "^$", "-bench", ".", "-benchmem", "-count", "1"}
	if benchtime != "" {
		args = append(args, "-benchtime", benchtime)
	}
	cmd := exec.CommandContext(ctx, "go", append(args, pkgs...)...)
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("bench: go %s: %w\n%s", strings.Join(args, " "), err, lastLines(out.String(), 30))
	}
	return ParseGoBench(&out)
}

// ParseGoBench reads the output of go test -bench -benchmem. The package
// of each result is taken from the preceding "pkg:" line; the GOMAXPROCS
// suffix is dropped from names.
func ParseGoBench(r io.Reader) ([]GoBench, error) {
	var out []GoBench
	pkg := ""
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimSpace(p)
			continue
		}
		if !strings.HasPrefix(line, "Benchmark") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || len(f)%2 != 0 {
			continue // a benchmark's own log line
		}
		iters, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		b := GoBench{Package: pkg, Name: trimProcs(f[0]), Iterations: iters}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("bench: benchmark line %q: %w", line, err)
			}
			switch f[i+1] {
			case "ns/op":
				b.NsPerOp = v
			case "B/op":
				b.BytesPerOp = v
			case "allocs/op":
				b.AllocsPerOp = v
			}
		}
		out = append(out, b)
	}
	return out, sc.Err()
}

// trimProcs drops the "-<GOMAXPROCS>" suffix of a benchmark name.
func trimProcs(name string) string {
	i := strings.LastIndexByte(name, '-')
	if i < 0 {
		return name
	}
	if _, err := strconv.Atoi(name[i+1:]); err != nil {
		return name
	}
	return name[:i]
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

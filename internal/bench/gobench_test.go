package bench

import (
	"bytes"
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/testenv"
)

func TestParseGoBench(t *testing.T) {
	got, err := ParseGoBench(bytes.NewReader(readTestdata(t, "gobench.txt")))
	if err != nil {
		t.Fatal(err)
	}
	const gw, ap = "github.com/mdmauth/mdmauth/internal/gateway", "github.com/mdmauth/mdmauth/internal/apple"
	want := []GoBench{
		{Package: gw, Name: "BenchmarkGuardBoundToken", Iterations: 40210, NsPerOp: 29843, BytesPerOp: 13921, AllocsPerOp: 301},
		{Package: ap, Name: "BenchmarkPeekMessage", Iterations: 301012, NsPerOp: 3952, BytesPerOp: 456, AllocsPerOp: 9},
		{Package: ap, Name: "BenchmarkParseBearer", Iterations: 80000000, NsPerOp: 14.92},
		{Package: ap, Name: "BenchmarkWebChallenge", Iterations: 4250212, NsPerOp: 281.5, BytesPerOp: 176, AllocsPerOp: 3},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if _, err := ParseGoBench(strings.NewReader("BenchmarkX-2 10 many ns/op\n")); err == nil {
		t.Error("a malformed value was accepted")
	}
}

func TestTrimProcs(t *testing.T) {
	for in, want := range map[string]string{"BenchmarkA-2": "BenchmarkA", "BenchmarkA": "BenchmarkA", "BenchmarkA/sub-x": "BenchmarkA/sub-x", "BenchmarkA/b-16": "BenchmarkA/b"} {
		if got := trimProcs(in); got != want {
			t.Errorf("trimProcs(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRunGoBench(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	got, err := RunGoBench(ctx, root, "1x", []string{"./internal/apple"})
	if err != nil {
		t.Fatal(err)
	}
	b := findGoBench(got, "BenchmarkParseBearer")
	if b == nil || b.Package != "github.com/mdmauth/mdmauth/internal/apple" || b.Iterations != 1 || b.NsPerOp <= 0 {
		t.Errorf("BenchmarkParseBearer: %+v in %+v", b, got)
	}
	if _, err := RunGoBench(ctx, root, "1x", []string{"./no/such/package"}); err == nil {
		t.Error("RunGoBench of a missing package succeeded")
	}
}

// TestRunGoBenchPostgres: the PostgreSQL store's benchmark runs from the
// harness (its TestMain starts a server of its own) and both of its
// variants are parsed.
func TestRunGoBenchPostgres(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	got, err := RunGoBench(ctx, root, "1x", []string{GoBenchPostgresPackage})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"BenchmarkLookup/Serial", "BenchmarkLookup/Parallel"} {
		b := findGoBench(got, name)
		if b == nil || b.Package != "github.com/mdmauth/mdmauth/internal/store/postgres" || b.NsPerOp <= 0 || b.AllocsPerOp <= 0 {
			t.Errorf("%s: %+v in %+v", name, b, got)
		}
	}
}

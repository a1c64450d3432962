package bench

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// table is one section of the report, rendered as text or Markdown.
type table struct {
	title string
	head  []string
	rows  [][]string
	notes []string
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

// writeText renders t with aligned columns.
func (t *table) writeText(w io.Writer) error {
	fmt.Fprintf(w, "\n%s\n", t.title)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(t.head, "\t"))
	for _, r := range t.rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range t.notes {
		fmt.Fprintf(w, "  %s\n", n)
	}
	return nil
}

// writeMarkdown renders t as a Markdown table under a level-3 heading.
func (t *table) writeMarkdown(w io.Writer) {
	fmt.Fprintf(w, "\n### %s\n\n", t.title)
	fmt.Fprintf(w, "| %s |\n", strings.Join(t.head, " | "))
	seps := make([]string, len(t.head))
	for i := range seps {
		seps[i] = "---"
		if i > 0 {
			seps[i] = "---:"
		}
	}
	fmt.Fprintf(w, "|%s|\n", strings.Join(seps, "|"))
	for _, r := range t.rows {
		cells := make([]string, len(r))
		for i, c := range r {
			cells[i] = strings.ReplaceAll(c, "|", `\|`)
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
	if len(t.notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range t.notes {
			fmt.Fprintf(w, "%s\n", n)
		}
	}
}

func f0(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) }
func f1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }
func f2(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }
func f3(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) }
func f4(v float64) string { return strconv.FormatFloat(v, 'f', 4, 64) }

// errorsText renders an error count map, or "0".
func errorsText[V int | uint64](m map[string]V) string {
	if len(m) == 0 {
		return "0"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s×%d", k, m[k])
	}
	return strings.Join(parts, " ")
}

// rssNote explains the resident set columns.
var rssNote = "peak RSS: VmHWM, the whole resident set; anon: RssAnon (heap, stacks), what Caddy itself holds; " +
	"file: RssFile (executable, memory-mapped store files), page cache the kernel shares and reclaims under pressure; " +
	fmt.Sprintf("anon and file are the largest of samples every %d ms and at the end of the run.", memSampleInterval.Milliseconds())

// tables turns the report into its sections.
func (r *Report) tables() []table {
	var out []table
	if len(r.Load) > 0 {
		withC := false
		for _, f := range r.Load {
			withC = withC || f.Config == ConfigC
		}
		what := "A: reverse_proxy alone, B: mdm_auth + reverse_proxy"
		if withC {
			what += ", C: B with the PostgreSQL store"
		}
		t := table{
			title: fmt.Sprintf("%s (%d devices, %d connections, %.0f s per run, %d rounds; fixed rate = %.0f %% of A's max)",
				what, r.Settings.Devices, r.Settings.Connections, r.Settings.DurationSeconds, r.Settings.Rounds, 100*r.Settings.RateFraction),
			head: []string{"upstream", "config", "mode", "req/s", "p50 µs", "p90 µs", "p99 µs", "max µs", "errors",
				"Caddy CPU-s/1k", "upstream CPU-s/1k", "load gen CPU-s/1k"},
		}
		if withC {
			t.head = append(t.head, "PostgreSQL CPU-s/1k", "PostgreSQL connections")
		}
		t.head = append(t.head, "Caddy peak RSS MiB", "anon MiB", "file MiB")
		for _, f := range r.Load {
			mode := f.Mode
			if f.Mode == ModeFixed {
				mode = "fixed " + f0(f.Rate) + "/s"
			}
			row := []string{string(f.Upstream), string(f.Config), mode, f0(f.RPS), f1(f.Latency.P50), f1(f.Latency.P90),
				f1(f.Latency.P99), f1(f.Latency.Max), errorsText(f.Errors), f4(f.CaddyCPU), f4(f.UpstreamCPU), f4(f.LoadgenCPU)}
			if withC {
				db, conns := "", ""
				if f.Config == ConfigC {
					db, conns = f4(f.PostgresCPU), strconv.Itoa(f.PostgresConns)
				}
				row = append(row, db, conns)
			}
			t.add(append(row, f1(f.CaddyRSSMiB), f1(f.CaddyAnonRSSMiB), f1(f.CaddyFileRSSMiB))...)
		}
		t.notes = append(t.notes, rssNote)
		if withC {
			t.notes = append(t.notes, "PostgreSQL CPU-s/1k: the database server's whole process tree (postmaster, background processes, the backends of Caddy's connections, those that exited included); connections: Caddy's pool at the end of the run.")
		}
		out = append(out, t)
	}
	if len(r.Ratios) > 0 {
		title := "B / A"
		for _, x := range r.Ratios {
			if c, _ := x.Pair(); c == ConfigC {
				title = "B / A, C / A, C / B"
				break
			}
		}
		t := table{title: title, head: []string{"upstream", "ratio", "mode", "req/s", "p50", "p90", "p99", "max", "Caddy CPU per request", "Caddy peak RSS", "Caddy anon RSS"}}
		for _, x := range r.Ratios {
			c, base := x.Pair()
			t.add(string(x.Upstream), string(c)+" / "+string(base), x.Mode, f3(x.RPS), f3(x.P50), f3(x.P90), f3(x.P99), f3(x.Max), f3(x.CaddyCPU), f3(x.RSS), f3(x.AnonRSS))
		}
		out = append(out, t)
	}
	if len(r.Added) > 0 {
		title := "Latency added by mdm_auth at the fixed rate (B − A)"
		for _, a := range r.Added {
			if c, _ := a.Pair(); c == ConfigC {
				title = "Latency added at the fixed rate: by mdm_auth (B − A), by mdm_auth with PostgreSQL (C − A), by PostgreSQL over Badger (C − B)"
				break
			}
		}
		t := table{title: title,
			head: []string{"upstream", "difference", "rate /s", "p50 µs", "p90 µs", "p99 µs"}}
		for _, a := range r.Added {
			c, base := a.Pair()
			t.add(string(a.Upstream), string(c)+" − "+string(base), f0(a.Rate), f1(a.P50), f1(a.P90), f1(a.P99))
		}
		out = append(out, t)
	}
	if p := r.Postgres; p != nil && len(p.Sizing) > 0 {
		server := "PostgreSQL"
		if p.Version != "" {
			server += " " + p.Version
		}
		if p.SharedBuffers != "" {
			server += ", shared_buffers " + p.SharedBuffers
		}
		t := table{title: fmt.Sprintf("PostgreSQL store (C): sizing per 10,000 devices (%s; %d devices took %.1f MiB)",
			server, p.Devices, p.StoreMiB),
			head: []string{"upstream", "lookups/s, one instance", "Caddy CPU-s/1k", "PostgreSQL CPU-s/1k", "connections",
				"C − B p50 µs", "C − B p99 µs", "push to 10k devices s", "its Caddy CPU-s", "its PostgreSQL CPU-s", "database MiB per 10k"}}
		for _, s := range p.Sizing {
			t.add(string(s.Upstream), f0(s.LookupsPerSecond), f4(s.CaddyCPU), f4(s.PostgresCPU), strconv.Itoa(s.Connections),
				f1(s.AddedP50), f1(s.AddedP99), f1(s.PushSeconds), f1(s.PushCaddyCPU), f1(s.PushPostgresCPU), f1(s.StoreMiB))
		}
		t.notes = append(t.notes, "lookups/s: C's max rate, one Lookup (one round trip) per request, on this machine; CPU-s per 1,000 requests at the fixed rate, also the cores busy at 1,000 requests/s; "+
			"connections: the most Caddy's pool held; C − B: what the round trip adds over the embedded store at the fixed rate; "+
			"a push to 10,000 devices is 20,000 requests (Status Idle and one command result each), answered at C's max rate; database MiB: tables and indexes after VACUUM.",
			"The server is private, on loopback TCP, with fsync off (no measured request writes); Caddy's pool has its default size.")
		out = append(out, t)
	}
	if len(r.Scale) > 0 {
		t := table{title: "Scale: B against the fast upstream at max rate, requests spread over every live token",
			head: []string{"live tokens", "preload s", "store MiB", "reopen s", "Caddy ready s", "req/s", "p50 µs", "p99 µs", "errors", "Caddy CPU-s/1k", "Caddy peak RSS MiB", "anon MiB", "file MiB"}}
		for _, s := range r.Scale {
			t.add(strconv.Itoa(s.Tokens), f1(s.PreloadSeconds), f1(s.StoreMiB), f3(s.ReopenSeconds), f2(s.CaddyReadySeconds),
				f0(s.RPS), f1(s.Latency.P50), f1(s.Latency.P99), errorsText(s.Errors), f4(s.CaddyCPU), f1(s.CaddyRSSMiB),
				f1(s.CaddyAnonRSSMiB), f1(s.CaddyFileRSSMiB))
		}
		t.notes = append(t.notes, "preload: time to add that step's tokens; reopen: badger.Open after a clean close; Caddy ready: start until serving, store open included; peak RSS since Caddy's start.",
			rssNote)
		out = append(out, t)
	}
	if e := r.Enrollment; e != nil {
		t := table{title: fmt.Sprintf("Full enrollments through the gateway (%d at a time)", e.Concurrency),
			head: []string{"completed", "seconds", "per second", "errors", "p50 ms", "p99 ms", "Caddy CPU ms", "provider CPU ms", "NanoMDM CPU ms", "devices CPU ms"}}
		t.add(strconv.Itoa(e.Completed), f1(e.Seconds), f1(e.PerSecond), errorsText(e.Errors), f1(e.Latency.P50/1000), f1(e.Latency.P99/1000),
			f2(e.CaddyCPUms), f2(e.IdPCPUms), f2(e.NanoMDMCPUms), f2(e.LoadgenCPUms))
		t.notes = append(t.notes, "CPU per completed enrollment; Caddy's is the gateway's share, the provider is the zitadel example server.")
		out = append(out, t)
	}
	if len(r.GoBench) > 0 {
		t := table{title: "Go benchmarks (go test -bench -benchmem)", head: []string{"package", "benchmark", "ns/op", "B/op", "allocs/op"}}
		for _, b := range r.GoBench {
			t.add(strings.TrimPrefix(b.Package, "github.com/mdmauth/mdmauth/"), b.Name, f0(b.NsPerOp), f0(b.BytesPerOp), f0(b.AllocsPerOp))
		}
		out = append(out, t)
	}
	if len(r.Targets) > 0 {
		t := table{title: "Targets", head: []string{"status", "target", "want", "got", "gap"}}
		for _, x := range r.Targets {
			t.add(x.Status, x.Name, x.Want, x.Got, x.Gap)
		}
		out = append(out, t)
	}
	return out
}

// header is the first lines: where and when.
func (r *Report) header() []string {
	m := r.Machine
	mem := ""
	if m.MemoryMiB > 0 {
		mem = fmt.Sprintf(", %.1f GiB", float64(m.MemoryMiB)/1024)
	}
	lines := []string{
		fmt.Sprintf("Machine: %s, %d CPUs%s, %s/%s %s, %s", orUnknown(m.CPU), m.CPUs, mem, m.OS, m.Arch, m.Kernel, m.Go),
		fmt.Sprintf("Run: %s, %.0f s in all (setup: fleet %.1f s, preload %.1f s%s, NanoMDM check-ins %.1f s)",
			r.Started.Format("2006-01-02 15:04 MST"), r.Seconds, r.Setup.FleetSeconds, r.Setup.PreloadSeconds, pgPreload(r.Setup), r.Setup.NanoMDMSeconds),
	}
	return append(lines, r.Notes...)
}

// pgPreload is the PostgreSQL preload time for the header, if any.
func pgPreload(s Setup) string {
	if s.PostgresPreloadSeconds == 0 {
		return ""
	}
	return fmt.Sprintf(", PostgreSQL preload %.1f s", s.PostgresPreloadSeconds)
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown CPU"
	}
	return s
}

// WriteText renders the report as aligned tables.
func (r *Report) WriteText(w io.Writer) error {
	for _, l := range r.header() {
		fmt.Fprintln(w, l)
	}
	for _, t := range r.tables() {
		if err := t.writeText(w); err != nil {
			return err
		}
	}
	return nil
}

// WriteMarkdown renders the report as Markdown tables.
func (r *Report) WriteMarkdown(w io.Writer) {
	for _, l := range r.header() {
		fmt.Fprintf(w, "%s  \n", l)
	}
	for _, t := range r.tables() {
		t.writeMarkdown(w)
	}
}

// Markers delimit the generated results in docs/benchmarks.md.
const (
	ResultsBegin = "<!-- mdmbench results: begin -->"
	ResultsEnd   = "<!-- mdmbench results: end -->"
)

// UpdateDocs replaces the text between ResultsBegin and ResultsEnd in the
// file at path with r in Markdown.
func UpdateDocs(path string, r *Report) error {
	return ReplaceSection(path, ResultsBegin, ResultsEnd, func(md *bytes.Buffer) { r.WriteMarkdown(md) })
}

// ReplaceSection replaces the text between the markers begin and end in
// the file at path with what write writes (framed by newlines).
func ReplaceSection(path, begin, end string, write func(*bytes.Buffer)) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	i := bytes.Index(b, []byte(begin))
	j := bytes.Index(b, []byte(end))
	if i < 0 || j < i {
		return errors.New(path + " has no " + begin + " … " + end + " section")
	}
	var md bytes.Buffer
	md.Write(b[:i+len(begin)])
	md.WriteString("\n")
	write(&md)
	md.WriteString("\n")
	md.Write(b[j:])
	return os.WriteFile(path, md.Bytes(), 0o644)
}

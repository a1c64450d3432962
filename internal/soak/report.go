package soak

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/mdmauth/mdmauth/internal/bench"
	"github.com/mdmauth/mdmauth/internal/inventory"
)

// Report is everything a run measured and its verdict. WriteJSON and
// ReadJSON round-trip it.
type Report struct {
	// Command is how the run was started (set by cmd/mdmsoak).
	Command  string        `json:"command,omitempty"`
	Machine  bench.Machine `json:"machine"`
	Started  time.Time     `json:"started"`
	Settings Settings      `json:"settings"`
	Setup    Setup         `json:"setup"`
	// Seconds is the length of the soak (after the setup); Stopped says
	// why it ended before its duration ("" when it did not).
	Seconds float64 `json:"seconds"`
	Stopped string  `json:"stopped,omitempty"`
	Counts  Counts  `json:"counts"`
	// Responses counts every answer the devices and their browsers got,
	// by class of request and status.
	Responses map[string]map[string]int64 `json:"responses"`
	// Errors are the unexpected outcomes the soak's checks found;
	// HTTPFailures the 5xx answers and requests without an answer seen on
	// any request (inside sign-ins and refreshes too).
	Errors       Errors           `json:"errors"`
	HTTPFailures Errors           `json:"http_failures"`
	Final        *inventory.Stats `json:"final_stats,omitempty"`
	Samples      []Sample         `json:"samples"`
	Growth       []Growth         `json:"growth"`
	Store        StoreFigures     `json:"store"`
	Criteria     []Criterion      `json:"criteria"`
	Pass         bool             `json:"pass"`
	Notes        []string         `json:"notes,omitempty"`
}

// Settings are the options the run used.
type Settings struct {
	Devices        int         `json:"devices"`
	Users          int         `json:"users"`
	OAuth2Share    float64     `json:"oauth2_share"`
	DurationS      float64     `json:"duration_s"`
	WarmupS        float64     `json:"warmup_s"`
	SampleEveryS   float64     `json:"sample_every_s"`
	Rate           float64     `json:"rate"`
	Workers        int         `json:"workers"`
	AdminShare     float64     `json:"admin_share"`
	CommandShare   float64     `json:"command_share"`
	CheckInShare   float64     `json:"checkin_share"`
	ReenrollShare  float64     `json:"reenroll_share"`
	ExpireShare    float64     `json:"expire_share"`
	WebTTLS        float64     `json:"web_access_token_ttl_s"`
	OAuth2TTLS     float64     `json:"oauth2_access_token_ttl_s"`
	Goroutines     Tolerance   `json:"goroutines_tolerance"`
	FDs            Tolerance   `json:"fds_tolerance"`
	Memory         Tolerance   `json:"memory_tolerance"`
	Store          StoreLimits `json:"store_limits"`
	Seed           uint64      `json:"seed"`
	CaddyFromBuild bool        `json:"caddy_built"`
}

func settingsOf(o Options) Settings {
	return Settings{
		Devices: o.Devices, Users: o.Users, OAuth2Share: o.OAuth2Share,
		DurationS: o.Duration.Seconds(), WarmupS: o.Warmup.Seconds(), SampleEveryS: o.SampleEvery.Seconds(),
		Rate: o.Rate, Workers: o.Workers,
		AdminShare: o.AdminShare, CommandShare: o.CommandShare, CheckInShare: o.CheckInShare,
		ReenrollShare: o.ReenrollShare, ExpireShare: o.ExpireShare,
		WebTTLS: webTTL.Seconds(), OAuth2TTLS: oauth2TTL.Seconds(),
		Goroutines: o.Goroutines, FDs: o.FDs, Memory: o.Memory, Store: o.Store,
		Seed: o.Seed, CaddyFromBuild: o.CaddyBinary == "",
	}
}

// Setup times the preparation.
type Setup struct {
	FleetSeconds   float64 `json:"fleet_s"`
	PreloadSeconds float64 `json:"preload_s"`
	CheckInSeconds float64 `json:"checkin_s"`
}

// Counts are the run's totals, the devices' first check-ins included.
type Counts struct {
	Visits int64 `json:"visits"`
	// Accepted are MDM requests answered 200; RefusedExpired and
	// RefusedRevoked the expected 401s (an expired token, a token an admin
	// action or a CheckOut made invalid), each followed by a new token.
	Accepted       int64 `json:"accepted"`
	RefusedExpired int64 `json:"refused_expired"`
	RefusedRevoked int64 `json:"refused_revoked"`
	// SignInsWeb and SignInsOAuth2 are re-authentications through the
	// provider's login form; Enrollments new enrollments (each with a
	// sign-in).
	SignInsWeb    int64 `json:"sign_ins_web"`
	SignInsOAuth2 int64 `json:"sign_ins_oauth2"`
	Enrollments   int64 `json:"enrollments"`
	// Refreshes are successful refresh_token grants; RefreshesRefused the
	// expected refusals after an admin action; DeviceRefreshes the
	// emulator's own attempts (with a refresh token of a revoked family,
	// before it signs in).
	Refreshes        int64            `json:"refreshes"`
	RefreshesRefused int64            `json:"refreshes_refused"`
	DeviceRefreshes  int64            `json:"device_refresh_attempts"`
	AdminActions     int64            `json:"admin_actions"`
	Admin            map[string]int64 `json:"admin,omitempty"`
	Commands         int64            `json:"commands"`
	CheckIns         int64            `json:"checkins"`
	Leftover         int64            `json:"leftover_commands,omitempty"`
	// TokensIssued counts every access token handed out: the fleet's
	// first ones, sign-ins, enrollments and refreshes.
	TokensIssued int64 `json:"tokens_issued"`
}

// Criterion is one pass/fail line of the verdict.
type Criterion struct {
	Name     string `json:"name"`
	Measured string `json:"measured"`
	Limit    string `json:"limit"`
	Pass     bool   `json:"pass"`
}

// measured returns the samples taken under load after the warm-up.
func measured(samples []Sample, warmup float64) []Sample {
	var out []Sample
	for _, s := range samples {
		if s.T >= warmup && !s.AfterLoad {
			out = append(out, s)
		}
	}
	return out
}

// evaluate judges the run: it fills Growth, Store, Criteria and Pass.
func evaluate(r *Report, o Options) {
	m := measured(r.Samples, o.Warmup.Seconds())
	var gor, fds, anon []float64
	for _, s := range m {
		gor = append(gor, float64(s.Goroutines))
		fds = append(fds, float64(s.FDs))
		anon = append(anon, float64(s.Anon))
	}
	r.Growth = []Growth{
		JudgeGrowth("Caddy goroutines", UnitCount, gor, o.Goroutines),
		JudgeGrowth("Caddy open file descriptors", UnitCount, fds, o.FDs),
		JudgeGrowth("Caddy anonymous memory (RssAnon)", UnitBytes, anon, o.Memory),
	}
	sv := JudgeStore(r.Store, o.Store)

	c := r.Counts
	r.Criteria = []Criterion{
		{Name: "unexpected outcomes (wrong status, 401 on a live token, dead token accepted, failed sign-in, …)",
			Measured: strconv.FormatInt(r.Errors.Total, 10), Limit: "0", Pass: r.Errors.Total == 0},
		{Name: "5xx answers and requests without an answer (any request)",
			Measured: strconv.FormatInt(r.HTTPFailures.Total, 10), Limit: "0", Pass: r.HTTPFailures.Total == 0},
		{Name: "ran its whole duration", Measured: orDash(r.Stopped, "yes"), Limit: "yes", Pass: r.Stopped == ""},
	}
	churn, missing := churnOf(c, o)
	r.Criteria = append(r.Criteria, Criterion{Name: "churn: every kind happened", Measured: churn,
		Limit: "each > 0", Pass: len(missing) == 0})
	for _, g := range r.Growth {
		r.Criteria = append(r.Criteria, Criterion{Name: "no growth: " + g.Metric,
			Measured: growthMeasured(g), Limit: "≤ " + fmtValue(g.Limit, g.Unit), Pass: g.Pass})
	}
	for _, v := range []struct {
		name string
		v    Verdict
	}{
		{fmt.Sprintf("store on disk bounded by its live data (≤ %g × live + %s at the end)", o.Store.MaxRatio, fmtBytes(o.Store.Slack)), sv.Bound},
		{"no growth: store bytes on disk beyond its live data (start → end)", sv.Overhead},
		{"store grows with the credentials issued, not with the requests", sv.Growth},
	} {
		r.Criteria = append(r.Criteria, Criterion{Name: v.name, Measured: v.v.Measured, Limit: v.v.Limit, Pass: v.v.Pass})
	}
	r.Pass = true
	for _, cr := range r.Criteria {
		r.Pass = r.Pass && cr.Pass
	}
}

// churnOf lists the kinds of churn the options ask for with their counts,
// and those that never happened.
func churnOf(c Counts, o Options) (string, []string) {
	type kind struct {
		name string
		n    int64
		want bool
	}
	kinds := []kind{
		{"expired 401", c.RefusedExpired, o.ExpireShare > 0},
		{"revoked 401", c.RefusedRevoked, o.AdminShare > 0},
		{"web sign-ins", c.SignInsWeb, o.OAuth2Share < 1 && (o.ExpireShare > 0 || o.AdminShare > 0)},
		{"oauth2 sign-ins", c.SignInsOAuth2, o.OAuth2Share > 0 && o.AdminShare > 0},
		{"refreshes", c.Refreshes, o.OAuth2Share > 0 && o.ExpireShare > 0},
		{"admin actions", c.AdminActions, o.AdminShare > 0},
		{"commands", c.Commands, o.CommandShare > 0},
		{"check-ins", c.CheckIns, o.CheckInShare > 0},
		{"re-enrollments", c.Enrollments, o.ReenrollShare > 0},
	}
	var parts, missing []string
	for _, k := range kinds {
		if !k.want {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %d", k.name, k.n))
		if k.n == 0 {
			missing = append(missing, k.name)
		}
	}
	return strings.Join(parts, ", "), missing
}

func growthMeasured(g Growth) string {
	if g.Samples < MinJudgedSamples {
		return g.Reason
	}
	return fmt.Sprintf("%s → %s (%d samples)", fmtValue(g.First, g.Unit), fmtValue(g.Last, g.Unit), g.Samples)
}

func orDash(s, dflt string) string {
	if s == "" {
		return dflt
	}
	return s
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// ReadJSON reads a report written by WriteJSON.
func ReadJSON(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("soak: %s: %w", path, err)
	}
	return &r, nil
}

// table is a titled table for text and Markdown.
type table struct {
	title string
	head  []string
	rows  [][]string
}

func (r *Report) header() []string {
	s := r.Settings
	m := r.Machine
	lines := []string{
		fmt.Sprintf("Soak of %s, %s: %d devices (%.0f %% on the oauth2 site), %d users, %s (warm-up %s, a sample every %s), at most %g visits/s on %d workers.",
			r.Started.Format("2006-01-02 15:04 MST"), verdict(r.Pass), s.Devices, s.OAuth2Share*100, s.Users,
			dur(s.DurationS), dur(s.WarmupS), dur(s.SampleEveryS), s.Rate, s.Workers),
		fmt.Sprintf("Machine: %s, %d CPUs, %d MiB, %s/%s, Go %s.", m.CPU, m.CPUs, m.MemoryMiB, m.OS, m.Arch, m.Go),
		fmt.Sprintf("Setup: fleet %.1f s, preload %.1f s, first check-in of every device %.1f s; the soak ran %s.",
			r.Setup.FleetSeconds, r.Setup.PreloadSeconds, r.Setup.CheckInSeconds, dur(r.Seconds)),
	}
	if r.Stopped != "" {
		lines = append(lines, "Stopped: "+r.Stopped+".")
	}
	return append(lines, r.Notes...)
}

func verdict(pass bool) string {
	if pass {
		return "PASS"
	}
	return "FAIL"
}

func dur(s float64) string {
	return (time.Duration(s * float64(time.Second))).Round(time.Second).String()
}

func (r *Report) tables() []table {
	c := r.Counts
	per := func(n int64) string {
		if r.Seconds <= 0 {
			return ""
		}
		return fmt.Sprintf("%.2f/s", float64(n)/r.Seconds)
	}
	mdm := int64(0)
	for _, n := range r.Responses[classMDM] {
		mdm += n
	}
	counts := table{title: "What the fleet did (the first check-ins included)", head: []string{"what", "count", "rate over the soak"}, rows: [][]string{
		{"device visits", n(c.Visits), per(c.Visits)},
		{"MDM requests (all answers)", n(mdm), per(mdm)},
		{"  answered 200", n(c.Accepted), ""},
		{"  401 after expiry (expected)", n(c.RefusedExpired), ""},
		{"  401 after revocation (expected)", n(c.RefusedRevoked), ""},
		{"sign-ins again, web", n(c.SignInsWeb), per(c.SignInsWeb)},
		{"sign-ins again, OAuth 2", n(c.SignInsOAuth2), per(c.SignInsOAuth2)},
		{"re-enrollments (CheckOut, new enrollment)", n(c.Enrollments), per(c.Enrollments)},
		{"refreshes", n(c.Refreshes), per(c.Refreshes)},
		{"refreshes refused after revocation (expected)", n(c.RefreshesRefused), ""},
		{"the emulator's own refresh attempts", n(c.DeviceRefreshes), ""},
		{"admin actions", n(c.AdminActions), per(c.AdminActions)},
	}}
	for _, k := range sortedKeys(c.Admin) {
		counts.rows = append(counts.rows, []string{"  " + k, n(c.Admin[k]), ""})
	}
	counts.rows = append(counts.rows,
		[]string{"commands queued, polled and acknowledged", n(c.Commands), per(c.Commands)},
		[]string{"TokenUpdate check-ins", n(c.CheckIns), per(c.CheckIns)},
		[]string{"access tokens issued", n(c.TokensIssued), per(c.TokensIssued)},
	)
	if c.Leftover > 0 {
		counts.rows = append(counts.rows, []string{"commands left over from failed visits", n(c.Leftover), ""})
	}
	tabs := []table{counts}

	resp := table{title: "Answers by request class and status", head: []string{"class", "answers"}}
	for _, class := range sortedKeys(r.Responses) {
		var parts []string
		for _, st := range sortedKeys(r.Responses[class]) {
			parts = append(parts, fmt.Sprintf("%s: %d", st, r.Responses[class][st]))
		}
		resp.rows = append(resp.rows, []string{class, strings.Join(parts, ", ")})
	}
	tabs = append(tabs, resp)

	for _, e := range []struct {
		title string
		err   Errors
	}{{"Unexpected outcomes", r.Errors}, {"5xx answers and requests without an answer", r.HTTPFailures}} {
		if e.err.Total == 0 {
			continue
		}
		t := table{title: fmt.Sprintf("%s: %d", e.title, e.err.Total), head: []string{"kind", "count"}}
		for _, k := range sortedKeys(e.err.ByKind) {
			t.rows = append(t.rows, []string{k, n(e.err.ByKind[k])})
		}
		for i, ex := range e.err.Examples {
			t.rows = append(t.rows, []string{fmt.Sprintf("example %d", i+1), ex})
		}
		tabs = append(tabs, t)
	}

	samp := table{title: "Caddy and its store over time (samples; the warm-up is not judged)",
		head: []string{"t s", "goroutines", "fds", "RSS MiB", "anon MiB", "file MiB", "CPU s", "store MiB", "MDM requests", "tokens issued"}}
	step := max(1, len(r.Samples)/20)
	for i, s := range r.Samples {
		if i%step != 0 && i != len(r.Samples)-1 {
			continue
		}
		t := fmt.Sprintf("%.0f", s.T)
		switch {
		case s.AfterLoad:
			t += " (after the load)"
		case s.T < r.Settings.WarmupS:
			t += " (warm-up)"
		}
		samp.rows = append(samp.rows, []string{t, strconv.Itoa(s.Goroutines), strconv.Itoa(s.FDs),
			fmt.Sprintf("%.1f", mib(s.RSS)), fmt.Sprintf("%.1f", mib(s.Anon)), fmt.Sprintf("%.1f", mib(s.File)),
			fmt.Sprintf("%.1f", s.CPU), fmt.Sprintf("%.1f", mib(s.StoreDisk)),
			n(s.Counts.Requests), n(s.Counts.TokensIssued)})
	}
	tabs = append(tabs, samp)

	st := r.Store
	store := table{title: "The store: on disk and what it holds (live: the latest version of every record kept)",
		head: []string{"", "on disk MiB", "live MiB", "records"}, rows: [][]string{
			{"start (after the preload)", fmt.Sprintf("%.2f", mib(st.StartDisk)), fmt.Sprintf("%.2f", mib(st.Start.Bytes)), n(st.Start.Records)},
			{"end (Caddy running / stopped)", fmt.Sprintf("%.2f / %.2f", mib(st.EndDisk), mib(st.EndDiskClosed)), fmt.Sprintf("%.2f", mib(st.End.Bytes)), n(st.End.Records)},
		}}
	for _, k := range sortedKeys(st.End.ByKind) {
		store.rows = append(store.rows, []string{"  " + k, "", fmt.Sprintf("%.2f", mib(st.End.BytesBy[k])), n(st.End.ByKind[k])})
	}
	tabs = append(tabs, store)

	if f := r.Final; f != nil {
		var states []string
		for _, k := range sortedKeys(stringKeys(f.Enrollments)) {
			states = append(states, fmt.Sprintf("%s %d", k, stringKeys(f.Enrollments)[k]))
		}
		tabs = append(tabs, table{title: "The store at the end (admin API statistics)", head: []string{"what", "value"}, rows: [][]string{
			{"enrollments", strings.Join(states, ", ")},
			{"live access tokens", strconv.Itoa(f.LiveTokens)},
			{"live OAuth 2 token families", strconv.Itoa(f.LiveFamilies)},
			{"pending sign-ins", strconv.Itoa(f.PendingSignIns)},
			{"store size", fmtBytes(f.StoreBytes)},
		}})
	}

	crit := table{title: "Verdict: " + verdict(r.Pass), head: []string{"criterion", "measured", "limit", "result"}}
	for _, cr := range r.Criteria {
		crit.rows = append(crit.rows, []string{cr.Name, cr.Measured, cr.Limit, verdict(cr.Pass)})
	}
	return append(tabs, crit)
}

func stringKeys[K ~string, V any](m map[K]V) map[string]V {
	out := make(map[string]V, len(m))
	for k, v := range m {
		out[string(k)] = v
	}
	return out
}

func n(v int64) string { return strconv.FormatInt(v, 10) }

// WriteText renders the report as plain-text tables.
func (r *Report) WriteText(w io.Writer) error {
	var b bytes.Buffer
	for _, l := range r.header() {
		b.WriteString(l + "\n")
	}
	for _, t := range r.tables() {
		b.WriteString("\n" + t.title + "\n")
		widths := make([]int, len(t.head))
		for _, row := range append([][]string{t.head}, t.rows...) {
			for i, c := range row {
				widths[i] = max(widths[i], len([]rune(c)))
			}
		}
		for _, row := range append([][]string{t.head}, t.rows...) {
			for i, c := range row {
				if i == len(row)-1 {
					b.WriteString(c)
					break
				}
				b.WriteString(c + strings.Repeat(" ", widths[i]-len([]rune(c))+2))
			}
			b.WriteString("\n")
		}
	}
	_, err := w.Write(b.Bytes())
	return err
}

// WriteMarkdown renders the report as Markdown.
func (r *Report) WriteMarkdown(w io.Writer) {
	for _, l := range r.header() {
		fmt.Fprintf(w, "%s  \n", l)
	}
	for _, t := range r.tables() {
		fmt.Fprintf(w, "\n**%s**\n\n| %s |\n|%s\n", t.title, strings.Join(t.head, " | "), strings.Repeat(" --- |", len(t.head)))
		for _, row := range t.rows {
			cells := make([]string, len(row))
			for i, c := range row {
				// Markdown drops leading spaces: keep sub-rows indented.
				trimmed := strings.TrimLeft(c, " ")
				cells[i] = strings.Repeat("&nbsp;", len(c)-len(trimmed)) + strings.ReplaceAll(trimmed, "|", `\|`)
			}
			fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
		}
	}
}

// Markers delimit the generated results in docs/soak.md.
const (
	ResultsBegin = "<!-- mdmsoak results: begin -->"
	ResultsEnd   = "<!-- mdmsoak results: end -->"
)

// UpdateDocs replaces the text between ResultsBegin and ResultsEnd in the
// file at path with r in Markdown, after the command that produced it.
func UpdateDocs(path string, r *Report) error {
	return bench.ReplaceSection(path, ResultsBegin, ResultsEnd, func(md *bytes.Buffer) {
		if r.Command != "" {
			fmt.Fprintf(md, "```sh\n%s\n```\n\n", r.Command)
		}
		r.WriteMarkdown(md)
	})
}

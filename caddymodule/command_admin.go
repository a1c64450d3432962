package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/mdmauth/mdmauth/internal/admin"
	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/store/badger"
)

// addAdminCommands adds the operator subcommands, which call the admin
// API (or, for backup and restore, open the store offline).
func addAdminCommands(parent *cobra.Command) {
	parent.AddCommand(newListCommand(), newShowCommand(), newRevokeCommand(), newProfileCommand(),
		newStatsCommand(), newBackupCommand(), newRestoreCommand(), newMigrateCommand())
	for _, name := range []string{"reauth", "block", "unblock", "offboard", "remove"} {
		parent.AddCommand(newStateCommand(name))
	}
}

// stateHelp says what each state command does.
var stateHelp = map[string]string{
	"reauth":   "Forces a new sign-in: the device's next request is challenged and its refresh tokens are revoked",
	"block":    "Blocks a lost or stolen device: every request is challenged, sign-in is refused, its tokens are revoked",
	"unblock":  "Ends a block: the device must sign in again (blocked → reauth)",
	"offboard": "Lets the MDM reach the device without a token until CheckOut or the deadline, to remove it",
	"remove":   "Forgets the enrollment as a CheckOut would and revokes its tokens; a new sign-in enrolls the device afresh",
}

// apiFlags adds the flags that find the admin endpoint, and --json.
func apiFlags(c *cobra.Command) {
	c.Flags().String("address", "", "The address of Caddy's admin endpoint (default: from --config, else localhost:2019)")
	c.Flags().StringP("config", "c", "", "Configuration file to read the admin address from")
	c.Flags().StringP("adapter", "a", "", "Name of the config adapter to use for --config")
	c.Flags().Bool("json", false, "Print the admin API's JSON answer")
}

// wrap runs f with an interrupt-aware context and the command's output.
func wrap(c *cobra.Command, f func(ctx context.Context, out io.Writer, fl caddycmd.Flags) (int, error)) {
	c.RunE = caddycmd.WrapCommandFuncForCobra(func(fl caddycmd.Flags) (int, error) {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
		defer stop()
		return f(ctx, c.OutOrStdout(), fl)
	})
}

// apiClient calls the admin API.
type apiClient struct{ addr string }

func newAPIClient(fl caddycmd.Flags) (*apiClient, error) {
	addr, err := caddycmd.DetermineAdminAPIAddress(fl.String("address"), nil, fl.String("config"), fl.String("adapter"))
	if err != nil {
		return nil, fmt.Errorf("finding the admin endpoint: %v", err)
	}
	return &apiClient{addr: addr}, nil
}

// request sends a request to the admin API; an error answer becomes an
// error carrying the API's message.
func (c *apiClient) request(method, uri string, body any) (*http.Response, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		r = bytes.NewReader(b)
	}
	res, err := caddycmd.AdminAPIRequest(c.addr, method, admin.DefaultPrefix+strings.TrimPrefix(uri, "/"), nil, r)
	if err != nil {
		return nil, apiError(err)
	}
	return res, nil
}

// call sends a request and decodes the JSON answer into out; raw, when
// not nil, receives the answer as sent.
func (c *apiClient) call(method, uri string, body, out any, raw *[]byte) error {
	res, err := c.request(method, uri, body)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("reading the answer: %v", err)
	}
	if raw != nil {
		*raw = b
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("decoding the answer: %v", err)
		}
	}
	return nil
}

// apiError turns caddycmd.AdminAPIRequest's error ("caddy responded with
// error: HTTP 409: {"error":"…"}") into "HTTP 409: …".
func apiError(err error) error {
	msg := err.Error()
	i := strings.Index(msg, "HTTP ")
	j := strings.Index(msg, ": {")
	if i < 0 || j < i {
		return err
	}
	var body struct {
		Error string `json:"error"`
	}
	if json.Unmarshal([]byte(msg[j+2:]), &body) != nil || body.Error == "" {
		return err
	}
	return errors.New(msg[i:j] + ": " + body.Error)
}

// printJSON prints an answer as received, indented.
func printJSON(out io.Writer, raw []byte) error {
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		_, err = out.Write(raw)
		return err
	}
	b.WriteByte('\n')
	_, err := out.Write(b.Bytes())
	return err
}

// parseUser reads --user iss,sub (split at the first comma: issuers are
// URLs, subjects may hold anything).
func parseUser(s string) (iss, sub string, err error) {
	iss, sub, ok := strings.Cut(s, ",")
	if !ok || iss == "" || sub == "" {
		return "", "", fmt.Errorf("--user wants <issuer>,<subject>, e.g. https://idp.example.com,248289761001")
	}
	return iss, sub, nil
}

func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04")
}

func whenPtr(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return when(*t)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// table writes rows under a header, aligned.
func table(out io.Writer, header string, rows [][]string) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

func enrollmentRows(list []admin.Enrollment) [][]string {
	var rows [][]string
	for _, e := range list {
		owner := "-"
		if e.Subject != "" {
			owner = e.Issuer + "," + e.Subject
		}
		rows = append(rows, []string{e.ID, string(e.State), dash(e.Mode), dash(e.ManagedAppleID), dash(e.Platform),
			dash(e.TokenID), when(e.UpdatedAt), owner})
	}
	return rows
}

const enrollmentHeader = "ENROLLMENT\tSTATE\tMODE\tMANAGED APPLE ID\tPLATFORM\tTOKEN ID\tUPDATED (UTC)\tUSER (ISS,SUB)"

func tokenRows(list []admin.Token) [][]string {
	var rows [][]string
	for _, t := range list {
		rows = append(rows, []string{t.TokenID, t.State, dash(t.EnrollmentID), t.ManagedAppleID, t.Mode,
			dash(t.FamilyID), when(t.IssuedAt), when(t.ExpiresAt), whenPtr(t.RevokedAt)})
	}
	return rows
}

const tokenHeader = "TOKEN ID\tSTATE\tENROLLMENT\tMANAGED APPLE ID\tMODE\tFAMILY\tISSUED (UTC)\tEXPIRES\tREVOKED"

// newListCommand: caddy mdm-auth list
func newListCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "list [--user <iss>,<sub> | --managed-apple-id <id> | --mode byod|adde | --state <state>] [--tokens [--enrollment <id>] [--live]] [--limit <n>] [--all]",
		Short: "Lists enrollments (or, with --tokens, access tokens)",
		Long: `
Lists enrollments in id order, one page (--limit, default 100, at most
1000) at a time: the last line names the cursor of the next page
(--cursor); --all fetches every page. Filters combine. With --tokens it lists access tokens instead (never the tokens
themselves: their 24-digit token ids).`,
		Args: cobra.NoArgs,
	}
	apiFlags(c)
	c.Flags().String("user", "", "Only the user <issuer>,<subject> (the ID token's iss and sub)")
	c.Flags().String("managed-apple-id", "", "Only this Managed Apple ID")
	c.Flags().String("mode", "", "Only this mode: byod or adde")
	c.Flags().String("state", "", "Only this state: active, reauth, blocked, offboarding, removed (enrollments)")
	c.Flags().Bool("tokens", false, "List access tokens instead of enrollments")
	c.Flags().String("enrollment", "", "Only the tokens of this enrollment (with --tokens)")
	c.Flags().Bool("live", false, "Only live (unexpired, unrevoked) tokens (with --tokens)")
	c.Flags().Int("limit", admin.DefaultLimit, "Page size (1 to 1000)")
	c.Flags().String("cursor", "", "Start at this cursor (from a previous page)")
	c.Flags().Bool("all", false, "Fetch every page")
	wrap(c, runList)
	return c
}

func runList(_ context.Context, out io.Writer, fl caddycmd.Flags) (int, error) {
	cl, err := newAPIClient(fl)
	if err != nil {
		return 1, err
	}
	tokens := fl.Bool("tokens")
	q := url.Values{}
	if u := fl.String("user"); u != "" {
		iss, sub, err := parseUser(u)
		if err != nil {
			return 1, err
		}
		q.Set("iss", iss)
		q.Set("sub", sub)
	}
	set := func(key, flag string) {
		if v := fl.String(flag); v != "" {
			q.Set(key, v)
		}
	}
	set("managed_apple_id", "managed-apple-id")
	set("mode", "mode")
	set("cursor", "cursor")
	if tokens {
		set("enrollment_id", "enrollment")
		if fl.Bool("live") {
			q.Set("live", "true")
		}
		if fl.String("state") != "" {
			return 1, fmt.Errorf("--state lists enrollments; with --tokens use --live")
		}
	} else {
		set("state", "state")
		if fl.String("enrollment") != "" || fl.Bool("live") {
			return 1, fmt.Errorf("--enrollment and --live go with --tokens")
		}
	}
	limit, err := fl.GetInt("limit")
	if err != nil {
		return 1, err
	}
	q.Set("limit", fmt.Sprint(limit))
	path := "enrollments?"
	if tokens {
		path = "tokens?"
	}
	var enrs []admin.Enrollment
	var toks []admin.Token
	next := ""
	var raw []byte
	for {
		if tokens {
			var page admin.TokenList
			if err := cl.call(http.MethodGet, path+q.Encode(), nil, &page, &raw); err != nil {
				return 1, err
			}
			toks, next = append(toks, page.Tokens...), page.NextCursor
		} else {
			var page admin.EnrollmentList
			if err := cl.call(http.MethodGet, path+q.Encode(), nil, &page, &raw); err != nil {
				return 1, err
			}
			enrs, next = append(enrs, page.Enrollments...), page.NextCursor
		}
		if next == "" || !fl.Bool("all") {
			break
		}
		q.Set("cursor", next)
	}
	if fl.Bool("json") {
		if !fl.Bool("all") {
			return 0, printJSON(out, raw)
		}
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if tokens {
			return 0, enc.Encode(admin.TokenList{Tokens: toks})
		}
		return 0, enc.Encode(admin.EnrollmentList{Enrollments: enrs})
	}
	if tokens {
		err = table(out, tokenHeader, tokenRows(toks))
	} else {
		err = table(out, enrollmentHeader, enrollmentRows(enrs))
	}
	if err != nil {
		return 1, err
	}
	if next != "" {
		fmt.Fprintf(out, "more: --cursor %s (or --all)\n", next)
	}
	return 0, nil
}

// newShowCommand: caddy mdm-auth show <enrollment-id>
func newShowCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "show <enrollment-id>",
		Short: "Shows an enrollment with its tokens and token families",
		Args:  cobra.ExactArgs(1),
	}
	apiFlags(c)
	wrap(c, func(_ context.Context, out io.Writer, fl caddycmd.Flags) (int, error) {
		cl, err := newAPIClient(fl)
		if err != nil {
			return 1, err
		}
		var d admin.EnrollmentDetail
		var raw []byte
		if err := cl.call(http.MethodGet, "enrollments/"+url.PathEscape(fl.Arg(0)), nil, &d, &raw); err != nil {
			return 1, err
		}
		if fl.Bool("json") {
			return 0, printJSON(out, raw)
		}
		e := d.Enrollment
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		for _, kv := range [][2]string{
			{"enrollment", e.ID}, {"state", string(e.State)}, {"deadline", whenPtr(e.Deadline)},
			{"user", dash(e.Issuer) + " " + dash(e.Subject)}, {"managed apple id", dash(e.ManagedAppleID)},
			{"mode", dash(e.Mode)}, {"platform", dash(e.Platform)}, {"token id", dash(e.TokenID)},
			{"created", when(e.CreatedAt)}, {"updated", when(e.UpdatedAt)},
		} {
			fmt.Fprintf(tw, "%s:\t%s\n", kv[0], kv[1])
		}
		if err := tw.Flush(); err != nil {
			return 1, err
		}
		fmt.Fprintf(out, "\ntokens (%d):\n", len(d.Tokens))
		if err := table(out, tokenHeader, tokenRows(d.Tokens)); err != nil {
			return 1, err
		}
		fmt.Fprintf(out, "\nOAuth 2 token families (%d):\n", len(d.Families))
		var rows [][]string
		for _, f := range d.Families {
			rows = append(rows, []string{f.FamilyID, f.State, dash(f.RevokeReason), when(f.SignedInAt), fmt.Sprint(f.Generation),
				when(f.ExpiresAt), whenPtr(f.RevokedAt)})
		}
		return 0, table(out, "FAMILY\tSTATE\tREASON\tSIGNED IN (UTC)\tROTATIONS\tEXPIRES\tREVOKED", rows)
	})
	return c
}

// newRevokeCommand: caddy mdm-auth revoke <token-id> | --enrollment <id> | --user <iss>,<sub>
func newRevokeCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "revoke <token-id> | --enrollment <id> | --user <iss>,<sub>",
		Short: "Revokes a token (with its OAuth 2 family), or every token of an enrollment or a user",
		Long: `
Revokes access tokens without changing any enrollment's state: the device
is challenged on its next request and signs in again. An OAuth 2 token's
family (its refresh token) is revoked with it, or the next refresh would
undo the revocation.`,
		Args: cobra.MaximumNArgs(1),
	}
	apiFlags(c)
	c.Flags().String("enrollment", "", "Revoke every token and family of this enrollment")
	c.Flags().String("user", "", "Revoke every token and family of the user <issuer>,<subject>")
	wrap(c, func(_ context.Context, out io.Writer, fl caddycmd.Flags) (int, error) {
		enr, user := fl.String("enrollment"), fl.String("user")
		if n := btoi(fl.NArg() == 1) + btoi(enr != "") + btoi(user != ""); n != 1 {
			return 1, fmt.Errorf("name one of: a token id, --enrollment or --user")
		}
		cl, err := newAPIClient(fl)
		if err != nil {
			return 1, err
		}
		switch {
		case fl.NArg() == 1:
			var res admin.RevokeResult
			var raw []byte
			if err := cl.call(http.MethodPost, "tokens/"+url.PathEscape(fl.Arg(0))+"/revoke", nil, &res, &raw); err != nil {
				return 1, err
			}
			if fl.Bool("json") {
				return 0, printJSON(out, raw)
			}
			fam := ""
			if res.Family != nil {
				fam = " and its family " + res.Family.FamilyID
			}
			fmt.Fprintf(out, "token %s%s revoked (%d tokens, %d families were live)\n", res.Token.TokenID, fam, res.Tokens, res.Families)
			return 0, nil
		case enr != "":
			return runEnrollmentAction(cl, out, fl, "revoke", enr, nil)
		}
		return runUserAction(cl, out, fl, "revoke", user, nil)
	})
	return c
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// newStateCommand: caddy mdm-auth reauth|block|unblock|offboard|remove <enrollment-id> | --user <iss>,<sub>
func newStateCommand(name string) *cobra.Command {
	use := name + " <enrollment-id> | --user <iss>,<sub>"
	if name == "offboard" {
		use += " [--within <duration> | --deadline <RFC 3339>]"
	}
	c := &cobra.Command{
		Use:   use,
		Short: stateHelp[name],
		Long: "\n" + stateHelp[name] + `.

With --user, every enrollment of the user (the ID token's iss and sub) is
changed: those already in that state and removed ones are left alone, and
(except for unblock) every token and token family of the user is revoked,
a device in the middle of enrolling included. The exit status is 1 when any
enrollment could not be changed.`,
		Args: cobra.MaximumNArgs(1),
	}
	apiFlags(c)
	c.Flags().String("user", "", "Apply to every enrollment of the user <issuer>,<subject>")
	if name == "offboard" {
		c.Flags().String("within", "", "Offboarding deadline from now, e.g. 72h (default 168h)")
		c.Flags().String("deadline", "", "Offboarding deadline, RFC 3339 (e.g. 2030-01-02T15:04:05Z)")
	}
	wrap(c, func(_ context.Context, out io.Writer, fl caddycmd.Flags) (int, error) {
		user := fl.String("user")
		if (fl.NArg() == 1) == (user != "") {
			return 1, fmt.Errorf("name an enrollment id or --user, not both")
		}
		var body *admin.ActionRequest
		if name == "offboard" {
			body = &admin.ActionRequest{Within: fl.String("within"), Deadline: fl.String("deadline")}
		}
		cl, err := newAPIClient(fl)
		if err != nil {
			return 1, err
		}
		if user != "" {
			return runUserAction(cl, out, fl, name, user, body)
		}
		return runEnrollmentAction(cl, out, fl, name, fl.Arg(0), body)
	})
	return c
}

func runEnrollmentAction(cl *apiClient, out io.Writer, fl caddycmd.Flags, name, id string, body *admin.ActionRequest) (int, error) {
	var res admin.ActionResult
	var raw []byte
	var b any
	if body != nil {
		b = body
	}
	if err := cl.call(http.MethodPost, "enrollments/"+url.PathEscape(id)+"/"+name, b, &res, &raw); err != nil {
		return 1, err
	}
	if fl.Bool("json") {
		return 0, printJSON(out, raw)
	}
	e := res.Enrollment
	if name == "revoke" {
		fmt.Fprintf(out, "enrollment %s (%s): revoked %d tokens, %d token families\n", e.ID, e.State, res.Tokens, res.Families)
		return 0, nil
	}
	fmt.Fprintf(out, "enrollment %s: %s → %s", e.ID, res.PreviousState, e.State)
	if e.Deadline != nil {
		fmt.Fprintf(out, " until %s UTC", when(*e.Deadline))
	}
	fmt.Fprintf(out, "; revoked %d tokens, %d token families\n", res.Tokens, res.Families)
	return 0, nil
}

func runUserAction(cl *apiClient, out io.Writer, fl caddycmd.Flags, name, user string, body *admin.ActionRequest) (int, error) {
	iss, sub, err := parseUser(user)
	if err != nil {
		return 1, err
	}
	req := admin.ActionRequest{Issuer: iss, Subject: sub}
	if body != nil {
		req.Within, req.Deadline = body.Within, body.Deadline
	}
	var res admin.UserResult
	var raw []byte
	if err := cl.call(http.MethodPost, "users/"+name, req, &res, &raw); err != nil {
		return 1, err
	}
	if fl.Bool("json") {
		err = printJSON(out, raw)
	} else {
		var rows [][]string
		for _, o := range res.Enrollments {
			rows = append(rows, []string{o.ID, string(o.PreviousState), string(o.State), o.Result, dash(o.Error)})
		}
		if len(rows) > 0 {
			err = table(out, "ENROLLMENT\tFROM\tTO\tRESULT\tERROR", rows)
		}
		fmt.Fprintf(out, "%s %s,%s: %d changed, %d unchanged, %d errors; revoked %d tokens, %d token families\n",
			name, iss, sub, res.Changed, res.Unchanged, res.Errors, res.Tokens, res.Families)
	}
	if err != nil {
		return 1, err
	}
	if res.Errors > 0 {
		return 1, fmt.Errorf("%d enrollment(s) could not be changed", res.Errors)
	}
	return 0, nil
}

// newProfileCommand: caddy mdm-auth profile <enrollment-id> --output <file>
func newProfileCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "profile <enrollment-id> --output <file> [--site <host>]",
		Short: "Renders an enrollment's profile again, for the MDM to push when it renews the identity certificate",
		Long: `
Renders the enrollment profile of an active (or reauth) enrollment again:
its own AssignedManagedAppleID and EnrollmentMode, and the template and
RequiredAppIDForMDM its sign-in chose, signed when profile signing is
configured. With several mdm_auth handlers, --site names one by its
public_url host or one of its domains.`,
		Args: cobra.ExactArgs(1),
	}
	apiFlags(c)
	c.Flags().StringP("output", "o", "", "File to write the profile to (- for standard output)")
	c.Flags().String("site", "", "The mdm_auth handler: its public_url host or a discovery domain")
	wrap(c, func(_ context.Context, out io.Writer, fl caddycmd.Flags) (int, error) {
		dest := fl.String("output")
		if dest == "" {
			return 1, fmt.Errorf("--output is required")
		}
		cl, err := newAPIClient(fl)
		if err != nil {
			return 1, err
		}
		uri := "enrollments/" + url.PathEscape(fl.Arg(0)) + "/profile"
		if s := fl.String("site"); s != "" {
			uri += "?site=" + url.QueryEscape(s)
		}
		res, err := cl.request(http.MethodPost, uri, nil)
		if err != nil {
			return 1, err
		}
		defer res.Body.Close()
		prof, err := io.ReadAll(io.LimitReader(res.Body, 16<<20))
		if err != nil {
			return 1, err
		}
		if dest == "-" {
			_, err = out.Write(prof)
			return 0, err
		}
		if err := os.WriteFile(dest, prof, 0o600); err != nil {
			return 1, err
		}
		fmt.Fprintf(out, "profile of %s written to %s (%d bytes)\n", fl.Arg(0), dest, len(prof))
		return 0, nil
	})
	return c
}

// newStatsCommand: caddy mdm-auth stats
func newStatsCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "stats",
		Short: "Prints the store's health and counts of enrollments, tokens and sign-ins (exit 1 when the store is unhealthy)",
		Args:  cobra.NoArgs,
	}
	apiFlags(c)
	wrap(c, func(_ context.Context, out io.Writer, fl caddycmd.Flags) (int, error) {
		cl, err := newAPIClient(fl)
		if err != nil {
			return 1, err
		}
		var h admin.Health
		if err := cl.call(http.MethodGet, "health", nil, &h, nil); err != nil {
			return 1, fmt.Errorf("the token store is unhealthy: %v", err)
		}
		var s admin.Stats
		var raw []byte
		if err := cl.call(http.MethodGet, "stats", nil, &s, &raw); err != nil {
			return 1, err
		}
		if fl.Bool("json") {
			return 0, printJSON(out, raw)
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "store:\t%s\n", h.Status)
		for _, st := range []string{"active", "reauth", "blocked", "offboarding", "removed"} {
			fmt.Fprintf(tw, "enrollments %s:\t%d\n", st, s.Enrollments[store.State(st)])
		}
		for _, m := range []string{"byod", "adde"} {
			fmt.Fprintf(tw, "enrollments %s (not removed):\t%d\n", m, s.EnrollmentsByMode[m])
		}
		fmt.Fprintf(tw, "live tokens:\t%d\n", s.LiveTokens)
		fmt.Fprintf(tw, "live token families:\t%d\n", s.LiveFamilies)
		fmt.Fprintf(tw, "pending sign-ins:\t%d\n", s.PendingSignIns)
		fmt.Fprintf(tw, "sign-ins (24h):\t%d\n", s.SignIns)
		fmt.Fprintf(tw, "no check-in after %s (24h):\t%d\n", time.Duration(s.StallAfterSeconds)*time.Second, s.Stalled)
		fmt.Fprintf(tw, "store size:\t%d bytes\n", s.StoreBytes)
		return 0, tw.Flush()
	})
	return c
}

// newBackupCommand: caddy mdm-auth backup --output <file> [--storage-dir <dir>]
func newBackupCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "backup --output <file> [--storage-dir <dir>]",
		Short: "Writes a backup of the token store (live through the admin API, or offline)",
		Long: `
Writes Badger's backup stream of the token store to --output. While Caddy
runs, the store is locked by it: the backup streams through the admin API
(a consistent snapshot; Caddy keeps serving). With --storage-dir, and only
when Caddy is not running, it opens the store directly instead.

The file is written next to --output and renamed into place only once the
stream is complete. It holds every secret the store keeps (signing keys,
encrypted identity provider tokens): protect it like the store itself.`,
		Args: cobra.NoArgs,
	}
	apiFlags(c)
	c.Flags().StringP("output", "o", "", "File to write the backup to")
	c.Flags().String("storage-dir", "", "Back up this store directory offline (Caddy must not be running)")
	wrap(c, runBackup)
	return c
}

func runBackup(ctx context.Context, out io.Writer, fl caddycmd.Flags) (int, error) {
	dest := fl.String("output")
	if dest == "" {
		return 1, fmt.Errorf("--output is required")
	}
	write := func(w io.Writer) error {
		if dir := fl.String("storage-dir"); dir != "" {
			return offlineBackup(ctx, dir, w)
		}
		cl, err := newAPIClient(fl)
		if err != nil {
			return err
		}
		res, err := cl.request(http.MethodGet, "backup", nil)
		if err != nil {
			return err
		}
		defer res.Body.Close()
		if _, err := io.Copy(w, res.Body); err != nil {
			return fmt.Errorf("the backup stream broke off: %v", err)
		}
		if got := res.Trailer.Get(admin.BackupTrailer); got != "complete" {
			return fmt.Errorf("the backup stream is incomplete")
		}
		return nil
	}
	n, err := writeAtomically(dest, write)
	if err != nil {
		return 1, err
	}
	fmt.Fprintf(out, "backup written to %s (%d bytes)\n", dest, n)
	return 0, nil
}

// offlineBackup opens the store in dir (which must exist and be free)
// and writes its backup to w.
func offlineBackup(ctx context.Context, dir string, w io.Writer) error {
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("--storage-dir %s is not a store directory", dir)
	}
	s, err := badger.Open(badger.Options{Dir: dir, GCInterval: -1})
	if err != nil {
		return fmt.Errorf("opening the store (is Caddy running? then back up without --storage-dir, through the admin API): %v", err)
	}
	berr := s.Backup(ctx, w)
	return errors.Join(berr, s.Close())
}

// writeAtomically writes dest through a temporary file in its directory,
// synced and renamed into place only when write succeeded.
func writeAtomically(dest string, write func(io.Writer) error) (int64, error) {
	f, err := os.CreateTemp(filepath.Dir(dest), "."+filepath.Base(dest)+".*.partial")
	if err != nil {
		return 0, err
	}
	tmp := f.Name()
	cw := &countWriter{w: f}
	err = write(cw)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, dest)
	}
	if err != nil {
		os.Remove(tmp)
		return 0, err
	}
	return cw.n, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// newRestoreCommand: caddy mdm-auth restore --storage-dir <dir> --input <file>
func newRestoreCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "restore --storage-dir <dir> --input <file>",
		Short: "Restores a backup into an empty store directory (offline)",
		Long: `
Loads a backup written by "caddy mdm-auth backup" into --storage-dir, which
must be empty or not exist, with Caddy stopped. Records keep their expiry.
Then start Caddy with that storage_dir.`,
		Args: cobra.NoArgs,
	}
	c.Flags().String("storage-dir", "", "The store directory to create (empty or absent)")
	c.Flags().StringP("input", "i", "", "The backup file")
	wrap(c, func(_ context.Context, out io.Writer, fl caddycmd.Flags) (int, error) {
		dir, in := fl.String("storage-dir"), fl.String("input")
		if dir == "" || in == "" {
			return 1, fmt.Errorf("--storage-dir and --input are required")
		}
		f, err := os.Open(in)
		if err != nil {
			return 1, err
		}
		defer f.Close()
		if err := badger.Restore(dir, f); err != nil {
			if errors.Is(err, badger.ErrNotEmpty) {
				return 1, fmt.Errorf("%v (restore only into an empty directory; move the old store aside first)", err)
			}
			return 1, err
		}
		fmt.Fprintf(out, "restored %s into %s\n", in, dir)
		return 0, nil
	})
	return c
}

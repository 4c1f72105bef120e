package main

import (
	"encoding/csv"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gatelog/gatelog/daemon/api"
	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/translog/index"
	"github.com/gatelog/gatelog/translog/verify"
)

// auditFilters are the search filters, one flag per query parameter.
var auditFilters = []struct{ flag, param, usage string }{
	{"subject", "subject", "who the decision was about (subject id)"},
	{"caller", "caller", "who asked (the authenticated caller's id)"},
	{"action", "action", "action, e.g. deploy"},
	{"kind", "kind", "decision, event, admin or unreadable"},
	{"system", "system", "resource system, e.g. github"},
	{"repository", "repository", "resource repository"},
	{"environment", "environment", "resource environment, e.g. production"},
	{"namespace", "namespace", "resource namespace"},
	{"adapter", "adapter", "adapter the request came through"},
	{"outcome", "outcome", "allow or deny"},
	{"alert", "alert", "alert code raised with the decision"},
	{"policy", "policy", "policy sha256 (4 to 64 hex digits, a prefix is enough)"},
	{"since", "since", "from this time: RFC 3339, or back from now like 7d, 36h"},
	{"until", "until", "before this time: RFC 3339, or back from now"},
	{"outside-hours", "outside_hours", "only outside these UTC working hours (and on weekends), e.g. 9-17"},
}

func auditCommand() *cli.Command {
	filters := []cli.Flag{}
	for _, f := range auditFilters {
		filters = append(filters, &cli.StringFlag{Name: f.flag, Usage: f.usage})
	}
	conn := clientFlags("API key with the read permission")
	return &cli.Command{
		Name:        "audit",
		Usage:       "search the decisions in the log (through the daemon's audit index)",
		Description: connectionHelp,
		Subcommands: []*cli.Command{
			{
				Name:  "search",
				Usage: "list matching decisions, newest first; --verify checks each one against the log",
				Flags: append(append(append(filters, conn...),
					&cli.IntFlag{Name: "limit", Value: 100, Usage: "at most this many results"},
					&cli.BoolFlag{Name: "all", Usage: "every result, however many"},
					&cli.BoolFlag{Name: "verify", Usage: "fetch each result's entry with its inclusion proof and verify it offline with --log-key and --signer-keys (or keys pinned on first use) before showing it (exit 3 when one does not verify)"},
					pinFileFlag,
					&cli.BoolFlag{Name: "json", Usage: "print JSON"},
					&cli.BoolFlag{Name: "csv", Usage: "print CSV"},
				), keyFlags()...),
				Action: auditSearch,
			},
			{
				Name:  "counts",
				Usage: "count matching decisions by day, subject, caller, action, environment, repository or outcome",
				Flags: append(append(filters, conn...),
					&cli.StringFlag{Name: "by", Value: "day", Usage: "group by: " + strings.Join(index.GroupKeys(), ", ")},
					&cli.BoolFlag{Name: "json", Usage: "print JSON"},
				),
				Action: auditCounts,
			},
		},
	}
}

// auditQuery builds the query parameters from the flags and checks them
// with the same parser the daemon uses.
func auditQuery(c *cli.Context) (url.Values, error) {
	v := url.Values{}
	for _, f := range auditFilters {
		if s := c.String(f.flag); s != "" {
			v.Set(f.param, s)
		}
	}
	if _, err := index.ParseQuery(v, time.Now()); err != nil {
		return nil, err
	}
	return v, nil
}

// auditResult is one search result and, with --verify, what checking it
// against the log found.
type auditResult struct {
	index.Row
	Verified    *bool  `json:"verified,omitempty"`
	VerifyError string `json:"verify_error,omitempty"`
	// receipt came with the search page (?receipts=1), proof included.
	receipt *decision.Receipt
}

func auditSearch(c *cli.Context) error {
	if c.Bool("json") && c.Bool("csv") {
		return fmt.Errorf("give --json or --csv, not both")
	}
	v, err := auditQuery(c)
	if err != nil {
		return err
	}
	ac, err := newClient(c, true)
	if err != nil {
		return err
	}
	var logVerifier *verify.Verifier
	if c.Bool("verify") {
		if c.String("log-key") == "" {
			logVerifier, _, err = pinOnFirstUse(c, ac, c.App.ErrWriter, true)
		} else {
			logVerifier, err = pinnedVerifier(c, true)
		}
		if err != nil {
			return err
		}
	}
	limit := c.Int("limit")
	if c.Bool("all") {
		limit = -1
	}
	var rows []auditResult
	for cursor := ""; ; {
		page := url.Values{}
		for k, vs := range v {
			page[k] = vs
		}
		n := index.MaxLimit
		if limit >= 0 {
			n = min(n, limit-len(rows))
		}
		if n <= 0 {
			break
		}
		page.Set("limit", strconv.Itoa(n))
		if cursor != "" {
			page.Set("cursor", cursor)
		}
		if c.Bool("verify") {
			page.Set("receipts", "1")
		}
		var sr api.SearchResponse
		if err := ac.call(c.Context, http.MethodGet, "/v1/audit/search?"+page.Encode(), nil, &sr); err != nil {
			return fmt.Errorf("audit search: %w", err)
		}
		for i, r := range sr.Results {
			res := auditResult{Row: r}
			if i < len(sr.Receipts) {
				res.receipt = sr.Receipts[i]
			}
			rows = append(rows, res)
		}
		if sr.NextCursor == "" {
			break
		}
		cursor = sr.NextCursor
	}
	failed := 0
	if c.Bool("verify") {
		failed = verifyRows(c, ac, logVerifier, rows)
	}
	w := c.App.Writer
	switch {
	case c.Bool("json"):
		printJSON(w, rows)
	case c.Bool("csv"):
		if err := writeAuditCSV(w, rows, c.Bool("verify")); err != nil {
			return err
		}
	default:
		writeAuditTable(w, rows, c.Bool("verify"))
	}
	if failed > 0 {
		return notVerified(fmt.Errorf("%d of %d results did NOT verify against the log", failed, len(rows)))
	}
	return nil
}

// verifyRows verifies each row's receipt offline (the one that came with
// the page, or else one fetched with a fresh inclusion proof); a row
// verifies only if the signed record says what the index said. It reports
// progress on stderr and returns the failures.
func verifyRows(c *cli.Context, ac *client, v *verify.Verifier, rows []auditResult) int {
	var (
		mu     sync.Mutex
		done   int
		failed int
		wg     sync.WaitGroup
		next   = make(chan int)
	)
	start, lastReport := time.Now(), time.Now()
	for range 4 {
		wg.Go(func() {
			for i := range next {
				err := verifyRow(c, ac, v, rows[i].Row, rows[i].receipt)
				ok := err == nil
				mu.Lock()
				rows[i].Verified = &ok
				if err != nil {
					rows[i].VerifyError = err.Error()
					failed++
				}
				done++
				if time.Since(lastReport) > time.Second {
					lastReport = time.Now()
					fmt.Fprintf(c.App.ErrWriter, "verified %d of %d\n", done, len(rows))
				}
				mu.Unlock()
			}
		})
	}
	for i := range rows {
		next <- i
	}
	close(next)
	wg.Wait()
	if time.Since(start) > time.Second {
		fmt.Fprintf(c.App.ErrWriter, "verified %d of %d in %s\n", done, len(rows), time.Since(start).Round(time.Millisecond))
	}
	return failed
}

func verifyRow(c *cli.Context, ac *client, v *verify.Verifier, r index.Row, given *decision.Receipt) error {
	if r.Kind == index.KindUnreadable {
		return fmt.Errorf("entry %d is %s: the index could not read it, so there is nothing to verify", r.LogIndex, r.Kind)
	}
	var rc decision.Receipt
	if given != nil {
		rc = *given
	} else if err := ac.call(c.Context, http.MethodGet, "/v1/decisions/"+url.PathEscape(r.ID), nil, &rc); err != nil {
		return fmt.Errorf("fetch decision %s: %w", r.ID, err)
	}
	res, err := v.Receipt(rc)
	if err != nil {
		return err
	}
	rec := res.Statement.Predicate
	switch {
	case rc.LogIndex != r.LogIndex || rc.UUID != r.UUID:
		return fmt.Errorf("index says entry %d (%s), the log has it at %d (%s)", r.LogIndex, r.UUID, rc.LogIndex, rc.UUID)
	case rec.Request.Subject.ID != r.Subject || rec.Request.Action != r.Action || rec.Caller.ID != r.Caller || index.Allowed(rec) != r.Allow:
		return fmt.Errorf("index row differs from the signed record (subject, action, caller or outcome)")
	case rec.Request.Resource.Environment != r.Resource.Environment || rec.Request.Resource.Repository != r.Resource.Repository:
		return fmt.Errorf("index row differs from the signed record (resource)")
	case rec.Policy.SHA256 != r.PolicySHA256:
		return fmt.Errorf("index row differs from the signed record (policy)")
	}
	t, err := time.Parse(time.RFC3339Nano, rec.Time)
	if err != nil || !t.Truncate(time.Millisecond).Equal(r.Time) {
		return fmt.Errorf("index row differs from the signed record (time)")
	}
	return nil
}

func outcomeWord(r index.Row) string {
	switch r.Outcome {
	case index.OutcomeAllow:
		return "ALLOW"
	case index.OutcomeDeny:
		return "DENY"
	}
	return strings.ToUpper(r.Outcome)
}

func resourceText(res index.Resource) string {
	var parts []string
	for _, p := range []string{res.System, res.Repository, res.Namespace, res.Environment} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

func alertCodes(r index.Row) string {
	var codes []string
	for _, a := range r.Alerts {
		codes = append(codes, a.Code)
	}
	if len(codes) == 0 {
		return "-"
	}
	return strings.Join(codes, ",")
}

func verifiedWord(r auditResult) string {
	switch {
	case r.Verified == nil:
		return ""
	case *r.Verified:
		return "verified"
	default:
		return "NOT VERIFIED"
	}
}

func writeAuditTable(w io.Writer, rows []auditResult, verified bool) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	head := "INDEX\tTIME\tSUBJECT\tACTION\tRESOURCE\tOUTCOME\tALERTS"
	if verified {
		head = "CHECK\t" + head
	}
	fmt.Fprintln(tw, head)
	for _, r := range rows {
		line := fmt.Sprintf("%d\t%s\t%s\t%s\t%s\t%s\t%s", r.LogIndex, r.Time.Format(time.RFC3339), printable(r.Subject), printable(r.Action),
			printable(resourceText(r.Resource)), outcomeWord(r.Row), printable(alertCodes(r.Row)))
		if verified {
			line = verifiedWord(r) + "\t" + line
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
	for _, r := range rows {
		if r.VerifyError != "" {
			fmt.Fprintf(w, "entry %d: %s\n", r.LogIndex, printable(r.VerifyError))
		}
	}
	if len(rows) == 0 {
		fmt.Fprintln(w, "no matching entries")
	}
}

func writeAuditCSV(w io.Writer, rows []auditResult, verified bool) error {
	cw := csv.NewWriter(w)
	head := []string{"log_index", "uuid", "id", "time", "subject", "caller", "action", "system", "repository",
		"namespace", "environment", "adapter", "outcome", "alerts", "policy_sha256"}
	if verified {
		head = append(head, "verified", "verify_error")
	}
	if err := cw.Write(head); err != nil {
		return err
	}
	for _, r := range rows {
		rec := []string{strconv.FormatInt(r.LogIndex, 10), r.UUID, r.ID, r.Time.Format(time.RFC3339Nano), r.Subject,
			r.Caller, r.Action, r.Resource.System, r.Resource.Repository, r.Resource.Namespace, r.Resource.Environment,
			r.Adapter, r.Outcome, strings.Trim(alertCodes(r.Row), "-"), r.PolicySHA256}
		if verified {
			rec = append(rec, strconv.FormatBool(r.Verified != nil && *r.Verified), r.VerifyError)
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

func auditCounts(c *cli.Context) error {
	v, err := auditQuery(c)
	if err != nil {
		return err
	}
	v.Set("by", c.String("by"))
	ac, err := newClient(c, true)
	if err != nil {
		return err
	}
	var cr api.CountsResponse
	if err := ac.call(c.Context, http.MethodGet, "/v1/audit/counts?"+v.Encode(), nil, &cr); err != nil {
		return fmt.Errorf("audit counts: %w", err)
	}
	if c.Bool("json") {
		printJSON(c.App.Writer, cr)
		return nil
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "%s\tTOTAL\tALLOWED\tDENIED\n", strings.ToUpper(cr.By))
	for _, n := range cr.Counts {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\n", printable(n.Key), n.Total, n.Allowed, n.Denied)
	}
	return tw.Flush()
}

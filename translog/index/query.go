package index

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatelog/gatelog/record/decision"
)

// ErrBadQuery marks a query a caller got wrong; the message names the
// parameter.
var ErrBadQuery = errors.New("bad query")

// Limits on a page of results.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// Query selects indexed entries. Zero fields match everything; set fields
// must all match. Results come newest first (highest log index first).
type Query struct {
	Subject     string
	Caller      string
	Action      string
	Kind        string // decision | event | unreadable
	System      string
	Repository  string
	Environment string
	Namespace   string
	Adapter     string
	Outcome     string // allow | deny (decisions only)
	AlertCode   string
	// PolicyDigest is a hex prefix of the policy SHA-256 (4 to 64 digits).
	PolicyDigest string
	Since, Until time.Time
	// OutsideHours, when set, keeps only entries outside working hours:
	// on a weekend, or before Start or from End on (UTC hours).
	OutsideHours *Hours
	Limit        int
	// Cursor continues a search: the NextCursor of the previous page.
	Cursor string
}

// Hours is a span of UTC hours, Start inclusive, End exclusive.
type Hours struct{ Start, End int }

// Page is one page of search results.
type Page struct {
	Results []Row `json:"results"`
	// NextCursor is empty on the last page.
	NextCursor string `json:"next_cursor,omitempty"`
}

// Query parameter names, shared by the HTTP API and the CLI.
var queryParams = []string{"subject", "caller", "action", "kind", "system", "repository", "environment",
	"namespace", "adapter", "outcome", "alert", "policy", "since", "until", "outside_hours", "limit", "cursor", "by", "receipts"}

var hexRE = regexp.MustCompile(`^[0-9a-f]{4,64}$`)

// ParseQuery reads a Query from URL parameters (subject, caller, action,
// kind, system, repository, environment, namespace, adapter, outcome, alert,
// policy, since, until, outside_hours, limit, cursor). since and until take
// RFC 3339 times or a duration back from now such as 7d, 36h or 90m;
// outside_hours takes working hours as "9-17". Parameters "by" (counts)
// and "receipts" (the daemon's) are allowed and ignored here.
func ParseQuery(v url.Values, now time.Time) (Query, error) {
	for k, vals := range v {
		if !slices.Contains(queryParams, k) {
			return Query{}, fmt.Errorf("%w: unknown parameter %q (want one of %s)", ErrBadQuery, k, strings.Join(queryParams, ", "))
		}
		if len(vals) > 1 {
			return Query{}, fmt.Errorf("%w: parameter %q is given %d times", ErrBadQuery, k, len(vals))
		}
	}
	q := Query{
		Subject: v.Get("subject"), Caller: v.Get("caller"), Action: v.Get("action"), Kind: v.Get("kind"),
		System: v.Get("system"), Repository: v.Get("repository"), Environment: v.Get("environment"),
		Namespace: v.Get("namespace"), Adapter: v.Get("adapter"), Outcome: v.Get("outcome"),
		AlertCode: v.Get("alert"), PolicyDigest: strings.ToLower(v.Get("policy")), Cursor: v.Get("cursor"),
	}
	for _, s := range []string{q.Subject, q.Caller, q.Action, q.System, q.Repository, q.Environment, q.Namespace, q.Adapter, q.AlertCode} {
		if len(s) > 512 {
			return Query{}, fmt.Errorf("%w: a parameter is longer than 512 characters", ErrBadQuery)
		}
	}
	switch q.Outcome {
	case "", OutcomeAllow, OutcomeDeny:
	default:
		return Query{}, fmt.Errorf("%w: outcome %q must be allow or deny", ErrBadQuery, q.Outcome)
	}
	switch q.Kind {
	case "", KindDecision, KindEvent, KindAdmin, KindUnreadable:
	default:
		return Query{}, fmt.Errorf("%w: kind %q must be decision, event, admin or unreadable", ErrBadQuery, q.Kind)
	}
	if q.PolicyDigest != "" && !hexRE.MatchString(q.PolicyDigest) {
		return Query{}, fmt.Errorf("%w: policy %q must be 4 to 64 hex digits of the policy sha256", ErrBadQuery, q.PolicyDigest)
	}
	var err error
	if q.Since, err = ParseTime(v.Get("since"), now); err != nil {
		return Query{}, fmt.Errorf("%w: since: %w", ErrBadQuery, err)
	}
	if q.Until, err = ParseTime(v.Get("until"), now); err != nil {
		return Query{}, fmt.Errorf("%w: until: %w", ErrBadQuery, err)
	}
	if s := v.Get("outside_hours"); s != "" {
		h, err := parseHours(s)
		if err != nil {
			return Query{}, fmt.Errorf("%w: outside_hours: %w", ErrBadQuery, err)
		}
		q.OutsideHours = &h
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxLimit {
			return Query{}, fmt.Errorf("%w: limit %q must be a number from 1 to %d", ErrBadQuery, s, MaxLimit)
		}
		q.Limit = n
	}
	if q.Cursor != "" {
		if _, err := parseCursor(q.Cursor); err != nil {
			return Query{}, err
		}
	}
	return q, nil
}

// Values is the inverse of ParseQuery (times as RFC 3339).
func (q Query) Values() url.Values {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	set("subject", q.Subject)
	set("caller", q.Caller)
	set("action", q.Action)
	set("kind", q.Kind)
	set("system", q.System)
	set("repository", q.Repository)
	set("environment", q.Environment)
	set("namespace", q.Namespace)
	set("adapter", q.Adapter)
	set("outcome", q.Outcome)
	set("alert", q.AlertCode)
	set("policy", q.PolicyDigest)
	if !q.Since.IsZero() {
		v.Set("since", q.Since.UTC().Format(time.RFC3339Nano))
	}
	if !q.Until.IsZero() {
		v.Set("until", q.Until.UTC().Format(time.RFC3339Nano))
	}
	if h := q.OutsideHours; h != nil {
		v.Set("outside_hours", fmt.Sprintf("%d-%d", h.Start, h.End))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	set("cursor", q.Cursor)
	return v
}

// ParseTime reads an RFC 3339 time, or a duration before now: a Go
// duration (36h, 90m) or a number of days (7d). Empty is the zero time.
func ParseTime(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n < 0 || n > 100000 {
			return time.Time{}, fmt.Errorf("%q is not a number of days", s)
		}
		return now.Add(-time.Duration(n) * 24 * time.Hour), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a duration like 7d or 36h", s)
	}
	return now.Add(-d), nil
}

func parseHours(s string) (Hours, error) {
	a, b, ok := strings.Cut(s, "-")
	start, err1 := strconv.Atoi(a)
	end, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || start < 0 || end > 24 || start >= end {
		return Hours{}, fmt.Errorf("%q must be working hours as START-END in UTC, e.g. 9-17", s)
	}
	return Hours{Start: start, End: end}, nil
}

func parseCursor(s string) (int64, error) {
	raw, err := hex.DecodeString(s)
	if err == nil {
		if n, err := strconv.ParseInt(string(raw), 10, 64); err == nil && n >= 0 {
			return n, nil
		}
	}
	return 0, fmt.Errorf("%w: cursor %q is not one this index handed out", ErrBadQuery, s)
}

// cursorAfter is the opaque cursor for results below log index i.
func cursorAfter(i int64) string { return hex.EncodeToString([]byte(strconv.FormatInt(i, 10))) }

// where writes the WHERE clause for q.
func (ix *Index) where(b *sqlBuilder, q Query) error {
	conds := []string{"1 = 1"}
	eq := func(col, v string) {
		if v != "" {
			conds = append(conds, col+" = "+b.arg(v))
		}
	}
	eq("subject", q.Subject)
	eq("caller", q.Caller)
	eq("action", q.Action)
	eq("kind", q.Kind)
	eq("res_system", q.System)
	eq("res_repository", q.Repository)
	eq("res_environment", q.Environment)
	eq("res_namespace", q.Namespace)
	eq("adapter", q.Adapter)
	switch q.Outcome {
	case OutcomeAllow:
		conds = append(conds, "kind = "+b.arg(KindDecision)+" AND allow = 1")
	case OutcomeDeny:
		conds = append(conds, "kind = "+b.arg(KindDecision)+" AND allow = 0")
	}
	if q.AlertCode != "" {
		conds = append(conds, "EXISTS (SELECT 1 FROM gatelog_alerts a WHERE a.log_index = gatelog_entries.log_index AND a.code = "+b.arg(q.AlertCode)+")")
	}
	if q.PolicyDigest != "" {
		if !hexRE.MatchString(q.PolicyDigest) {
			return fmt.Errorf("%w: policy digest must be hex", ErrBadQuery)
		}
		if len(q.PolicyDigest) == 64 {
			conds = append(conds, "policy_sha256 = "+b.arg(q.PolicyDigest))
		} else {
			conds = append(conds, "policy_sha256 LIKE "+b.arg(q.PolicyDigest+"%"))
		}
	}
	if !q.Since.IsZero() {
		conds = append(conds, "time_ms >= "+b.arg(q.Since.UnixMilli()))
	}
	if !q.Until.IsZero() {
		conds = append(conds, "time_ms < "+b.arg(q.Until.UnixMilli()))
	}
	if h := q.OutsideHours; h != nil {
		conds = append(conds, "(time_weekday = 0 OR time_weekday = 6 OR time_hour < "+b.arg(h.Start)+" OR time_hour >= "+b.arg(h.End)+")")
	}
	if q.Cursor != "" {
		c, err := parseCursor(q.Cursor)
		if err != nil {
			return err
		}
		conds = append(conds, "log_index < "+b.arg(c))
	}
	b.write(" WHERE ", strings.Join(conds, " AND "))
	return nil
}

const rowColumns = `log_index, uuid, kind, record_id, time_ms, integrated_time, subject, subject_kind, caller,
	action, res_system, res_kind, res_name, res_namespace, res_environment, res_repository, res_ref,
	adapter, allow, policy_sha256, policy_revision, reasons`

// Search returns one page of entries matching q, newest first.
func (ix *Index) Search(ctx context.Context, q Query) (Page, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	if limit > MaxLimit {
		return Page{}, fmt.Errorf("%w: limit %d is over %d", ErrBadQuery, limit, MaxLimit)
	}
	b := &sqlBuilder{d: ix.d}
	b.write("SELECT ", rowColumns, " FROM gatelog_entries")
	if err := ix.where(b, q); err != nil {
		return Page{}, err
	}
	// One more than asked tells whether another page follows.
	b.write(" ORDER BY log_index DESC LIMIT ", strconv.Itoa(limit+1))
	rows, err := ix.db.QueryContext(ctx, b.String(), b.args...)
	if err != nil {
		return Page{}, fmt.Errorf("search index: %w", err)
	}
	var out []Row
	for rows.Next() {
		var r Row
		var timeMS int64
		var allow int
		var reasons string
		if err := rows.Scan(&r.LogIndex, &r.UUID, &r.Kind, &r.ID, &timeMS, &r.IntegratedTime, &r.Subject,
			&r.SubjectKind, &r.Caller, &r.Action, &r.Resource.System, &r.Resource.Kind, &r.Resource.Name,
			&r.Resource.Namespace, &r.Resource.Environment, &r.Resource.Repository, &r.Resource.Ref,
			&r.Adapter, &allow, &r.PolicySHA256, &r.PolicyRevision, &reasons); err != nil {
			rows.Close()
			return Page{}, fmt.Errorf("search index: %w", err)
		}
		r.Time = time.UnixMilli(timeMS).UTC()
		r.Allow = allow == 1
		if r.Kind != KindUnreadable {
			r.Outcome = outcomeOf(r.Kind, r.Allow)
		}
		if err := json.Unmarshal([]byte(reasons), &r.Reasons); err != nil {
			rows.Close()
			return Page{}, fmt.Errorf("index row %d: reasons: %w", r.LogIndex, err)
		}
		out = append(out, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return Page{}, fmt.Errorf("search index: %w", err)
	}
	p := Page{Results: out}
	if len(out) > limit {
		p.Results = out[:limit]
		p.NextCursor = cursorAfter(p.Results[limit-1].LogIndex)
	}
	if p.Results == nil {
		p.Results = []Row{}
	}
	return p, ix.attachAlerts(ctx, p.Results)
}

func (ix *Index) attachAlerts(ctx context.Context, rs []Row) error {
	if len(rs) == 0 {
		return nil
	}
	pos := make(map[int64]int, len(rs))
	b := &sqlBuilder{d: ix.d}
	b.write("SELECT log_index, code, severity, message FROM gatelog_alerts WHERE log_index IN (")
	for i, r := range rs {
		pos[r.LogIndex] = i
		if i > 0 {
			b.write(", ")
		}
		b.write(b.arg(r.LogIndex))
	}
	b.write(") ORDER BY log_index, seq")
	rows, err := ix.db.QueryContext(ctx, b.String(), b.args...)
	if err != nil {
		return fmt.Errorf("search alerts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var li int64
		var a decision.Alert
		if err := rows.Scan(&li, &a.Code, &a.Severity, &a.Message); err != nil {
			return err
		}
		i := pos[li]
		rs[i].Alerts = append(rs[i].Alerts, a)
	}
	return rows.Err()
}

// Count is one group of a count query.
type Count struct {
	Key     string `json:"key"`
	Total   int64  `json:"total"`
	Allowed int64  `json:"allowed"`
	Denied  int64  `json:"denied"`
}

// Group keys a count can be grouped by.
var groupColumns = map[string]string{
	"day": "time_day", "subject": "subject", "caller": "caller", "action": "action",
	"environment": "res_environment", "repository": "res_repository", "outcome": "allow",
}

// GroupKeys lists what Counts can group by.
func GroupKeys() []string {
	keys := make([]string, 0, len(groupColumns))
	for k := range groupColumns {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Counts counts the entries matching q (its cursor and limit ignored)
// grouped by "day" (UTC), "subject", "caller", "action", "environment",
// "repository" or "outcome", in key order.
func (ix *Index) Counts(ctx context.Context, q Query, by string) ([]Count, error) {
	col, ok := groupColumns[by]
	if !ok {
		return nil, fmt.Errorf("%w: by %q must be one of %s", ErrBadQuery, by, strings.Join(GroupKeys(), ", "))
	}
	q.Cursor = ""
	b := &sqlBuilder{d: ix.d}
	b.write("SELECT ", col, ", COUNT(*), SUM(CASE WHEN kind = 'decision' AND allow = 1 THEN 1 ELSE 0 END),",
		" SUM(CASE WHEN kind = 'decision' AND allow = 0 THEN 1 ELSE 0 END) FROM gatelog_entries")
	if err := ix.where(b, q); err != nil {
		return nil, err
	}
	b.write(" GROUP BY ", col, " ORDER BY ", col)
	rows, err := ix.db.QueryContext(ctx, b.String(), b.args...)
	if err != nil {
		return nil, fmt.Errorf("count index: %w", err)
	}
	defer rows.Close()
	out := []Count{}
	for rows.Next() {
		var c Count
		var key any
		if err := rows.Scan(&key, &c.Total, &c.Allowed, &c.Denied); err != nil {
			return nil, err
		}
		c.Key = fmt.Sprint(key)
		if b, ok := key.([]byte); ok {
			c.Key = string(b)
		}
		if by == "outcome" {
			c.Key = outcomeOf(KindDecision, c.Key == "1")
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/gatelog/gatelog/record/decision"
)

// The policy sees a Request as the JSON document encoding/json makes of it.
// Encoding it and parsing the text again into an AST value cost about a
// fifth of a decision's allocations (issue #24), so inputValue builds the
// same value directly: the same field names, the same omitted empty fields,
// strings coerced to valid UTF-8 and numbers spelt as encoding/json spells
// them. TestInputValueMatchesJSON holds it to the round trip.
//
// The build allocates little: the field names are terms made once for the
// package (OPA interns only a few common strings) and never modified, each
// object's members are collected in a slice sized for all of them, and the
// request's strings share one block of terms (inputBuilder).

// inputKeys are the input's field names as terms, shared by every input.
// OPA only reads an input value, so sharing them is safe.
var inputKeys = func() map[string]*ast.Term {
	m := map[string]*ast.Term{}
	for _, k := range []string{
		"subject", "action", "resource", "context", "source",
		"id", "kind", "issuer", "groups", "mfa", "auth_time", "token_age_s",
		"credential_expires_at", "verified", "asserted_by", "claims",
		"system", "name", "namespace", "environment", "repository", "ref", "attributes",
		"time", "source_ip", "change", "author", "approvers", "break_glass_reason",
		"history", "privileged_actions_used", "dry_run", "unverified",
		"adapter", "adapter_version", "request_id",
	} {
		m[k] = ast.StringTerm(k)
	}
	return m
}()

// inputBuilder makes the terms of one input. Its strings' terms are taken
// from one block, a term per field instead of an allocation each.
type inputBuilder struct {
	terms []ast.Term
}

// inputValue returns the policy input for req.
func inputValue(req decision.Request) (ast.Value, error) {
	b := inputBuilder{terms: make([]ast.Term, 0, 24)}
	s, err := b.subjectValue(req.Subject)
	if err != nil {
		return nil, fmt.Errorf("subject: %w", err)
	}
	r, err := b.resourceValue(req.Resource)
	if err != nil {
		return nil, fmt.Errorf("resource: %w", err)
	}
	c, err := b.contextValue(req.Context)
	if err != nil {
		return nil, fmt.Errorf("context: %w", err)
	}
	o := make(fields, 0, 5)
	o.add("subject", s)
	o.add("action", b.string(req.Action))
	o.add("resource", r)
	o.add("context", c)
	o.add("source", b.sourceValue(req.Source))
	return ast.NewObject(o...), nil
}

func (b *inputBuilder) subjectValue(s decision.Subject) (*ast.Term, error) {
	o := make(fields, 0, 12)
	o.add("id", b.string(s.ID))
	o.addString(b, "kind", s.Kind)
	o.addString(b, "issuer", s.Issuer)
	if len(s.Groups) > 0 {
		o.add("groups", b.stringArray(s.Groups))
	}
	o.add("mfa", ast.InternedTerm(s.MFA))
	o.addString(b, "auth_time", s.AuthTime)
	o.add("token_age_s", ast.InternedTerm(s.TokenAgeS))
	o.addString(b, "credential_expires_at", s.CredentialExpiresAt)
	o.add("verified", ast.InternedTerm(s.Verified))
	o.addString(b, "asserted_by", s.AssertedBy)
	if len(s.Claims) > 0 {
		v, err := anyValue(s.Claims)
		if err != nil {
			return nil, fmt.Errorf("claims: %w", err)
		}
		o.add("claims", v)
	}
	return o.object(), nil
}

func (b *inputBuilder) resourceValue(r decision.Resource) (*ast.Term, error) {
	o := make(fields, 0, 8)
	o.addString(b, "system", r.System)
	o.addString(b, "kind", r.Kind)
	o.addString(b, "name", r.Name)
	o.addString(b, "namespace", r.Namespace)
	o.addString(b, "environment", r.Environment)
	o.addString(b, "repository", r.Repository)
	o.addString(b, "ref", r.Ref)
	if len(r.Attributes) > 0 {
		v, err := anyValue(r.Attributes)
		if err != nil {
			return nil, fmt.Errorf("attributes: %w", err)
		}
		o.add("attributes", v)
	}
	return o.object(), nil
}

func (b *inputBuilder) contextValue(c decision.Context) (*ast.Term, error) {
	o := make(fields, 0, 8)
	o.addString(b, "time", c.Time)
	o.addString(b, "source_ip", c.SourceIP)
	if ch := c.Change; ch != nil {
		co := make(fields, 0, 3)
		co.addString(b, "id", ch.ID)
		co.addString(b, "author", ch.Author)
		if len(ch.Approvers) > 0 {
			co.add("approvers", b.stringArray(ch.Approvers))
		}
		o.add("change", co.object())
	}
	o.addString(b, "break_glass_reason", c.BreakGlassReason)
	if h := c.History; h != nil {
		var ho fields
		if len(h.PrivilegedActionsUsed) > 0 {
			ho.add("privileged_actions_used", b.stringArray(h.PrivilegedActionsUsed))
		}
		o.add("history", ho.object())
	}
	if c.DryRun {
		o.add("dry_run", ast.InternedTerm(true))
	}
	if len(c.Unverified) > 0 {
		v, err := anyValue(c.Unverified)
		if err != nil {
			return nil, fmt.Errorf("unverified: %w", err)
		}
		o.add("unverified", v)
	}
	return o.object(), nil
}

func (b *inputBuilder) sourceValue(s decision.Source) *ast.Term {
	o := make(fields, 0, 3)
	o.addString(b, "adapter", s.Adapter)
	o.addString(b, "adapter_version", s.AdapterVersion)
	o.addString(b, "request_id", s.RequestID)
	return o.object()
}

// string is s's term as jsonString makes it, taken from the builder's
// block. A full block is replaced by a new one: the terms already handed
// out stay where they are.
func (b *inputBuilder) string(s string) *ast.Term {
	if t, ok := internedString(s); ok {
		return t
	}
	b.terms = append(b.terms, ast.Term{Value: ast.String(s)})
	return &b.terms[len(b.terms)-1]
}

func (b *inputBuilder) stringArray(xs []string) *ast.Term {
	ts := make([]*ast.Term, len(xs))
	for i, s := range xs {
		ts[i] = b.string(s)
	}
	return ast.ArrayTerm(ts...)
}

// fields collects an object's members in the order encoding/json writes them.
type fields [][2]*ast.Term

func (f *fields) add(key string, v *ast.Term) {
	k, ok := inputKeys[key]
	if !ok {
		k = ast.StringTerm(key)
	}
	*f = append(*f, [2]*ast.Term{k, v})
}

// addString adds a string member that the JSON tags mark omitempty.
func (f *fields) addString(b *inputBuilder, key, s string) {
	if s != "" {
		f.add(key, b.string(s))
	}
}

func (f fields) object() *ast.Term { return ast.ObjectTerm(f...) }

// internedString returns OPA's shared term for s when s is valid UTF-8 and
// OPA interns it, and jsonString's copy when s is not valid UTF-8.
func internedString(s string) (*ast.Term, bool) {
	if !utf8.ValidString(s) {
		return jsonString(s), true
	}
	if ast.HasInternedValue(s) {
		return ast.InternedTerm(s), true
	}
	return nil, false
}

// jsonString is s as it reads after an encoding/json round trip: each byte
// that is not part of valid UTF-8 becomes U+FFFD.
func jsonString(s string) *ast.Term {
	if utf8.ValidString(s) {
		return ast.InternedTerm(s)
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		b.WriteRune(r) // utf8.RuneError for an invalid byte
		i += n
	}
	return ast.StringTerm(b.String())
}

// anyValue converts the free-form parts of a request (claims, attributes,
// unverified context). What a JSON decoder produces is converted directly;
// any other Go type goes through encoding/json, as it always did.
func anyValue(x any) (*ast.Term, error) {
	switch x := x.(type) {
	case nil:
		return ast.NullTerm(), nil
	case bool:
		return ast.InternedTerm(x), nil
	case string:
		return jsonString(x), nil
	case float64:
		b, err := json.Marshal(x) // NaN and ±Inf are errors, as before
		if err != nil {
			return nil, err
		}
		return ast.NumberTerm(json.Number(b)), nil
	case json.Number:
		return ast.NumberTerm(x), nil
	case []any:
		ts := make([]*ast.Term, len(x))
		for i, e := range x {
			v, err := anyValue(e)
			if err != nil {
				return nil, err
			}
			ts[i] = v
		}
		return ast.ArrayTerm(ts...), nil
	case map[string]any:
		kvs := make([][2]*ast.Term, 0, len(x))
		for k, e := range x {
			v, err := anyValue(e)
			if err != nil {
				return nil, err
			}
			kvs = append(kvs, [2]*ast.Term{jsonString(k), v})
		}
		return ast.ObjectTerm(kvs...), nil
	}
	b, err := json.Marshal(x)
	if err != nil {
		return nil, err
	}
	v, err := ast.ValueFromReader(strings.NewReader(string(b)))
	if err != nil {
		return nil, err
	}
	return ast.NewTerm(v), nil
}

// errSlowPath sends a result that decisionFrom does not read directly to
// the encoding/json path, which gives the same decision or error it always
// gave.
var errSlowPath = errors.New("result needs the encoding/json path")

// decisionFrom reads the policy result (the Go value OPA returns) into a
// Decision. A well-formed result is read in place; anything else (other
// keys, other types, numbers a float64 cannot hold) takes the path through
// encoding/json, which decides what is malformed.
func decisionFrom(v any) (decision.Decision, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return decision.Decision{}, fmt.Errorf("want an object, got %T", v)
	}
	allow, ok := m["allow"].(bool)
	if !ok {
		return decision.Decision{}, errors.New(`"allow" is missing or not a boolean`)
	}
	d, err := readDecision(m)
	if errors.Is(err, errSlowPath) {
		d, err = unmarshalDecision(m)
	}
	if err != nil {
		return decision.Decision{}, err
	}
	d.Allow = allow
	if d.Reasons == nil {
		d.Reasons = []string{}
	}
	if !d.Allow && len(d.Reasons) == 0 {
		d.Reasons = []string{"denied by policy (no reason given)"}
	}
	return d, nil
}

func readDecision(m map[string]any) (decision.Decision, error) {
	var d decision.Decision
	for k, v := range m {
		var err error
		switch k {
		case "allow":
		case "reasons":
			d.Reasons, err = readStrings(v)
		case "alerts":
			d.Alerts, err = readAlerts(v)
		case "obligations":
			d.Obligations, err = readObligations(v)
		default:
			// encoding/json matches keys case-insensitively.
			err = errSlowPath
		}
		if err != nil {
			return d, err
		}
	}
	return d, nil
}

func readStrings(v any) ([]string, error) {
	if v == nil {
		return nil, nil
	}
	xs, ok := v.([]any)
	if !ok {
		return nil, errSlowPath
	}
	out := make([]string, len(xs))
	for i, x := range xs {
		s, ok := x.(string)
		if !ok {
			return nil, errSlowPath
		}
		out[i] = s
	}
	return out, nil
}

func readAlerts(v any) ([]decision.Alert, error) {
	if v == nil {
		return nil, nil
	}
	xs, ok := v.([]any)
	if !ok {
		return nil, errSlowPath
	}
	out := make([]decision.Alert, len(xs))
	for i, x := range xs {
		a, ok := x.(map[string]any)
		if !ok {
			return nil, errSlowPath
		}
		for k, f := range a {
			s, ok := f.(string)
			if !ok {
				return nil, errSlowPath
			}
			switch k {
			case "severity":
				out[i].Severity = s
			case "code":
				out[i].Code = s
			case "message":
				out[i].Message = s
			default:
				return nil, errSlowPath
			}
		}
	}
	return out, nil
}

// readObligations returns the obligations as encoding/json would decode
// them into map[string]any: numbers become float64.
func readObligations(v any) (map[string]any, error) {
	if v == nil {
		return nil, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errSlowPath
	}
	out, err := jsonDecoded(m)
	if err != nil {
		return nil, err
	}
	return out.(map[string]any), nil
}

func jsonDecoded(v any) (any, error) {
	switch v := v.(type) {
	case nil, bool, string:
		return v, nil
	case json.Number:
		f, err := strconv.ParseFloat(string(v), 64)
		if err != nil {
			return nil, errSlowPath
		}
		return f, nil
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			x, err := jsonDecoded(e)
			if err != nil {
				return nil, err
			}
			out[i] = x
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			x, err := jsonDecoded(e)
			if err != nil {
				return nil, err
			}
			out[k] = x
		}
		return out, nil
	}
	return nil, errSlowPath
}

// unmarshalDecision is the encoding/json path for results readDecision
// does not read.
func unmarshalDecision(m map[string]any) (decision.Decision, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return decision.Decision{}, err
	}
	var d decision.Decision
	if err := json.Unmarshal(b, &d); err != nil {
		return decision.Decision{}, err
	}
	return d, nil
}

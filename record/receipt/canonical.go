package receipt

import (
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/cyberphone/json-canonicalization/go/src/webpki.org/jsoncanonicalizer"

	"github.com/gatelog/gatelog/record/decision"
)

// appendCanonicalRequest appends req in RFC 8785 (JCS) canonical JSON,
// written directly from the struct: the same bytes as
// jsoncanonicalizer.Transform(json.Marshal(req)), without encoding the
// request and parsing it back. Object keys are written in JCS order (the
// struct's keys in sorted order, map keys sorted by UTF-16 code units),
// strings with JCS's escapes, numbers in JCS's (ES6) form.
//
// It reports false when req holds anything whose canonical form it does
// not write itself — a string that is not valid UTF-8 (encoding/json
// would replace its bytes), an integer beyond ±2^53, a number that is not
// finite, a value of a type a decoded JSON document does not produce — and
// the caller then takes the canonicalizer's route.
func appendCanonicalRequest(b []byte, req decision.Request) ([]byte, bool) {
	c := canonicalWriter{b: b, ok: true}
	c.raw(`{"action":`)
	c.str(req.Action)

	x := req.Context
	c.raw(`,"context":{`)
	o := c.object()
	o.strField("break_glass_reason", x.BreakGlassReason)
	if x.Change != nil {
		o.key("change")
		co := c.openObject()
		co.strs("approvers", x.Change.Approvers)
		co.strField("author", x.Change.Author)
		co.strField("id", x.Change.ID)
		c.raw("}")
	}
	if x.DryRun {
		o.key("dry_run")
		c.raw("true")
	}
	if x.History != nil {
		o.key("history")
		ho := c.openObject()
		ho.strs("privileged_actions_used", x.History.PrivilegedActionsUsed)
		c.raw("}")
	}
	o.strField("source_ip", x.SourceIP)
	o.strField("time", x.Time)
	o.mapField("unverified", x.Unverified)
	c.raw("}")

	r := req.Resource
	c.raw(`,"resource":{`)
	o = c.object()
	o.mapField("attributes", r.Attributes)
	o.strField("environment", r.Environment)
	o.strField("kind", r.Kind)
	o.strField("name", r.Name)
	o.strField("namespace", r.Namespace)
	o.strField("ref", r.Ref)
	o.strField("repository", r.Repository)
	o.strField("system", r.System)
	c.raw("}")

	s := req.Source
	c.raw(`,"source":{`)
	o = c.object()
	o.strField("adapter", s.Adapter)
	o.strField("adapter_version", s.AdapterVersion)
	o.strField("request_id", s.RequestID)
	c.raw("}")

	u := req.Subject
	c.raw(`,"subject":{`)
	o = c.object()
	o.strField("asserted_by", u.AssertedBy)
	o.strField("auth_time", u.AuthTime)
	o.mapField("claims", u.Claims)
	o.strField("credential_expires_at", u.CredentialExpiresAt)
	o.strs("groups", u.Groups)
	o.key("id")
	c.str(u.ID)
	o.strField("issuer", u.Issuer)
	o.strField("kind", u.Kind)
	o.key("mfa")
	c.bool(u.MFA)
	o.key("token_age_s")
	c.int(u.TokenAgeS)
	o.key("verified")
	c.bool(u.Verified)
	c.raw("}}")
	return c.b, c.ok
}

// canonicalWriter appends JCS JSON to b; ok turns false, for good, at the
// first value it cannot write exactly.
type canonicalWriter struct {
	b  []byte
	ok bool
}

// objectWriter writes the members of one object, separating them.
type objectWriter struct {
	c     *canonicalWriter
	first bool
}

func (c *canonicalWriter) object() objectWriter { return objectWriter{c: c, first: true} }

// openObject writes "{" and returns the writer of its members.
func (c *canonicalWriter) openObject() objectWriter {
	c.raw("{")
	return c.object()
}

func (o *objectWriter) key(k string) {
	if !o.first {
		o.c.raw(",")
	}
	o.first = false
	o.c.str(k)
	o.c.raw(":")
}

// strField writes a string member unless it is empty (omitempty).
func (o *objectWriter) strField(k, v string) {
	if v != "" {
		o.key(k)
		o.c.str(v)
	}
}

// strs writes a string array member unless it is empty (omitempty).
func (o *objectWriter) strs(k string, v []string) {
	if len(v) == 0 {
		return
	}
	o.key(k)
	o.c.strArray(v)
}

// mapField writes an object member unless it is empty (omitempty).
func (o *objectWriter) mapField(k string, v map[string]any) {
	if len(v) == 0 {
		return
	}
	o.key(k)
	o.c.anyMap(v)
}

func (c *canonicalWriter) raw(s string) { c.b = append(c.b, s...) }

func (c *canonicalWriter) bool(v bool) {
	if v {
		c.raw("true")
	} else {
		c.raw("false")
	}
}

// int writes an integer as JCS does: within ±2^53 its decimal digits.
func (c *canonicalWriter) int(v int64) {
	const exact = 1 << 53
	if v <= -exact || v >= exact {
		c.ok = false
		return
	}
	c.b = strconv.AppendInt(c.b, v, 10)
}

func (c *canonicalWriter) float(v float64) {
	s, err := jsoncanonicalizer.NumberToJSON(v)
	if err != nil {
		c.ok = false
		return
	}
	c.raw(s)
}

// str writes a string with JCS's escapes: \" \\ \b \f \n \r \t, \u00xx
// for the other control characters, every other character as itself.
func (c *canonicalWriter) str(s string) {
	if !utf8.ValidString(s) {
		c.ok = false
		return
	}
	const hex = "0123456789abcdef"
	c.b = append(c.b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch >= 0x20 && ch != '"' && ch != '\\' {
			continue
		}
		c.b = append(c.b, s[start:i]...)
		switch ch {
		case '"', '\\':
			c.b = append(c.b, '\\', ch)
		case '\b':
			c.b = append(c.b, '\\', 'b')
		case '\f':
			c.b = append(c.b, '\\', 'f')
		case '\n':
			c.b = append(c.b, '\\', 'n')
		case '\r':
			c.b = append(c.b, '\\', 'r')
		case '\t':
			c.b = append(c.b, '\\', 't')
		default:
			c.b = append(c.b, '\\', 'u', '0', '0', hex[ch>>4], hex[ch&0xf])
		}
		start = i + 1
	}
	c.b = append(c.b, s[start:]...)
	c.b = append(c.b, '"')
}

func (c *canonicalWriter) strArray(v []string) {
	if v == nil {
		c.raw("null")
		return
	}
	c.raw("[")
	for i, s := range v {
		if i > 0 {
			c.raw(",")
		}
		c.str(s)
	}
	c.raw("]")
}

// value writes a value of a decoded JSON document.
func (c *canonicalWriter) value(v any) {
	switch v := v.(type) {
	case nil:
		c.raw("null")
	case bool:
		c.bool(v)
	case string:
		c.str(v)
	case float64:
		c.float(v)
	case []any:
		if v == nil {
			c.raw("null")
			return
		}
		c.raw("[")
		for i, e := range v {
			if i > 0 {
				c.raw(",")
			}
			c.value(e)
		}
		c.raw("]")
	case []string:
		c.strArray(v)
	case map[string]any:
		c.anyMap(v)
	default:
		c.ok = false
	}
}

func (c *canonicalWriter) anyMap(m map[string]any) {
	if m == nil {
		c.raw("null")
		return
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compareUTF16)
	o := c.openObject()
	for _, k := range keys {
		o.key(k)
		c.value(m[k])
		if !c.ok {
			return
		}
	}
	c.raw("}")
}

// compareUTF16 orders strings by their UTF-16 code units, as JCS sorts
// keys. That is byte order for valid UTF-8 unless a character beyond
// U+FFFF (a surrogate pair in UTF-16, whose first unit sorts below
// U+E000..U+FFFF) is involved.
func compareUTF16(a, b string) int {
	if !hasSupplementary(a) && !hasSupplementary(b) {
		return strings.Compare(a, b)
	}
	return slices.Compare(utf16.Encode([]rune(a)), utf16.Encode([]rune(b)))
}

// hasSupplementary reports whether s holds a 4-byte UTF-8 sequence.
func hasSupplementary(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0xf0 {
			return true
		}
	}
	return false
}

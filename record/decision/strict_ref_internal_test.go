package decision

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"unicode/utf8"
)

// tokenCheckValue is the token-by-token walk checkValue replaced, kept as
// the reference the scanner is tested against.
func tokenCheckValue(data []byte) error {
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.UseNumber()
	return tokenWalk(dec, "")
}

var tokenMaxExactInt = new(big.Int).Lsh(big.NewInt(1), 53)

// tokenWalk walks one JSON value from dec; path names it in errors.
func tokenWalk(dec *json.Decoder, path string) error {
	tok, err := dec.Token()
	if err != nil {
		return errMalformed
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			seen := map[string]bool{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return errMalformed
				}
				key, _ := kt.(string)
				field := joinPath(path, key)
				if seen[key] {
					return fmt.Errorf("%w: field %q appears twice in one object", ErrBadRequest, field)
				}
				seen[key] = true
				if err := tokenWalk(dec, field); err != nil {
					return err
				}
			}
			if _, err := dec.Token(); err != nil { // '}'
				return errMalformed
			}
		case '[':
			for i := 0; dec.More(); i++ {
				if err := tokenWalk(dec, fmt.Sprintf("%s[%d]", path, i)); err != nil {
					return err
				}
			}
			if _, err := dec.Token(); err != nil { // ']'
				return errMalformed
			}
		}
	case json.Number:
		s := string(t)
		if !strings.ContainsAny(s, ".eE") {
			n, ok := new(big.Int).SetString(s, 10)
			if ok && n.CmpAbs(tokenMaxExactInt) > 0 {
				return fmt.Errorf("%w: field %q: integer %s is beyond ±2^53 and cannot be kept exactly; send it as a string", ErrBadRequest, path, s)
			}
		}
	}
	return nil
}

// exactCases are documents the scanner and the token walk must judge
// alike: faults in every position, syntax errors before and after them.
var exactCases = []string{
	`{"action":"deploy"}`,
	`{"action":"deploy","action":"read"}`,
	`{"a":{"b":[1,{"c":1,"c":2}]}}`,
	`{"a":[0,1,{"x":9007199254740993}]}`,
	`{"a":9007199254740992,"b":-9007199254740992,"c":-9007199254740993}`,
	`{"a":90071992547409930,"b":1.5e300,"c":12345678901234567890.0,"d":1e400}`,
	`{"a\u0062":1,"ab":2}`,
	`{"\u00e9":1,"é":2}`,
	`{"a":1,"a"}`,
	`{"a":1 "a":2}`,
	`{"a":99999999999999999999x}`,
	`{"a":99999999999999999999`,
	`[99999999999999999999]`,
	`99999999999999999999`,
	`99999999999999999999x`,
	`"x"`, `true`, `nul`, `[`, `{`, `{"a"`, `{"a":}`, `[1,]`, `{,}`, `[01]`, `[-]`, `[1.]`, `[1e]`, `[.5]`, `[+1]`,
	`{"a":"\x"}`, `{"a":"\u12"}`, "{\"a\":\"\x01\"}", `{"a":tru}`, `{"a":[1 2]}`, ` { "a" : [ 1 , 2 ] , "a" : 3 } `,
	`{"k":1,"k1":2,"k2":3,"k3":4,"k4":5,"k5":6,"k6":7,"k7":8,"k8":9,"k9":10,"k10":1,"k11":1,"k12":1,"k13":1,"k14":1,"k15":1,"k16":1,"k17":1,"k18":1,"k19":1,"k20":1,"k21":1,"k22":1,"k23":1,"k24":1,"k25":1,"k26":1,"k27":1,"k28":1,"k29":1,"k30":1,"k31":1,"k32":1,"k33":1,"k3":1}`,
	strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
	strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
	`{"a":[[],{},[{}],{"b":[]}],"c":{"d":{"e":[9007199254740993]}}}`,
	`{} {"a":1,"a":2}`,
	`{"a":1}x`,
}

// sameVerdict checks the scanner and the token walk agree on doc. The one
// difference left is nesting beyond encoding/json's limit, which the
// scanner calls malformed where the walk goes on: the decoder refuses
// such a document either way.
func sameVerdict(t *testing.T, doc []byte) {
	t.Helper()
	got, want := checkValue(doc), tokenCheckValue(doc)
	if errors.Is(got, errMalformed) && nesting(doc) > maxDepth {
		return
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%.200q: scanner says %v, token walk %v", doc, got, want)
	}
}

// nesting is how deep doc's brackets go (ignoring strings: an
// overestimate is harmless here).
func nesting(doc []byte) int {
	depth, deepest := 0, 0
	for _, c := range doc {
		switch c {
		case '[', '{':
			depth++
			deepest = max(deepest, depth)
		case ']', '}':
			depth--
		}
	}
	return deepest
}

// The scanner judges every document as the token walk it replaced did:
// the same fault, named the same way, or none.
func TestExactScannerIsTheTokenWalk(t *testing.T) {
	for _, c := range exactCases {
		sameVerdict(t, []byte(c))
	}
}

func FuzzExactScanner(f *testing.F) {
	for _, c := range exactCases {
		if nesting([]byte(c)) <= 1000 {
			f.Add([]byte(c))
		}
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		if !utf8.Valid(doc) || checkEscapes(doc) != nil {
			return // refused before the walk
		}
		if nesting(doc) > 1000 {
			// The token walk names a deep field in time quadratic in its
			// depth; the table test has the deep documents.
			return
		}
		sameVerdict(t, doc)
	})
}

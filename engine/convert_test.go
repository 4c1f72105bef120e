package engine

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/gatelog/gatelog/record/decision"
)

// jsonInput is how the engine built the input before convert.go: the
// request encoded with encoding/json and parsed into an AST value.
func jsonInput(t *testing.T, req decision.Request) ast.Value {
	t.Helper()
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	v, err := ast.ValueFromReader(strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestInputValueMatchesJSON holds inputValue to the JSON round trip on the
// example requests and on requests with every optional part, free-form
// values of every JSON type and of other Go types, and invalid UTF-8.
func TestInputValueMatchesJSON(t *testing.T) {
	reqs := map[string]decision.Request{
		"empty": {},
		"full": {
			Subject: decision.Subject{
				ID: "alice", Kind: "user", Issuer: "https://idp", Groups: []string{"a", "b"},
				MFA: true, AuthTime: "2026-03-04T09:50:00Z", TokenAgeS: 1 << 40,
				CredentialExpiresAt: "2027-01-01T00:00:00Z", Verified: true, AssertedBy: "ci",
				Claims: map[string]any{
					"break_glass": true, "n": 1.5, "big": 1e21, "small": 1e-7, "int": 3.0,
					"null": nil, "list": []any{"x", 2.0, map[string]any{"k": false}},
					"num": json.Number("12345678901234567890"), "ints": []int{1, 2},
					"strs": []string{"p"}, "typed": struct {
						A string `json:"a"`
					}{"b"},
				},
			},
			Action: "deploy",
			Resource: decision.Resource{
				System: "tekton", Kind: "TaskRun", Name: "n", Namespace: "ns", Environment: "production",
				Repository: "acme/shop", Ref: "refs/heads/main",
				Attributes: map[string]any{"owner": map[string]any{"kind": "PipelineRun"}},
			},
			Context: decision.Context{
				Time: "2026-03-04T10:00:00Z", SourceIP: "192.0.2.1",
				Change:           &decision.Change{ID: "c1", Author: "bob", Approvers: []string{"carol"}},
				BreakGlassReason: "incident", History: &decision.History{PrivilegedActionsUsed: []string{"deploy"}},
				DryRun: true, Unverified: map[string]any{"commit_author": "mallory"},
			},
			Source: decision.Source{Adapter: "tekton", AdapterVersion: "1", RequestID: "r"},
		},
		"empty parts": {
			Subject: decision.Subject{Groups: []string{}, Claims: map[string]any{}},
			Context: decision.Context{Change: &decision.Change{}, History: &decision.History{}},
		},
		"invalid utf-8": {
			Subject:  decision.Subject{ID: "a\xffb\xe2\x82", Groups: []string{"\xc0"}},
			Action:   "x\x80",
			Resource: decision.Resource{Attributes: map[string]any{"k\xfe": "v\xfd"}},
		},
	}
	files, err := filepath.Glob("../examples/*/*.json")
	if err != nil {
		t.Fatal(err)
	}
	more, _ := filepath.Glob("../examples/policies/requests/*.json")
	for _, f := range append(files, more...) {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		req, err := decision.ParseRequest(raw)
		if err != nil {
			continue // not a request
		}
		reqs[f] = req
	}
	if len(reqs) < 20 {
		t.Fatalf("only %d requests", len(reqs))
	}
	for name, req := range reqs {
		got, err := inputValue(req)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want := jsonInput(t, req)
		if got.Compare(want) != 0 || got.String() != want.String() {
			t.Errorf("%s:\n got  %s\n want %s", name, got, want)
		}
	}
}

func TestInputValueRejectsWhatJSONRejects(t *testing.T) {
	inf := 1.0
	for range 2000 {
		inf *= 10
	}
	req := decision.Request{Subject: decision.Subject{Claims: map[string]any{"x": inf}}}
	if _, err := json.Marshal(req); err == nil {
		t.Fatal("encoding/json accepted +Inf")
	}
	if _, err := inputValue(req); err == nil {
		t.Fatal("inputValue accepted +Inf")
	}
}

// TestDecisionFromMatchesJSON holds decisionFrom to the encoding/json path
// on well-formed results and on results that only that path reads.
func TestDecisionFromMatchesJSON(t *testing.T) {
	results := map[string]string{
		"allow":          `{"allow": true, "reasons": ["ok"], "alerts": [], "obligations": {}}`,
		"deny":           `{"allow": false, "reasons": ["a", "b"], "alerts": [{"severity": "high", "code": "c", "message": "m"}]}`,
		"no reasons":     `{"allow": false}`,
		"null parts":     `{"allow": true, "reasons": null, "alerts": null, "obligations": null}`,
		"obligations":    `{"allow": true, "reasons": [], "obligations": {"review": {"n": 12345678901234567890, "f": 1.5, "l": [1, "x", null, true]}}}`,
		"upper case key": `{"allow": true, "Reasons": ["from Reasons"]}`,
		"extra key":      `{"allow": true, "reasons": ["r"], "extra": 1}`,
		"alert extra":    `{"allow": true, "reasons": ["r"], "alerts": [{"code": "c", "Severity": "low", "x": 1}]}`,
		"alert null":     `{"allow": true, "reasons": ["r"], "alerts": [{"code": null}]}`,
		"reason number":  `{"allow": false, "reasons": [1]}`,
		"alerts object":  `{"allow": false, "reasons": ["r"], "alerts": {"a": 1}}`,
		"huge number":    `{"allow": false, "reasons": ["r"], "obligations": {"x": 1e400}}`,
		"allow string":   `{"allow": "true"}`,
	}
	for name, src := range results {
		var v any
		dec := json.NewDecoder(strings.NewReader(src))
		dec.UseNumber() // as OPA returns numbers
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, gotErr := decisionFrom(v)
		want, wantErr := jsonDecision(v)
		if (gotErr == nil) != (wantErr == nil) || (gotErr != nil && gotErr.Error() != wantErr.Error()) {
			t.Errorf("%s: error %v, want %v", name, gotErr, wantErr)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got  %#v\n want %#v", name, got, want)
		}
	}
}

// jsonDecision is how the engine read a result before convert.go.
func jsonDecision(v any) (decision.Decision, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return decision.Decision{}, errors.New("want an object")
	}
	allow, ok := m["allow"].(bool)
	if !ok {
		return decision.Decision{}, errors.New(`"allow" is missing or not a boolean`)
	}
	d, err := unmarshalDecision(m)
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

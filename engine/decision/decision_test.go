package decision_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/gatelog/gatelog/engine/decision"
)

func TestParseRequest(t *testing.T) {
	cases := []struct {
		name, body, wantErr string
	}{
		{"minimal", `{"action":"deploy"}`, ""},
		{"full", `{"subject":{"id":"a","groups":["g"],"mfa":true,"claims":{"x":1}},"action":"deploy","resource":{"environment":"production","attributes":{"k":"v"}},"context":{"time":"2026-01-02T03:04:05Z","unverified":{"commit_author":"c"}},"source":{"adapter":"tekton"}}`, ""},
		{"missing action", `{}`, `"action" is required`},
		{"blank action", `{"action":"  "}`, `"action" is required`},
		{"long action", `{"action":"` + strings.Repeat("a", 129) + `"}`, `longer than 128`},
		{"unknown field", `{"action":"x","extra":1}`, `unknown field "extra"`},
		{"type", `{"action":"x","subject":{"mfa":"yes"}}`, `"subject.mfa" must be bool`},
		{"syntax", `{"action":"x",}`, "malformed JSON"},
		{"truncated", `{"action":"x"`, "unexpected end"},
		{"two objects", `{"action":"x"}{"action":"y"}`, "after the JSON object"},
		{"auth time", `{"action":"x","subject":{"auth_time":"noon"}}`, `"subject.auth_time"`},
		{"too big", `{"action":"` + strings.Repeat("a", decision.MaxRequestBytes) + `"}`, "larger than"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decision.ParseRequest([]byte(tc.body))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !errors.Is(err, decision.ErrBadRequest) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %v, want ErrBadRequest containing %q", err, tc.wantErr)
			}
		})
	}
}

func FuzzParseRequest(f *testing.F) {
	f.Add([]byte(`{"action":"deploy","subject":{"id":"a"}}`))
	f.Add([]byte(`{"action":"x","context":{"time":"2026-01-02T03:04:05Z"}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := decision.ParseRequest(data)
		if err != nil {
			if !errors.Is(err, decision.ErrBadRequest) {
				t.Fatalf("error does not wrap ErrBadRequest: %v", err)
			}
			return
		}
		if strings.TrimSpace(r.Action) == "" {
			t.Fatal("accepted a request without an action")
		}
	})
}

func ExampleParseRequest() {
	_, err := decision.ParseRequest([]byte(`{"action":"deploy","colour":"red"}`))
	fmt.Println(err)
	r, _ := decision.ParseRequest([]byte(`{"action":"deploy","resource":{"environment":"production"}}`))
	fmt.Println(r.Action, r.Resource.Environment)
	// Output:
	// bad request: unknown field "colour"
	// deploy production
}

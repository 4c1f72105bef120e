package decision_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/gatelog/gatelog/record/decision"
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
		// What encoding/json would accept only by changing it is refused,
		// so the signed record is what was sent.
		{"duplicate key", `{"action":"deploy","action":"read"}`, `field "action" appears twice`},
		{"nested duplicate", `{"action":"x","resource":{"attributes":{"a":1,"b":{"c":1,"c":2}}}}`, `field "resource.attributes.b.c" appears twice`},
		{"invalid utf-8", "{\"action\":\"x\xff\"}", "not valid UTF-8 (at byte 12)"},
		{"nul escape", `{"action":"x\u0000y"}`, "NUL"},
		{"lone high surrogate", `{"action":"x\ud800"}`, "unpaired surrogate"},
		{"lone low surrogate", `{"action":"\udc00x"}`, "unpaired surrogate"},
		{"high then not low", `{"action":"\ud83d\u0041"}`, "unpaired surrogate"},
		{"huge integer", `{"action":"x","resource":{"attributes":{"build":9007199254740993}}}`, `field "resource.attributes.build": integer 9007199254740993`},
		{"huge negative integer", `{"action":"x","context":{"unverified":{"n":[1,-90071992547409930]}}}`, `"context.unverified.n[1]"`},
		{"surrogate pair", `{"action":"deploy \ud83d\ude80"}`, ""},
		{"escaped backslash then u", `{"action":"a\\u0000"}`, ""},
		{"replacement char as sent", `{"action":"x\ufffd �"}`, ""},
		{"2^53", `{"action":"x","resource":{"attributes":{"n":9007199254740992,"f":1.5e300}}}`, ""},
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
	f.Add([]byte(`{"action":"x","action":"y"}`))
	f.Add([]byte(`{"action":"\ud83d\ude80","resource":{"attributes":{"n":9007199254740993}}}`))
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

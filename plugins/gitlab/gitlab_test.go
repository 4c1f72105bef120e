package gitlab

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatelog/gatelog/plugins/adapter"
	"github.com/gatelog/gatelog/plugins/adapter/adaptertest"
	"github.com/gatelog/gatelog/record/decision"
)

// settingsForFixtures are the shipped example's (examples/gitlab/adapters.json).
var settingsForFixtures = map[string]string{
	SettingProtectedRefs:       "refs/heads/main, refs/tags/v*",
	SettingTagNames:            "v*",
	SettingInstanceRequires2FA: "true",
}

var suite = adaptertest.Suite{
	New:      func() adapter.Adapter { return New() },
	Settings: settingsForFixtures,
	Allowed:  allowed,
	Garbage: [][]byte{
		[]byte(`{"project":{"path":"a/b"},"user":{"username":"u"},"pipeline":{"sha":"s","ref":"r"},"builds":[{"name":""}]}`),
		[]byte(`{"project":{"path":"a/b"},"user":{"username":"u"},"pipeline":{"sha":"s"}}`),
		[]byte(`{"project":{"path":"a/b"},"user":{"username":"u"},"pipeline":{"sha":"s","ref":"r"},"builds":{}}`),
		[]byte(`{"project":"a/b"}`),
	},
}

// allowed reads the answer the way GitLab does: only 200 creates the
// pipeline, and every answer the adapter gives is 200 or 406.
func allowed(_ adapter.Native, resp adapter.Response) (bool, error) {
	var ans answer
	dec := json.NewDecoder(bytes.NewReader(resp.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ans); err != nil {
		return false, err
	}
	if ans.Allow != (resp.Status == StatusAccepted) {
		return false, fmt.Errorf("allow %v with status %d", ans.Allow, resp.Status)
	}
	return resp.Status == StatusAccepted, nil
}

func TestConformance(t *testing.T) { suite.Run(t) }

func FuzzTranslate(f *testing.F) { suite.Fuzz(f) }

// Every fixture follows the payload schema in GitLab's documentation: it
// decodes strictly into Payload, which lists every documented property, and
// has the documented required fields.
func TestFixturesFollowTheDocumentedSchema(t *testing.T) {
	paths, _ := filepath.Glob("testdata/*.payload.json")
	for _, p := range paths {
		if _, err := os.Stat(strings.TrimSuffix(p, ".payload.json") + ".rejected.txt"); err == nil {
			continue
		}
		body, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		var pl Payload
		if err := dec.Decode(&pl); err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(body, &raw); err != nil {
			t.Fatal(err)
		}
		// namespace is sent by GitLab Premium and Ultimate only (the EE
		// module adds it), so a Free instance's payload lacks it.
		for _, req := range []string{"project", "user", "credit_card", "pipeline", "builds", "total_builds_count"} {
			if _, ok := raw[req]; !ok {
				t.Errorf("%s: required field %q missing", p, req)
			}
		}
		var builds []map[string]json.RawMessage
		if err := json.Unmarshal(raw["builds"], &builds); err != nil {
			t.Fatal(err)
		}
		for i, b := range builds {
			for _, req := range []string{"name", "stage", "image", "tag_list", "services", "script"} {
				if _, ok := b[req]; !ok {
					t.Errorf("%s: builds[%d]: required field %q missing", p, i, req)
				}
			}
		}
	}
}

func translate(t *testing.T, a *Adapter, name string) decision.Request {
	t.Helper()
	body, err := os.ReadFile(filepath.Join("testdata", name+".payload.json"))
	if err != nil {
		t.Fatal(err)
	}
	req, err := a.Translate(t.Context(), adapter.Native{Body: body, Headers: http.Header{TokenHeader: {"glvt-secret-value"}}})
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func configured(t *testing.T, s map[string]string) *Adapter {
	t.Helper()
	a := New()
	if err := a.Configure(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	return a
}

// The token never reaches the request, nor do the user's email and
// sign-in addresses, nor script text; the user is only a claim until the
// daemon binds it.
func TestNoSecretsOrPersonalDataInTheRequest(t *testing.T) {
	req := translate(t, configured(t, settingsForFixtures), "deploy-prod-main")
	b, _ := json.Marshal(req)
	for _, s := range []string{"glvt-secret-value", "alice@acme.example", "10.20.30.40", "10.20.30.41", "GITLAB_USER_LOGIN"} {
		if bytes.Contains(b, []byte(s)) {
			t.Errorf("the request carries %q:\n%s", s, b)
		}
	}
	if req.Subject.ID != "alice" || req.Subject.Verified {
		t.Errorf("subject = %+v", req.Subject)
	}
}

func TestRenderOnlyAllowIs200(t *testing.T) {
	for _, tc := range []struct {
		out    adapter.Outcome
		status int
		want   string
	}{
		{adapter.Outcome{Receipt: &decision.Receipt{DecisionID: "d-1", Allow: true, LogIndex: 3}}, 200, "gatelog: pipeline accepted (decision d-1, log index 3)"},
		{adapter.Outcome{Receipt: &decision.Receipt{DecisionID: "d-2", LogIndex: 4, Reasons: []string{"freeze"}}}, 406, "gatelog: pipeline rejected (decision d-2, log index 4): freeze"},
		{adapter.Outcome{Failure: &adapter.Failure{Kind: adapter.Unauthenticated, Message: "X-Gitlab-Token rejected"}}, 406, "X-Gitlab-Token rejected"},
		{adapter.Outcome{Failure: &adapter.Failure{Kind: adapter.Unavailable, Message: "log down"}}, 406, "log down"},
		{adapter.Outcome{Failure: &adapter.Failure{Kind: adapter.Internal, Message: "x"}}, 406, "x"},
	} {
		resp, err := New().Render(t.Context(), adapter.Native{}, tc.out)
		if err != nil {
			t.Fatal(err)
		}
		var ans answer
		if err := json.Unmarshal(resp.Body, &ans); err != nil {
			t.Fatal(err)
		}
		if resp.Status != tc.status || !strings.Contains(ans.Message, tc.want) {
			t.Errorf("%+v: %d %s", tc.out, resp.Status, resp.Body)
		}
	}
	info, _ := New().Info(t.Context())
	if info.Unavailable.Status != StatusRejected {
		t.Errorf("unavailable answers %d: GitLab creates the pipeline on anything but 406", info.Unavailable.Status)
	}
}

func TestVerifyToken(t *testing.T) {
	want := []byte("glvt-s3cret")
	if err := VerifyToken(want, "glvt-s3cret"); err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string]string{"missing": "", "wrong": "glvt-s3creT", "prefix": "glvt-s3cre", "longer": "glvt-s3cret "} {
		err := VerifyToken(want, got)
		if !errors.Is(err, ErrToken) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := VerifyToken(nil, ""); !errors.Is(err, ErrToken) {
		t.Errorf("no configured token: %v", err)
	}
}

func TestConfigureRejectsMalformedMappings(t *testing.T) {
	for _, s := range []map[string]string{
		{SettingJobEnvironments: "deploy-production"},
		{SettingStageEnvironments: "=production"},
		{SettingDefaultAction: ""},
		{"token": "x"},
	} {
		if err := New().Configure(t.Context(), s); !errors.Is(err, adapter.ErrBadSettings) {
			t.Errorf("Configure(%v) = %v", s, err)
		}
	}
}

func FuzzVerifyToken(f *testing.F) {
	f.Add("glvt-s3cret")
	f.Add("")
	want := []byte("glvt-s3cret")
	f.Fuzz(func(t *testing.T, got string) {
		err := VerifyToken(want, got)
		if (err == nil) != (got == string(want)) {
			t.Fatalf("VerifyToken(%q) = %v", got, err)
		}
	})
}

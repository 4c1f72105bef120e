// Package adaptertest is the conformance suite every gatelog adapter runs:
// it translates the adapter's fixtures and compares them with the expected
// Requests, renders allow, deny and every failure for each of them and checks
// that only an allow lets the CI system proceed, and feeds it garbage that
// must be rejected as a bad payload without a panic and rendered as a
// denial. Each check runs on the adapter directly and through go-plugin's
// in-process gRPC connection.
//
// Fixtures live in the adapter's testdata directory:
//
//	NAME.payload.json   the native payload, as the CI system sends it
//	NAME.headers.json   optional HTTP headers, {"Name": ["value"]}
//	NAME.request.json   the Request Translate must produce, or
//	NAME.rejected.txt   a substring of the ErrBadPayload error it must return
//
// Set GATELOG_UPDATE_GOLDEN=1 to rewrite the .request.json files.
package adaptertest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/go-plugin"

	"github.com/gatelog/gatelog/plugins/adapter"
	"github.com/gatelog/gatelog/record/decision"
)

// Suite describes the adapter under test.
type Suite struct {
	// New returns a fresh, unconfigured adapter.
	New func() adapter.Adapter
	// Settings are passed to Configure before the fixtures run.
	Settings map[string]string
	// Dir holds the fixtures; default "testdata".
	Dir string
	// Allowed decodes a 2xx native answer and reports whether it lets the
	// CI system go ahead; an error means the answer is malformed. Answers
	// with other statuses never allow (every CI system treats them as a
	// failed call) and are not passed to it.
	Allowed func(in adapter.Native, resp adapter.Response) (bool, error)
	// Garbage adds payloads to the built-in list of bad inputs, e.g. a
	// well-formed envelope with the wrong contents.
	Garbage [][]byte
}

// Fixture is one native payload and what Translate must make of it.
type Fixture struct {
	Name    string
	Payload adapter.Native
	// Request is the expected Request (nil when the fixture is rejected).
	Request json.RawMessage
	// Rejected is the expected error substring of a rejected fixture.
	Rejected string
	path     string
}

// Fixtures reads the fixtures in dir.
func Fixtures(dir string) ([]Fixture, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.payload.json"))
	if err != nil {
		return nil, err
	}
	var out []Fixture
	for _, p := range paths {
		base := strings.TrimSuffix(p, ".payload.json")
		fx := Fixture{Name: filepath.Base(base), path: base}
		if fx.Payload.Body, err = os.ReadFile(p); err != nil {
			return nil, err
		}
		if b, err := os.ReadFile(base + ".headers.json"); err == nil {
			if err := json.Unmarshal(b, &fx.Payload.Headers); err != nil {
				return nil, fmt.Errorf("%s.headers.json: want {\"Name\": [\"value\"]}: %w", base, err)
			}
		}
		if b, err := os.ReadFile(base + ".rejected.txt"); err == nil {
			fx.Rejected = strings.TrimSpace(string(b))
		} else if b, err := os.ReadFile(base + ".request.json"); err == nil {
			fx.Request = b
		} else if os.Getenv("GATELOG_UPDATE_GOLDEN") == "" {
			return nil, fmt.Errorf("fixture %s: no %s.request.json or %s.rejected.txt", fx.Name, fx.Name, fx.Name)
		}
		out = append(out, fx)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no fixtures (*.payload.json) in %s", dir)
	}
	return out, nil
}

// Outcomes are the outcomes every fixture is rendered with: an allow, a
// deny, and each failure kind.
func Outcomes() map[string]adapter.Outcome {
	receipt := func(allow bool, id string, reasons ...string) *decision.Receipt {
		return &decision.Receipt{
			DecisionID: id, Allow: allow, Reasons: reasons, LogIndex: 4242,
			UUID:           "b2f9a1c0d3e4f5a6" + strings.Repeat("ab", 32),
			IntegratedTime: 1767225600,
		}
	}
	out := map[string]adapter.Outcome{
		"allow": {Receipt: receipt(true, "dec-allow-0001")},
		"deny":  {Receipt: receipt(false, "dec-deny-0002", "production deploys need an approved change", "outside the deploy window")},
	}
	for _, k := range []adapter.FailureKind{adapter.BadRequest, adapter.Unauthenticated, adapter.Unavailable, adapter.Internal} {
		out["failure-"+k.String()] = adapter.Outcome{Failure: &adapter.Failure{Kind: k, Message: "conformance " + k.String()}}
	}
	return out
}

// Run runs the conformance suite.
func (s Suite) Run(t *testing.T) {
	t.Helper()
	if s.New == nil || s.Allowed == nil {
		t.Fatal("adaptertest: Suite.New and Suite.Allowed are required")
	}
	dir := cmp(s.Dir, "testdata")
	fixtures, err := Fixtures(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()

	t.Run("info", func(t *testing.T) {
		info, err := s.New().Info(ctx)
		if err != nil {
			t.Fatalf("Info: %v", err)
		}
		if info.Name == "" || info.Version == "" || len(info.Kinds) == 0 {
			t.Errorf("Info = %+v: want a name, a version and at least one kind", info)
		}
		if u := info.Unavailable; u != nil && (u.Status < 400 || u.Status > 599) {
			t.Errorf("Info.Unavailable status %d: want 400-599, nothing may look like an allow while the adapter is down", u.Status)
		}
	})

	t.Run("configure", func(t *testing.T) {
		a := s.New()
		if err := a.Configure(ctx, s.Settings); err != nil {
			t.Fatalf("Configure(%v): %v", s.Settings, err)
		}
		err := a.Configure(ctx, map[string]string{"adaptertest-no-such-setting": "x"})
		if !errors.Is(err, adapter.ErrBadSettings) {
			t.Errorf("Configure(unknown setting) = %v, want an error wrapping ErrBadSettings", err)
		}
	})

	for _, transport := range []string{"direct", "grpc"} {
		t.Run(transport, func(t *testing.T) {
			a := s.adapter(t, transport)
			for _, fx := range fixtures {
				t.Run(fx.Name, func(t *testing.T) { s.checkFixture(t, a, fx) })
			}
		})
	}

	t.Run("garbage", func(t *testing.T) {
		a := s.adapter(t, "direct")
		for i, g := range s.garbage(fixtures) {
			t.Run(fmt.Sprint(i), func(t *testing.T) { s.CheckGarbage(t, a, adapter.Native{Body: g}) })
		}
	})
}

// adapter returns a configured adapter, called directly or through an
// in-process go-plugin gRPC connection.
func (s Suite) adapter(t *testing.T, transport string) adapter.Adapter {
	t.Helper()
	impl := s.New()
	var a adapter.Adapter = impl
	if transport == "grpc" {
		client, _ := plugin.TestPluginGRPCConn(t, false, adapter.PluginSet(impl))
		t.Cleanup(func() { client.Close() })
		raw, err := client.Dispense(adapter.PluginName)
		if err != nil {
			t.Fatalf("dispense: %v", err)
		}
		a = raw.(*adapter.Client)
	}
	if err := a.Configure(t.Context(), s.Settings); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	return a
}

func (s Suite) checkFixture(t *testing.T, a adapter.Adapter, fx Fixture) {
	ctx := t.Context()
	req, err := a.Translate(ctx, fx.Payload)
	if fx.Rejected != "" {
		if !errors.Is(err, adapter.ErrBadPayload) || !strings.Contains(err.Error(), fx.Rejected) {
			t.Fatalf("Translate = %v, want an ErrBadPayload error containing %q", err, fx.Rejected)
		}
		s.checkNeverAllows(t, a, fx.Payload)
		return
	}
	if err != nil {
		t.Fatalf("Translate: %v", err)
	}
	if err := adapter.ValidateRequest(req); err != nil {
		t.Fatalf("Translate produced a request the host refuses: %v", err)
	}
	got := canonical(t, req)
	if os.Getenv("GATELOG_UPDATE_GOLDEN") != "" {
		if err := os.WriteFile(fx.path+".request.json", got, 0o644); err != nil {
			t.Fatal(err)
		}
	} else {
		var want any
		if err := json.Unmarshal(fx.Request, &want); err != nil {
			t.Fatalf("%s.request.json: %v", fx.Name, err)
		}
		if wantJSON := canonical(t, want); !bytes.Equal(got, wantJSON) {
			t.Errorf("Translate(%s):\n got %s\nwant %s", fx.Name, got, wantJSON)
		}
	}
	// A request an adapter produced must survive the host's strict decoding.
	if _, err := decision.ParseRequest(mustJSON(t, req)); err != nil {
		t.Errorf("the request does not parse as gatelog JSON: %v", err)
	}

	for name, out := range Outcomes() {
		resp, err := a.Render(ctx, fx.Payload, out)
		if err != nil {
			t.Errorf("Render(%s): %v", name, err)
			continue
		}
		if resp.Status < 200 || resp.Status > 599 || len(resp.Body) == 0 {
			t.Errorf("Render(%s) = status %d, %d bytes: want a valid status and a body", name, resp.Status, len(resp.Body))
			continue
		}
		allowed, err := s.allowed(fx.Payload, resp)
		if err != nil {
			t.Errorf("Render(%s) is not a valid native answer: %v\n%s", name, err, resp.Body)
			continue
		}
		if want := out.Allowed(); allowed != want {
			t.Errorf("Render(%s) allows = %v, want %v\n%s", name, allowed, want, resp.Body)
		}
		if req.Context.DryRun {
			// The daemon logs nothing for a dry run, so its answer must
			// carry no decision id a CI system could take for a receipt.
			if out.Receipt != nil && (bytes.Contains(resp.Body, []byte(out.Receipt.DecisionID)) || headersContain(resp.Headers, out.Receipt.DecisionID)) {
				t.Errorf("Render(%s) of a dry run carries the decision id %q\n%s", name, out.Receipt.DecisionID, resp.Body)
			}
			continue
		}
		if out.Receipt != nil && !bytes.Contains(resp.Body, []byte(out.Receipt.DecisionID)) && !headersContain(resp.Headers, out.Receipt.DecisionID) {
			t.Errorf("Render(%s) does not carry the decision id %q, so the CI system cannot link to the log\n%s", name, out.Receipt.DecisionID, resp.Body)
		}
	}
}

func (s Suite) allowed(in adapter.Native, resp adapter.Response) (bool, error) {
	if resp.Status < 200 || resp.Status > 299 {
		return false, nil
	}
	return s.Allowed(in, resp)
}

// checkNeverAllows renders a deny and every failure for a payload and
// checks none of them lets the CI system proceed.
func (s Suite) checkNeverAllows(t *testing.T, a adapter.Adapter, in adapter.Native) {
	t.Helper()
	for name, out := range Outcomes() {
		if out.Allowed() {
			continue
		}
		resp, err := a.Render(t.Context(), in, out)
		if err != nil {
			t.Errorf("Render(%s) of a rejected payload: %v (the host would fall back to 503, but the adapter should answer)", name, err)
			continue
		}
		if resp.Status < 200 || resp.Status > 599 {
			t.Errorf("Render(%s) of a rejected payload: status %d", name, resp.Status)
			continue
		}
		if allowed, err := s.allowed(in, resp); err == nil && allowed {
			t.Errorf("Render(%s) of a rejected payload allows:\n%s", name, resp.Body)
		}
	}
}

// CheckGarbage feeds one payload that may be anything: Translate must not
// panic and either reject it as a bad payload or produce a request the host
// accepts, and no failure or deny rendered for it may allow.
func (s Suite) CheckGarbage(t *testing.T, a adapter.Adapter, in adapter.Native) {
	t.Helper()
	req, err := a.Translate(t.Context(), in)
	switch {
	case err != nil && !errors.Is(err, adapter.ErrBadPayload):
		t.Fatalf("Translate(%.60q) = %v: a payload the adapter cannot use must be an ErrBadPayload", in.Body, err)
	case err == nil:
		if verr := adapter.ValidateRequest(req); verr != nil {
			t.Fatalf("Translate(%.60q) produced a request the host refuses: %v", in.Body, verr)
		}
	}
	s.checkNeverAllows(t, a, in)
}

// garbage is the built-in list of bad inputs, plus mutations of every
// fixture (truncations and deterministic byte flips).
func (s Suite) garbage(fixtures []Fixture) [][]byte {
	g := [][]byte{
		nil, []byte(""), []byte(" "), []byte("null"), []byte("{}"), []byte("[]"), []byte(`""`), []byte("0"),
		[]byte("{"), []byte(`{"a":`), []byte("\x00\xff\xfe"), []byte(strings.Repeat("[", 20000)),
		[]byte(`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{}}`),
		[]byte(`{"body":"{}","context":{}}`), []byte(`{"JOB_NAME":""}`),
	}
	g = append(g, s.Garbage...)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, fx := range fixtures {
		b := fx.Payload.Body
		for _, n := range []int{1, len(b) / 3, len(b) / 2, len(b) - 1} {
			if n > 0 && n < len(b) {
				g = append(g, slices.Clone(b[:n]))
			}
		}
		for range 8 {
			m := slices.Clone(b)
			for range 1 + rng.IntN(4) {
				if len(m) > 0 {
					m[rng.IntN(len(m))] = "{}[]\":,0a\\"[rng.IntN(10)]
				}
			}
			g = append(g, m)
		}
	}
	return g
}

// Fuzz is the body of an adapter's FuzzTranslate: the fixtures are the seed
// corpus and every input is checked as CheckGarbage does.
func (s Suite) Fuzz(f *testing.F) {
	fixtures, err := Fixtures(cmp(s.Dir, "testdata"))
	if err != nil {
		f.Fatal(err)
	}
	for _, fx := range fixtures {
		f.Add(fx.Payload.Body)
	}
	a := s.New()
	if err := a.Configure(f.Context(), s.Settings); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		s.CheckGarbage(t, a, adapter.Native{Body: body, Headers: http.Header{"Content-Type": {"application/json"}}})
	})
}

func canonical(t *testing.T, v any) []byte {
	t.Helper()
	var generic any
	if err := json.Unmarshal(mustJSON(t, v), &generic); err != nil {
		t.Fatal(err)
	}
	b, err := json.MarshalIndent(generic, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func headersContain(h http.Header, s string) bool {
	for _, vs := range h {
		for _, v := range vs {
			if strings.Contains(v, s) {
				return true
			}
		}
	}
	return false
}

func cmp(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

package host_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/gatelog/gatelog/internal/poll"
	"github.com/gatelog/gatelog/plugins/adapter"
	"github.com/gatelog/gatelog/plugins/builtin"
	"github.com/gatelog/gatelog/plugins/host"
	"github.com/gatelog/gatelog/record/decision"
)

// The test binary doubles as the gatelog binary: the host starts built-in
// adapters as `<os.Executable()> adapter serve NAME`, which lands here.
func TestMain(m *testing.M) {
	if len(os.Args) == 4 && os.Args[1] == "adapter" && os.Args[2] == "serve" {
		if os.Args[3] == "misbehaving" {
			fmt.Fprintln(os.Stderr, "misbehaving adapter says hello on stderr")
			adapter.Serve(misbehaving{})
			os.Exit(0)
		}
		if err := builtin.Serve(os.Args[3]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "gatelog-host-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	buildDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildDir holds the adapter binaries built once per test run.
var buildDir string

// misbehaving is an adapter whose output the host must refuse.
type misbehaving struct{}

func (misbehaving) Info(context.Context) (adapter.Info, error) {
	return adapter.Info{Name: "misbehaving", Version: "0", Kinds: []string{"any"},
		Unavailable: &adapter.Response{Status: http.StatusOK, Body: []byte(`{"allow":true}`)}}, nil
}

func (misbehaving) Configure(context.Context, map[string]string) error { return nil }

func (misbehaving) Translate(_ context.Context, in adapter.Native) (decision.Request, error) {
	switch string(in.Body) {
	case "no-subject":
		return decision.Request{Action: "deploy"}, nil
	case "claims-verified":
		return decision.Request{Action: "deploy", Subject: decision.Subject{ID: "x", Verified: true}}, nil
	case "internal-error":
		return decision.Request{}, errors.New("adapter bug")
	default:
		return decision.Request{Action: "deploy", Subject: decision.Subject{ID: "x"}}, nil
	}
}

func (misbehaving) Render(context.Context, adapter.Native, adapter.Outcome) (adapter.Response, error) {
	return adapter.Response{Status: 99}, nil
}

// syncBuffer collects log output from the host's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newHost(t *testing.T, configs []host.Config, opts host.Options) (*host.Host, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	opts.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if opts.HealthInterval == 0 {
		opts.HealthInterval = 50 * time.Millisecond
	}
	if opts.MinBackoff == 0 {
		opts.MinBackoff = 50 * time.Millisecond
	}
	h, err := host.New(configs, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h.Close()
		if t.Failed() {
			t.Logf("host log:\n%s", logs)
		}
	})
	return h, logs
}

func fixture(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", path))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// eventually polls cond until it holds or a generous deadline passes.

func status(h *host.Host, name string) host.Status {
	for _, s := range h.Status() {
		if s.Name == name {
			return s
		}
	}
	return host.Status{}
}

func TestBuiltinAdapterTranslatesAndRenders(t *testing.T) {
	h, _ := newHost(t, []host.Config{{Name: "tekton", Builtin: "tekton"}}, host.Options{})
	if err := h.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	st := status(h, "tekton")
	if st.State != host.Ready || st.PID == 0 || st.PID == os.Getpid() || st.Version == "" {
		t.Fatalf("status = %+v", st)
	}
	body := fixture(t, "tekton/testdata/pipelinerun-git-resolver.payload.json")
	req, err := h.Translate(t.Context(), "tekton", body, http.Header{"Content-Type": {"application/json"}})
	if err != nil {
		t.Fatal(err)
	}
	if req.Action != "pipeline.trigger" || req.Subject.ID != "bob@example.com" || req.Source.Adapter != "tekton" || req.Source.AdapterVersion != st.Version {
		t.Errorf("request = %+v", req)
	}
	rc := &decision.Receipt{DecisionID: "d-1", Allow: true, LogIndex: 12}
	resp, err := h.Render(t.Context(), "tekton", body, nil, rc, nil)
	if err != nil {
		t.Fatal(err)
	}
	var rev admissionv1.AdmissionReview
	if err := json.Unmarshal(resp.Body, &rev); err != nil || rev.Response == nil || !rev.Response.Allowed {
		t.Fatalf("render = %d %s (%v)", resp.Status, resp.Body, err)
	}
	// A decision error renders as the native denial, with only safe text.
	resp, err = h.Render(t.Context(), "tekton", body, nil, nil, fmt.Errorf("append: dial tcp 10.1.2.3:3306: %w", errors.New("refused")))
	if err != nil {
		t.Fatal(err)
	}
	rev = admissionv1.AdmissionReview{}
	if err := json.Unmarshal(resp.Body, &rev); err != nil || rev.Response.Allowed || strings.Contains(string(resp.Body), "10.1.2.3") {
		t.Fatalf("render of an internal error = %s", resp.Body)
	}
}

func TestKilledAdapterFailsClosedThenRestarts(t *testing.T) {
	// The backoff leaves the test time to see the adapter down before the
	// restart; it is not an assertion about how long anything takes.
	h, logs := newHost(t, []host.Config{{Name: "tekton", Builtin: "tekton"}}, host.Options{MinBackoff: 2 * time.Second})
	if err := h.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	body := fixture(t, "tekton/testdata/pipelinerun-git-resolver.payload.json")
	if _, err := h.Translate(t.Context(), "tekton", body, nil); err != nil {
		t.Fatal(err)
	}
	pid := status(h, "tekton").PID
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the killed adapter to be reaped", func() bool { return syscall.Kill(pid, 0) == syscall.ESRCH })

	_, err := h.Translate(t.Context(), "tekton", body, nil)
	if !errors.Is(err, host.ErrUnavailable) {
		t.Fatalf("Translate after SIGKILL = %v, want ErrUnavailable", err)
	}
	_, rerr := h.Render(t.Context(), "tekton", body, nil, nil, err)
	if !errors.Is(rerr, host.ErrUnavailable) {
		t.Fatalf("Render while down = %v, want ErrUnavailable", rerr)
	}
	fb := h.Fallback("tekton", rerr)
	if fb.Status != http.StatusServiceUnavailable || !strings.Contains(string(fb.Body), `"allow":false`) {
		t.Errorf("Fallback = %d %s", fb.Status, fb.Body)
	}

	poll.Until(t, "the host to restart the adapter", func() bool {
		_, err := h.Translate(t.Context(), "tekton", body, nil)
		return err == nil
	})
	st := status(h, "tekton")
	if st.PID == pid || st.PID == 0 || st.Restarts < 1 || st.State != host.Ready {
		t.Errorf("status after restart = %+v (old pid %d)", st, pid)
	}
	if !strings.Contains(logs.String(), `"msg":"adapter down, restarting"`) {
		t.Errorf("no restart in the log:\n%s", logs)
	}
}

var buildSkeleton = sync.OnceValues(func() (string, error) {
	bin := filepath.Join(buildDir, "adapter-skeleton")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/gatelog/gatelog/examples/adapter-skeleton").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// skeleton builds examples/adapter-skeleton into t.TempDir() and returns the
// path and its checksum.
func skeleton(t *testing.T) (string, string) {
	t.Helper()
	built, err := buildSkeleton()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(built)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "adapter-skeleton")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	sum, err := host.FileSHA256(bin)
	if err != nil {
		t.Fatal(err)
	}
	return bin, sum
}

func TestThirdPartyAdapter(t *testing.T) {
	bin, sum := skeleton(t)
	h, _ := newHost(t, []host.Config{{Name: "skeleton", Command: bin, SHA256: sum}}, host.Options{})
	if err := h.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"actor":"ci-bot","action":"deploy","target":"web","environment":"production"}`)
	req, err := h.Translate(t.Context(), "skeleton", body, nil)
	if err != nil {
		t.Fatal(err)
	}
	if req.Subject.ID != "ci-bot" || req.Resource.Environment != "production" {
		t.Errorf("request = %+v", req)
	}
	_, err = h.Translate(t.Context(), "skeleton", []byte(`{"actor":"ci-bot"}`), nil)
	if !errors.Is(err, adapter.ErrBadPayload) || !errors.Is(err, decision.ErrBadRequest) {
		t.Fatalf("Translate(bad payload) = %v, want ErrBadPayload", err)
	}
	resp, err := h.Render(t.Context(), "skeleton", body, nil, nil, err)
	if err != nil || resp.Status != http.StatusBadRequest || !strings.Contains(string(resp.Body), `"allowed":false`) {
		t.Errorf("Render(bad payload) = %d %s, %v", resp.Status, resp.Body, err)
	}
	huge := bytes.Repeat([]byte(" "), 5<<20)
	if _, err := h.Translate(t.Context(), "skeleton", huge, nil); !errors.Is(err, adapter.ErrBadPayload) {
		t.Errorf("Translate(5 MiB) = %v, want ErrBadPayload", err)
	}
	if resp, err := h.Render(t.Context(), "skeleton", huge, nil, nil, adapter.ErrBadPayload); err != nil || resp.Status != http.StatusBadRequest {
		t.Errorf("Render(5 MiB) = %d, %v", resp.Status, err)
	}
}

func TestChecksumMismatchRefusesAdapter(t *testing.T) {
	bin, sum := skeleton(t)
	wrong := strings.Repeat("0", 64)
	h, logs := newHost(t, []host.Config{{Name: "skeleton", Command: bin, SHA256: wrong}}, host.Options{})
	err := h.Start(t.Context())
	if !errors.Is(err, host.ErrChecksumMismatch) || !strings.Contains(err.Error(), sum) || !strings.Contains(err.Error(), wrong) {
		t.Fatalf("Start = %v, want a checksum mismatch naming both sums", err)
	}
	if st := status(h, "skeleton"); st.State != host.Refused || st.PID != 0 {
		t.Errorf("status = %+v", st)
	}
	_, err = h.Translate(t.Context(), "skeleton", []byte(`{"actor":"a","action":"b"}`), nil)
	if !errors.Is(err, host.ErrUnavailable) || !errors.Is(err, host.ErrChecksumMismatch) {
		t.Errorf("Translate = %v", err)
	}
	if fb := h.Fallback("skeleton", err); fb.Status != http.StatusServiceUnavailable {
		t.Errorf("Fallback = %d %s", fb.Status, fb.Body)
	}
	if !strings.Contains(logs.String(), `"msg":"adapter refused"`) {
		t.Errorf("no refusal in the log:\n%s", logs)
	}
}

func TestBadSettingsRefuseAdapter(t *testing.T) {
	h, _ := newHost(t, []host.Config{{Name: "jenkins", Builtin: "jenkins", Settings: map[string]string{"no_such": "x"}}}, host.Options{})
	err := h.Start(t.Context())
	if !errors.Is(err, adapter.ErrBadSettings) {
		t.Fatalf("Start = %v, want ErrBadSettings", err)
	}
	if st := status(h, "jenkins"); st.State != host.Refused || !strings.Contains(st.LastError, "no_such") {
		t.Errorf("status = %+v", st)
	}
}

func TestAdapterOutputIsValidated(t *testing.T) {
	h, logs := newHost(t, []host.Config{{Name: "bad", Builtin: "misbehaving"}}, host.Options{})
	if err := h.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		payload string
		want    error
	}{
		{"no-subject", adapter.ErrInvalidRequest},
		{"claims-verified", adapter.ErrInvalidRequest},
		{"internal-error", host.ErrUnavailable},
	} {
		if _, err := h.Translate(t.Context(), "bad", []byte(tc.payload), nil); !errors.Is(err, tc.want) {
			t.Errorf("Translate(%s) = %v, want %v", tc.payload, err, tc.want)
		}
	}
	_, err := h.Render(t.Context(), "bad", nil, nil, &decision.Receipt{Allow: true}, nil)
	if !errors.Is(err, host.ErrInvalidResponse) {
		t.Errorf("Render = %v, want ErrInvalidResponse", err)
	}
	// Its declared "unavailable" answer is a 200: the host does not use it.
	if fb := h.Fallback("bad", err); fb.Status != http.StatusServiceUnavailable || strings.Contains(string(fb.Body), `"allow":true`) {
		t.Errorf("Fallback = %d %s", fb.Status, fb.Body)
	}
	poll.Until(t, "the adapter's stderr in the log", func() bool {
		return strings.Contains(logs.String(), `"msg":"misbehaving adapter says hello on stderr"`) &&
			strings.Contains(logs.String(), `"adapter":"bad"`)
	})
}

func TestUnknownAdapter(t *testing.T) {
	h, _ := newHost(t, nil, host.Options{})
	if err := h.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	_, err := h.Translate(t.Context(), "gitlab", nil, nil)
	if !errors.Is(err, host.ErrUnknownAdapter) {
		t.Fatalf("Translate = %v", err)
	}
	if fb := h.Fallback("gitlab", err); fb.Status != http.StatusNotFound {
		t.Errorf("Fallback = %d", fb.Status)
	}
}

func TestConfigValidation(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		configs []host.Config
		want    string
	}{
		{[]host.Config{{Name: "a b", Builtin: "tekton"}}, "want letters"},
		{[]host.Config{{Name: "t", Builtin: "tekton"}, {Name: "t", Builtin: "jenkins"}}, "configured twice"},
		{[]host.Config{{Name: "t"}}, "set builtin"},
		{[]host.Config{{Name: "t", Builtin: "tekton", Command: "/bin/true"}}, "not both"},
		{[]host.Config{{Name: "t", Command: "/bin/true"}}, "64 hex digits"},
		{[]host.Config{{Name: "t", Builtin: "tekton", SHA256: strings.Repeat("a", 64)}}, "applies to a command"},
	} {
		if _, err := host.New(tc.configs, host.Options{Logger: logger}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want an error containing %q", tc.configs, err, tc.want)
		}
	}
	if _, err := host.New(nil, host.Options{}); err == nil {
		t.Error("New without a logger: no error")
	}
}

// A hung adapter still has a process, so only the health check notices it.
func TestHungAdapterIsReplaced(t *testing.T) {
	h, logs := newHost(t, []host.Config{{Name: "jenkins", Builtin: "jenkins"}}, host.Options{CallTimeout: 300 * time.Millisecond})
	if err := h.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	pid := status(h, "jenkins").PID
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	body := fixture(t, "jenkins/testdata/deploy-step-user-cause.payload.json")
	poll.Until(t, "a new adapter process", func() bool {
		st := status(h, "jenkins")
		return st.State == host.Ready && st.PID != pid && st.PID != 0
	})
	if _, err := h.Translate(t.Context(), "jenkins", body, nil); err != nil {
		t.Fatalf("Translate after the restart: %v", err)
	}
	if !strings.Contains(logs.String(), "health check") {
		t.Errorf("the log does not say the health check failed:\n%s", logs)
	}
}

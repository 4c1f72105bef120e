package daemon

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/gatelog/gatelog/engine"
	"github.com/gatelog/gatelog/engine/alert"
	"github.com/gatelog/gatelog/record"
	"github.com/gatelog/gatelog/record/receipt"
	"github.com/gatelog/gatelog/translog"
)

const recorderTestPolicy = `package gatelog

default decision := {"allow": false, "reasons": ["no rule allows this action"]}

decision := {"allow": true, "reasons": ["anyone verified may trigger pipelines"]} if {
	input.action == "pipeline.trigger"
	input.subject.verified
}
`

// faultyLog is the daemon's real log with a switch that makes appends
// fail, as a full disk or a stopped database would.
type faultyLog struct {
	record.Log
	broken atomic.Bool
}

func (l *faultyLog) AppendEnvelope(ctx context.Context, key string, env translog.Envelope, signerPEM []byte) (translog.Entry, error) {
	if l.broken.Load() {
		return translog.Entry{}, errors.New("injected: the log's disk is full")
	}
	return l.Log.AppendEnvelope(ctx, key, env, signerPEM)
}

// hungSigner signs with a real key's public half but never returns, as a
// KMS that stopped answering.
type hungSigner struct {
	pub     crypto.PublicKey
	release chan struct{}
}

func (s hungSigner) PublicKey(...signature.PublicKeyOption) (crypto.PublicKey, error) {
	return s.pub, nil
}

func (s hungSigner) SignMessage(io.Reader, ...signature.SignOption) ([]byte, error) {
	<-s.release
	return nil, errors.New("released")
}

type recorderHarness struct {
	t   *testing.T
	srv *Server
	url string
	key string
}

func openRecorderHarness(t *testing.T, appendTimeout time.Duration) *recorderHarness {
	t.Helper()
	dir := t.TempDir()
	srv, err := Open(context.Background(), Config{
		DataDir: dir, Policies: fstest.MapFS{"decision.rego": {Data: []byte(recorderTestPolicy)}},
		CheckpointInterval: 100 * time.Millisecond, AppendTimeout: appendTimeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		hs.Close()
		_ = srv.Close(context.Background())
	})
	key, err := os.ReadFile(filepath.Join(dir, BootstrapKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	return &recorderHarness{t: t, srv: srv, url: hs.URL, key: strings.TrimSpace(string(key))}
}

// swapRecorder rebuilds the daemon's Recorder as Open does, around log
// and signer.
func (h *recorderHarness) swapRecorder(log record.Log, signer *receipt.Signer) {
	h.t.Helper()
	r, err := record.New(record.Config{
		Log: log, Signer: signer, SignerPEM: h.srv.signerPEM, Timeout: h.srv.cfg.AppendTimeout,
		Queue: h.srv.queueAlerts, Observe: h.srv.observeRecord, Now: h.srv.cfg.Now, Version: h.srv.cfg.Version,
	})
	if err != nil {
		h.t.Fatal(err)
	}
	h.srv.recorder = r
}

func (h *recorderHarness) call(method, path, body string) (int, string) {
	h.t.Helper()
	req, err := http.NewRequest(method, h.url+path, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+h.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

// failClosedAlerts are the fail-closed alarms in the outbox.
func (h *recorderHarness) failClosedAlerts() []alert.Alert {
	recent := h.srv.alerts.Recent(100)
	var out []alert.Alert
	for _, a := range recent {
		if a.Code == AlertFailClosed {
			out = append(out, a)
		}
	}
	return out
}

// TestEveryEntryPointFailsClosedTheSameWay: when the log cannot take a
// record, a decision, a reported event, an API key creation and a policy
// reload all fail the same way — an error naming the failure, a critical
// gatelog.fail_closed alarm naming the record's kind, /readyz answering
// 503 and gatelog_records_total counting the failed append — and once the
// log is back, a record of any kind makes the daemon ready again. (Before
// the one record path, events raised no alarm when signing failed, and
// admin and policy records neither alarmed nor touched readiness.)
func TestEveryEntryPointFailsClosedTheSameWay(t *testing.T) {
	h := openRecorderHarness(t, 2*time.Second)
	log := &faultyLog{Log: h.srv.log}
	h.swapRecorder(log, h.srv.signer)
	if code, body := h.call(http.MethodGet, "/readyz", ""); code != http.StatusOK {
		t.Fatalf("readyz before the fault: %d %s", code, body)
	}
	log.broken.Store(true)

	entryPoints := []struct {
		kind string
		run  func() error
	}{
		{"decision", func() error {
			code, body := h.call(http.MethodPost, "/v1/decide", `{"action":"pipeline.trigger","resource":{"name":"build"}}`)
			if code != http.StatusServiceUnavailable || !strings.Contains(body, "disk is full") || !strings.Contains(body, "denied") {
				t.Errorf("decide with a broken log: %d %s", code, body)
			}
			return nil
		}},
		{"event", func() error {
			code, body := h.call(http.MethodPost, "/v1/events", `{"type":"login","message":"alice logged in"}`)
			if code != http.StatusServiceUnavailable || !strings.Contains(body, "disk is full") {
				t.Errorf("event with a broken log: %d %s", code, body)
			}
			return nil
		}},
		{"admin", func() error {
			code, body := h.call(http.MethodPost, "/v1/apikeys", `{"name":"ci","permissions":["decide"]}`)
			if code != http.StatusServiceUnavailable || !strings.Contains(body, "disk is full") {
				t.Errorf("API key creation with a broken log: %d %s", code, body)
			}
			return nil
		}},
		{"admin", func() error {
			_, err := h.srv.ReloadPolicy(context.Background(), engine.Source{
				FS: fstest.MapFS{"decision.rego": {Data: []byte(recorderTestPolicy + "\n# v2\n")}}, Origin: "test",
			}, "test")
			if err == nil || !strings.Contains(err.Error(), "disk is full") {
				t.Errorf("policy reload with a broken log: %v", err)
			}
			return nil
		}},
	}
	for i, ep := range entryPoints {
		before := h.srv.metrics.RecordCount(ep.kind, record.StageAppend)
		_ = ep.run()
		if got := h.srv.metrics.RecordCount(ep.kind, record.StageAppend); got != before+1 {
			t.Errorf("entry point %d (%s): gatelog_records_total{outcome=append} went %v -> %v", i, ep.kind, before, got)
		}
		alarms := h.failClosedAlerts()
		if len(alarms) != i+1 {
			t.Fatalf("entry point %d (%s): %d fail-closed alarms, want %d", i, ep.kind, len(alarms), i+1)
		}
		last := alarms[len(alarms)-1]
		if last.Severity != "critical" || !strings.HasPrefix(last.Message, ep.kind+" ") || !strings.Contains(last.Message, "append failed") {
			t.Errorf("entry point %d (%s): alarm %+v", i, ep.kind, last)
		}
		if code, body := h.call(http.MethodGet, "/readyz", ""); code != http.StatusServiceUnavailable {
			t.Errorf("entry point %d (%s): readyz with a broken log: %d %s", i, ep.kind, code, body)
		}
	}
	if code, body := h.call(http.MethodGet, "/v1/apikeys", ""); !strings.Contains(body, `"name": "bootstrap"`) || strings.Contains(body, `"name": "ci"`) {
		t.Errorf("a key whose creation was not logged exists: %d %s", code, body)
	}

	log.broken.Store(false)
	if code, body := h.call(http.MethodPost, "/v1/events", `{"type":"login","message":"the log is back"}`); code != http.StatusOK || !strings.Contains(body, `"kind": "event"`) || !strings.Contains(body, `"allow": false`) {
		t.Fatalf("event once the log is back: %d %s", code, body)
	}
	if code, body := h.call(http.MethodGet, "/readyz", ""); code != http.StatusOK {
		t.Errorf("readyz once an event was logged again: %d %s", code, body)
	}
}

// TestHungSignerAnswersInTime: a signer that never returns (a KMS that
// stopped answering) is bounded by the append timeout like the log: the
// caller gets a 503 saying so, in time, and an alarm is raised — but the
// log is healthy, so the daemon stays ready.
func TestHungSignerAnswersInTime(t *testing.T) {
	h := openRecorderHarness(t, 500*time.Millisecond)
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	signer, err := receipt.NewSigner(hungSigner{pub: k.Public(), release: release})
	if err != nil {
		t.Fatal(err)
	}
	h.swapRecorder(h.srv.log, signer)
	done := make(chan struct{})
	var code int
	var body string
	go func() {
		defer close(done)
		code, body = h.call(http.MethodPost, "/v1/decide", `{"action":"pipeline.trigger","resource":{"name":"build"}}`)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("decide with a hung signer still waiting after 30s (append timeout 500ms)")
	}
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "signing did not finish") {
		t.Errorf("decide with a hung signer: %d %s", code, body)
	}
	if alarms := h.failClosedAlerts(); len(alarms) != 1 || !strings.Contains(alarms[0].Message, "sign failed") {
		t.Errorf("fail-closed alarms: %+v", alarms)
	}
	if got := h.srv.metrics.RecordCount("decision", record.StageSign); got != 1 {
		t.Errorf("gatelog_records_total{kind=decision,outcome=sign} = %v, want 1", got)
	}
	if code, body := h.call(http.MethodGet, "/readyz", ""); code != http.StatusOK {
		t.Errorf("readyz with a hung signer but a healthy log: %d %s", code, body)
	}
}

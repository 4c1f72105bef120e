package daemon_test

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/gatelog/gatelog/daemon"
	"github.com/gatelog/gatelog/daemon/api"
	"github.com/gatelog/gatelog/engine/alert"
	"github.com/gatelog/gatelog/engine/identity"
	"github.com/gatelog/gatelog/internal/logtest"
	"github.com/gatelog/gatelog/internal/poll"
	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/record/receipt"
	"github.com/gatelog/gatelog/translog"
	"github.com/gatelog/gatelog/translog/entry"
	"github.com/gatelog/gatelog/translog/index"
)

// alertPolicy allows deploys and raises an alert for production ones.
const alertPolicy = `package gatelog

default decision := {"allow": false, "reasons": ["no rule allows this action"]}

decision := {"allow": true, "reasons": ["deploys are allowed"], "alerts": [a | some a in alerts]} if {
	input.action == "deploy"
}

alerts contains {"severity": "high", "code": "prod_deploy", "message": "deploy to production"} if {
	input.resource.environment == "production"
}
`

// opsDaemon is a daemon with the operations features configured.
type opsDaemon struct {
	*testDaemon
	t                      *testing.T
	readKey, decideOnlyKey string
}

func startOps(t *testing.T, dir string, mutate func(*daemon.Config)) *opsDaemon {
	t.Helper()
	// Pre-create the keys: the bootstrap key is then not made.
	ks, err := identity.OpenKeyStore(filepath.Join(dir, daemon.APIKeysFile))
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{}
	if ks.Len() == 0 {
		for name, perms := range map[string][]string{
			"root":   {identity.PermAdmin, identity.PermDecide, identity.PermVouch, identity.PermRead},
			"reader": {identity.PermRead},
			"ci":     {identity.PermDecide},
		} {
			secret, _, err := ks.Create(name, perms, 0, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			keys[name] = secret
		}
		raw, _ := json.Marshal(keys)
		if err := os.WriteFile(filepath.Join(dir, "test-keys.json"), raw, 0o600); err != nil {
			t.Fatal(err)
		}
	} else {
		raw, err := os.ReadFile(filepath.Join(dir, "test-keys.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, &keys); err != nil {
			t.Fatal(err)
		}
	}
	cfg := daemon.Config{
		DataDir:            dir,
		Policies:           fstest.MapFS{"decision.rego": {Data: []byte(alertPolicy)}},
		CheckpointInterval: 100 * time.Millisecond,
		RateLimit:          -1,
		AlertStdout:        io.Discard,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	d := openDaemon(t, cfg)
	d.Key = keys["root"]
	return &opsDaemon{testDaemon: d, t: t, readKey: keys["reader"], decideOnlyKey: keys["ci"]}
}

func (d *opsDaemon) search(params string) api.SearchResponse {
	d.t.Helper()
	code, raw := d.GetAs("/v1/audit/search?"+params, d.readKey)
	if code != http.StatusOK {
		d.t.Fatalf("search %s: %d %s", params, code, raw)
	}
	var sr api.SearchResponse
	if err := json.Unmarshal(raw, &sr); err != nil {
		d.t.Fatal(err)
	}
	return sr
}

func TestAuditSearchOverHTTP(t *testing.T) {
	d := startOps(t, t.TempDir(), nil)
	a1 := d.Decide(allowedDeploy)
	b := d.Decide(deniedDeploy)
	a2 := d.Decide(`{"subject":{"id":"alice"},"action":"deploy","resource":{"environment":"staging"}}`)

	sr := d.search("subject=alice&action=deploy&since=7d")
	if len(sr.Results) != 2 || sr.Results[0].LogIndex != a2.LogIndex || sr.Results[1].LogIndex != a1.LogIndex {
		t.Fatalf("alice's deploys = %+v", sr.Results)
	}
	r := sr.Results[1]
	if r.UUID != a1.UUID || r.ID != a1.DecisionID || r.Outcome != "allow" || r.Resource.Environment != "production" {
		t.Errorf("row = %+v, receipt %s at %d", r, a1.UUID, a1.LogIndex)
	}
	if len(r.Alerts) != 1 || r.Alerts[0].Code != "prod_deploy" {
		t.Errorf("alerts of the production deploy = %+v", r.Alerts)
	}
	if sr.Indexed < 3 {
		t.Errorf("indexed = %d, want at least 3", sr.Indexed)
	}
	// bob's production deploy is allowed by this policy too; find it by alert.
	if got := d.search("alert=prod_deploy"); len(got.Results) != 2 || got.Results[0].LogIndex != b.LogIndex {
		t.Errorf("alert search = %+v", got.Results)
	}

	code, raw := d.GetAs("/v1/audit/counts?by=subject&kind=decision", d.readKey)
	var cr api.CountsResponse
	if code != http.StatusOK || json.Unmarshal(raw, &cr) != nil {
		t.Fatalf("counts: %d %s", code, raw)
	}
	if want := []index.Count{{Key: "alice", Total: 2, Allowed: 2}, {Key: "bob", Total: 1, Allowed: 1}}; fmt.Sprint(cr.Counts) != fmt.Sprint(want) {
		t.Errorf("counts by subject = %+v, want %+v", cr.Counts, want)
	}

	for _, tc := range []struct {
		path, key string
		want      int
	}{
		{"/v1/audit/search?subject=alice", "", http.StatusUnauthorized},
		{"/v1/audit/search?subject=alice", "glk_wrong", http.StatusUnauthorized},
		{"/v1/audit/search?subject=alice", d.decideOnlyKey, http.StatusForbidden},
		{"/v1/audit/search?subjekt=alice", d.readKey, http.StatusBadRequest},
		{"/v1/audit/search?since=last-week", d.readKey, http.StatusBadRequest},
		{"/v1/audit/search?subjekt=alice", "", http.StatusUnauthorized},
		{"/v1/audit/counts?by=password", d.readKey, http.StatusBadRequest},
	} {
		if code, raw := d.GetAs(tc.path, tc.key); code != tc.want {
			t.Errorf("GET %s: %d %s, want %d", tc.path, code, raw, tc.want)
		}
	}
}

func TestAuditIndexRebuildAndRestart(t *testing.T) {
	dir := t.TempDir()
	d := startOps(t, dir, nil)
	for i := range 5 {
		d.Decide(fmt.Sprintf(`{"subject":{"id":"u%d"},"action":"deploy","resource":{"environment":"production"}}`, i%2))
	}
	before := d.search("limit=1000")
	code, raw := d.Post("/v1/audit/rebuild", d.readKey, nil)
	if code != http.StatusForbidden {
		t.Errorf("rebuild with a read key: %d %s", code, raw)
	}
	if code, raw := d.Post("/v1/audit/rebuild", d.Key, nil); code != http.StatusOK {
		t.Fatalf("rebuild: %d %s", code, raw)
	}
	if after := d.search("limit=1000"); fmt.Sprint(after.Results) != fmt.Sprint(before.Results) {
		t.Errorf("rebuilt index differs")
	}
	d.Stop()
	// Deleting the index file: the next daemon rebuilds it from the log.
	for _, f := range []string{api.IndexFile, api.IndexFile + "-wal", api.IndexFile + "-shm"} {
		_ = os.Remove(filepath.Join(dir, f))
	}
	d = startOps(t, dir, nil)
	if after := d.search("limit=1000"); fmt.Sprint(after.Results) != fmt.Sprint(before.Results) {
		t.Errorf("index rebuilt at start differs:\n%v\n%v", after.Results, before.Results)
	}
}

// sink is a real webhook receiver that can be down (503).
type sink struct {
	srv    *httptest.Server
	down   atomic.Bool
	mu     sync.Mutex
	got    map[string]int
	secret []byte
}

func newSink(t *testing.T, secret []byte) *sink {
	s := &sink{got: map[string]int{}, secret: secret}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if s.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		if !alert.VerifySignature(s.secret, r.Header.Get(alert.HeaderTimestamp), body, r.Header.Get(alert.HeaderSignature)) {
			t.Errorf("bad webhook signature")
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var a alert.Alert
		if err := json.Unmarshal(body, &a); err != nil {
			t.Errorf("webhook body: %v", err)
		}
		s.mu.Lock()
		s.got[a.ID]++
		s.mu.Unlock()
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func alertsConfig(t *testing.T, dir, url string, secret []byte) alert.Config {
	secretFile := filepath.Join(dir, "webhook-secret")
	if err := os.WriteFile(secretFile, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := alert.ParseConfig([]byte(`{"sinks":[{"type":"webhook","name":"secops","url":"` + url + `","secret_file":"` + secretFile + `"}],"min_backoff":"10ms","max_backoff":"100ms"}`))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestAlertsSurviveSinkOutageAndRestart(t *testing.T) {
	secret := []byte("webhook-key")
	snk := newSink(t, secret)
	snk.down.Store(true)
	dir := t.TempDir()
	cfgDir := t.TempDir()
	withAlerts := func(c *daemon.Config) { c.Alerts = alertsConfig(t, cfgDir, snk.srv.URL, secret) }
	d := startOps(t, dir, withAlerts)
	var want []string
	for i := range 10 {
		rc := d.Decide(fmt.Sprintf(`{"subject":{"id":"u%d"},"action":"deploy","resource":{"environment":"production"}}`, i))
		if len(rc.Alerts) != 1 {
			t.Fatalf("receipt alerts = %+v", rc.Alerts)
		}
		want = append(want, rc.DecisionID+"-0")
	}
	d.Decide(`{"subject":{"id":"quiet"},"action":"deploy","resource":{"environment":"staging"}}`)
	d.Stop()

	// The daemon restarts while the sink is still down; then it comes up.
	d = startOps(t, dir, withAlerts)
	for i := range 5 {
		rc := d.Decide(fmt.Sprintf(`{"subject":{"id":"v%d"},"action":"deploy","resource":{"environment":"production"}}`, i))
		want = append(want, rc.DecisionID+"-0")
	}
	snk.down.Store(false)
	poll.Until(t, "every alert delivered", func() bool {
		snk.mu.Lock()
		defer snk.mu.Unlock()
		return len(snk.got) == len(want)
	})
	snk.mu.Lock()
	defer snk.mu.Unlock()
	for _, id := range want {
		if snk.got[id] != 1 {
			t.Errorf("alert %s delivered %d times", id, snk.got[id])
		}
	}
}

func TestAlertStream(t *testing.T) {
	d := startOps(t, t.TempDir(), nil)
	first := d.Decide(`{"subject":{"id":"a"},"action":"deploy","resource":{"environment":"production"}}`)
	req, _ := http.NewRequest(http.MethodGet, d.HTTP.URL+"/v1/alerts/stream?recent=10", nil)
	req.Header.Set("Authorization", "Bearer "+d.readKey)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	events := make(chan alert.Alert)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var a alert.Alert
				if json.Unmarshal([]byte(data), &a) == nil {
					events <- a
				}
			}
		}
	}()
	next := func() alert.Alert {
		select {
		case a := <-events:
			return a
		case <-ctx.Done():
			t.Fatal("no alert on the stream")
			return alert.Alert{}
		}
	}
	if a := next(); a.DecisionID != first.DecisionID || a.Code != "prod_deploy" || a.LogIndex == nil || *a.LogIndex != first.LogIndex {
		t.Errorf("recent alert = %+v", a)
	}
	second := d.Decide(`{"subject":{"id":"b"},"action":"deploy","resource":{"environment":"production"}}`)
	if a := next(); a.DecisionID != second.DecisionID || a.UUID != second.UUID || a.Subject != "b" {
		t.Errorf("live alert = %+v", a)
	}
	if code, _ := d.GetAs("/v1/alerts/stream", d.decideOnlyKey); code != http.StatusForbidden {
		t.Errorf("stream with a decide-only key: %d", code)
	}
}

func scrape(t *testing.T, d *opsDaemon) map[string]*family {
	t.Helper()
	code, raw := d.GetAs("/metrics", "")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	out := map[string]*family{}
	for name, f := range fams {
		out[name] = &family{f: f}
	}
	return out
}

func TestMetricsScrapedWithPrometheusParser(t *testing.T) {
	snk := newSink(t, []byte("k"))
	snk.down.Store(true)
	cfgDir := t.TempDir()
	d := startOps(t, t.TempDir(), func(c *daemon.Config) { c.Alerts = alertsConfig(t, cfgDir, snk.srv.URL, []byte("k")) })
	d.Decide(allowedDeploy)
	d.Decide(`{"subject":{"id":"x"},"action":"secret.read"}`)
	d.GetAs("/v1/audit/search", "glk_not-a-key")
	d.search("subject=alice")

	m := scrape(t, d)
	if v := m["gatelog_decisions_total"].value(map[string]string{"outcome": "allow", "action": "deploy", "adapter": "none"}); v != 1 {
		t.Errorf("allowed deploys = %v", v)
	}
	if v := m["gatelog_decisions_total"].value(map[string]string{"outcome": "deny", "action": "secret.read"}); v != 1 {
		t.Errorf("denied secret reads = %v", v)
	}
	for _, stage := range []string{"eval", "sign", "append"} {
		if n := m["gatelog_decide_stage_seconds"].count(map[string]string{"stage": stage}); n != 2 {
			t.Errorf("stage %s observed %d times, want 2", stage, n)
		}
	}
	if v := m["gatelog_log_size"].value(nil); v < 2 {
		t.Errorf("log size = %v", v)
	}
	// The reply does not wait for the outbox (alerts.Service.Hand): the
	// alert is queued just after it.
	poll.Until(t, "the deploy's alert is queued", func() bool {
		return scrape(t, d)["gatelog_alerts_total"].value(map[string]string{"source": "policy", "severity": "high"}) == 1
	})
	m = scrape(t, d)
	if v := m["gatelog_outbox_depth"].value(nil); v != 1 {
		t.Errorf("outbox depth = %v, want 1 (the sink is down)", v)
	}
	if v := m["gatelog_checkpoint_age_seconds"]; v == nil {
		t.Error("no checkpoint age")
	}
	if v := m["gatelog_alerts_total"].value(map[string]string{"source": "policy", "severity": "high"}); v != 1 {
		t.Errorf("alerts = %v", v)
	}
	if v := m["gatelog_audit_index_entries"].value(nil); v < 2 {
		t.Errorf("indexed = %v", v)
	}
	failures := 0.0
	for _, mt := range m["gatelog_auth_total"].f.GetMetric() {
		for _, l := range mt.GetLabel() {
			if l.GetName() == "outcome" && l.GetValue() != "ok" {
				failures += mt.GetCounter().GetValue()
			}
		}
	}
	if failures < 1 {
		t.Errorf("auth failures = %v, want at least 1", failures)
	}
	d.Server.AdapterRestarted("tekton", nil)
	if v := scrape(t, d)["gatelog_adapter_restarts_total"].value(map[string]string{"adapter": "tekton"}); v != 1 {
		t.Errorf("adapter restarts = %v", v)
	}
	snk.down.Store(false)
	poll.Until(t, "the outbox drains", func() bool { return scrape(t, d)["gatelog_outbox_depth"].value(nil) == 0 })
}

// TestMetricLabelsBounded: label values taken from requests (action,
// adapter) are capped in length and charset, so huge or odd values cannot
// grow the registry or /metrics; they are counted as "other".
func TestMetricLabelsBounded(t *testing.T) {
	d := startOps(t, t.TempDir(), nil)
	long, huge := strings.Repeat("a", 100), strings.Repeat("b", 100_000)
	for i := range 20 {
		d.Decide(fmt.Sprintf(`{"subject":{"id":"x"},"action":"%s%d","source":{"adapter":"%s%d"}}`, long, i, huge, i))
	}
	d.Decide(`{"subject":{"id":"x"},"action":"deploy\u001b[2K"}`)
	code, raw := d.GetAs("/metrics", "")
	if code != http.StatusOK {
		t.Fatalf("metrics: %d", code)
	}
	if len(raw) > 200_000 {
		t.Errorf("/metrics is %d bytes after 20 requests with 100-byte actions and 100 kB adapters", len(raw))
	}
	// /v1/decide records the caller's source.adapter as unverified, so
	// every one of these counts as adapter "none".
	m := scrape(t, d)
	if v := m["gatelog_decisions_total"].value(map[string]string{"outcome": "deny", "action": "other", "adapter": "none"}); v != 21 {
		t.Errorf("decisions with oversized or odd actions counted as other = %v, want 21", v)
	}
	d.Server.AdapterRestarted(huge, nil)
	if v := scrape(t, d)["gatelog_adapter_restarts_total"].value(map[string]string{"adapter": "other"}); v != 1 {
		t.Errorf("restarts of an adapter with a 100 kB name counted as other = %v, want 1", v)
	}
}

func TestReadyzFailsOnStaleCheckpoint(t *testing.T) {
	d := startOps(t, t.TempDir(), nil)
	d.Decide(allowedDeploy)
	if code, raw := d.GetAs("/readyz", ""); code != http.StatusOK {
		t.Fatalf("readyz: %d %s", code, raw)
	}
	d.Stop()
	stale := startOps(t, d.Dir, func(c *daemon.Config) { c.MaxCheckpointAge = time.Nanosecond })
	code, raw := stale.GetAs("/readyz", "")
	if code != http.StatusServiceUnavailable || !strings.Contains(string(raw), "checkpoint") {
		t.Errorf("readyz with a stale checkpoint: %d %s", code, raw)
	}
}

// family is a parsed metric family, looked up by label.
type family struct{ f *dto.MetricFamily }

func (f *family) find(labels map[string]string) *dto.Metric {
	if f == nil {
		return nil
	}
next:
	for _, m := range f.f.GetMetric() {
		for k, v := range labels {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		return m
	}
	return nil
}

// value is a counter's or gauge's value, -1 when absent.
func (f *family) value(labels map[string]string) float64 {
	m := f.find(labels)
	switch {
	case m == nil:
		return -1
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	default:
		return m.GetUntyped().GetValue()
	}
}

// count is a histogram's sample count.
func (f *family) count(labels map[string]string) uint64 {
	return f.find(labels).GetHistogram().GetSampleCount()
}

// TestAlertInLogButNotInOutboxIsRecovered covers a crash between the
// append and the outbox write: the decision (with its alert) is in the log,
// the outbox never heard of it. The next daemon finds it while indexing the
// log and delivers it, once.
func TestAlertInLogButNotInOutboxIsRecovered(t *testing.T) {
	snk := newSink(t, []byte("k"))
	cfgDir, dir := t.TempDir(), t.TempDir()
	withAlerts := func(c *daemon.Config) { c.Alerts = alertsConfig(t, cfgDir, snk.srv.URL, []byte("k")) }
	d := startOps(t, dir, withAlerts)
	d.Decide(`{"subject":{"id":"a"},"action":"deploy","resource":{"environment":"production"}}`)
	// Let the first alert be delivered (and marked so) before stopping:
	// delivery is at least once, so an alert in flight at shutdown may
	// rightly arrive again after the restart, which is not what this
	// test is about.
	poll.Until(t, "the first decision's alert is delivered", func() bool {
		snk.mu.Lock()
		defer snk.mu.Unlock()
		return len(snk.got) == 1
	})
	d.Stop()

	// The "crashed" decision: appended to the log by hand, no outbox write.
	ctx := context.Background()
	logKey := readPriv(t, filepath.Join(dir, daemon.LogKeyFile))
	decKey := readPriv(t, filepath.Join(dir, daemon.DecisionKeyFile))
	lg, err := translog.Open(ctx, logtest.Files(t, translog.Config{Dir: filepath.Join(dir, api.LogDir), Key: logKey, CheckpointInterval: 100 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	sv, err := signature.LoadECDSASignerVerifier(decKey, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := receipt.NewSigner(sv)
	if err != nil {
		t.Fatal(err)
	}
	rec := decision.Record{
		DecisionID: "5d1d3c4e-0000-4000-8000-000000000001",
		Request:    decision.Request{Subject: decision.Subject{ID: "mallory", Verified: true}, Action: "deploy", Resource: decision.Resource{Environment: "production"}},
		Decision:   decision.Decision{Allow: true, Reasons: []string{"deploys are allowed"}, Alerts: []decision.Alert{{Severity: "high", Code: "prod_deploy", Message: "deploy to production"}}},
		Time:       time.Now().UTC().Format(time.RFC3339Nano),
	}
	env, err := signer.Sign(rec)
	if err != nil {
		t.Fatal(err)
	}
	pem, _ := entry.PublicKeyPEM(decKey.Public())
	if _, err := lg.Append(ctx, rec.DecisionID, env, pem); err != nil {
		t.Fatal(err)
	}
	if err := lg.Close(ctx); err != nil {
		t.Fatal(err)
	}

	startOps(t, dir, withAlerts)
	poll.Until(t, "the recovered alert is delivered", func() bool {
		snk.mu.Lock()
		defer snk.mu.Unlock()
		return snk.got[rec.DecisionID+"-0"] == 1
	})
	snk.mu.Lock()
	defer snk.mu.Unlock()
	if len(snk.got) != 2 {
		t.Errorf("deliveries = %v, want the first decision's alert and the recovered one, once each", snk.got)
	}
	for id, n := range snk.got {
		if n != 1 {
			t.Errorf("alert %s delivered %d times", id, n)
		}
	}
}

// TestAlertOutboxFailureDoesNotFailTheDecision: the reply waits for the
// log only, which holds the decision's alerts; an outbox that cannot take
// an alert neither fails the decision nor loses the alert. The audit index
// keeps the entry unindexed until the outbox takes its alert, then the
// alert is delivered, once.
func TestAlertOutboxFailureDoesNotFailTheDecision(t *testing.T) {
	snk := newSink(t, []byte("k"))
	cfgDir, dir := t.TempDir(), t.TempDir()
	d := startOps(t, dir, func(c *daemon.Config) { c.Alerts = alertsConfig(t, cfgDir, snk.srv.URL, []byte("k")) })
	// A file where the outbox keeps its pending alerts: every write fails.
	pending := filepath.Join(dir, daemon.OutboxDir, "pending")
	if err := os.Rename(pending, pending+".away"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pending, nil, 0o600); err != nil {
		t.Fatal(err)
	}

	rc := d.Decide(allowedDeploy)
	if !rc.Allow || len(rc.Alerts) != 1 {
		t.Fatalf("decision with the outbox failing: allow %v, alerts %+v; want allowed with its alert", rc.Allow, rc.Alerts)
	}
	alertID := rc.DecisionID + "-0"
	// Several catch-ups fail meanwhile (checkpoints every 100 ms).
	time.Sleep(500 * time.Millisecond)
	if sr := d.search("subject=alice"); len(sr.Results) != 0 {
		t.Errorf("the entry was indexed while its alert could not be queued: %+v", sr.Results)
	}
	snk.mu.Lock()
	if n := snk.got[alertID]; n != 0 {
		t.Errorf("alert delivered %d times while the outbox could not store it", n)
	}
	snk.mu.Unlock()

	if err := os.Remove(pending); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(pending+".away", pending); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the alert is queued from the log and delivered", func() bool {
		snk.mu.Lock()
		defer snk.mu.Unlock()
		return snk.got[alertID] == 1
	})
	poll.Until(t, "the entry is indexed", func() bool { return len(d.search("subject=alice").Results) == 1 })
	snk.mu.Lock()
	defer snk.mu.Unlock()
	if len(snk.got) != 1 || snk.got[alertID] != 1 {
		t.Errorf("deliveries = %v, want %s once", snk.got, alertID)
	}
}

func readPriv(t *testing.T, path string) *ecdsa.PrivateKey {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	k, err := cryptoutils.UnmarshalPEMToPrivateKey(raw, cryptoutils.SkipPassword)
	if err != nil {
		t.Fatal(err)
	}
	return k.(*ecdsa.PrivateKey)
}

func TestDenyBurstRaisesOneAlert(t *testing.T) {
	snk := newSink(t, []byte("k"))
	cfgDir := t.TempDir()
	d := startOps(t, t.TempDir(), func(c *daemon.Config) {
		c.Alerts = alertsConfig(t, cfgDir, snk.srv.URL, []byte("k"))
		c.Alerts.DenyBurst = &alert.BurstConfig{Count: 3, Window: "1h"}
	})
	for range 5 {
		d.Decide(`{"subject":{"id":"mallory"},"action":"secret.read"}`)
	}
	for range 2 {
		d.Decide(`{"subject":{"id":"bob"},"action":"secret.read"}`)
	}
	d.search("limit=1") // the index (and so the detector) has seen every entry
	poll.Until(t, "the deny-burst alert arrives", func() bool {
		snk.mu.Lock()
		defer snk.mu.Unlock()
		return len(snk.got) > 0
	})
	snk.mu.Lock()
	defer snk.mu.Unlock()
	if len(snk.got) != 1 {
		t.Fatalf("alerts = %v, want one deny burst (mallory), none for bob", snk.got)
	}
	for id := range snk.got {
		if !strings.HasPrefix(id, "deny-burst-") {
			t.Errorf("alert %s", id)
		}
	}
}

// TestDecideOnlyCallersReadTheirOwnDecisions: GET /v1/decisions/{id}
// gives a caller that may only decide its own decisions; another caller's
// look like no decision at all. A read caller gets any.
func TestDecideOnlyCallersReadTheirOwnDecisions(t *testing.T) {
	d := startOps(t, t.TempDir(), nil)
	theirs := d.Decide(allowedDeploy) // the bootstrap key's
	code, raw := d.Post("/v1/decide", d.decideOnlyKey, []byte(`{"action":"pipeline.trigger"}`))
	if code != http.StatusOK && code != http.StatusForbidden {
		t.Fatalf("decide with the decide-only key: %d %s", code, raw)
	}
	own := decodeReceipt(t, raw)
	for _, tc := range []struct {
		id, key string
		want    int
	}{
		{own.DecisionID, d.decideOnlyKey, http.StatusOK},
		{theirs.DecisionID, d.decideOnlyKey, http.StatusNotFound},
		{theirs.DecisionID, d.readKey, http.StatusOK},
		{own.DecisionID, d.readKey, http.StatusOK},
	} {
		if code, raw := d.GetAs("/v1/decisions/"+tc.id, tc.key); code != tc.want {
			t.Errorf("GET /v1/decisions/%s: %d %s, want %d", tc.id, code, raw, tc.want)
		}
	}
}

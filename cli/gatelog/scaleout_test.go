package main_test

import (
	"bytes"
	"crypto"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/gatelog/gatelog/internal/e2e"
	"github.com/gatelog/gatelog/internal/testdb"
	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/translog/verify"
)

// TestMain stops the database servers the scale-out test started.
func TestMain(m *testing.M) {
	code := m.Run()
	testdb.Stop()
	os.Exit(code)
}

// soAppendTimeout is the daemons' --append-timeout: short, so that decides
// fail closed quickly while MariaDB hangs.
const soAppendTimeout = "2s"

// soNode is one gatelog serve process of the scale-out test, with its own
// data directory (own API keys and decision-signing key, shared log key).
type soNode struct {
	name   string
	data   string
	proc   *e2e.Daemon
	base   string
	admin  string // the bootstrap key: decide, admin, read
	read   string // a key with the read permission only
	signer crypto.PublicKey
	down   atomic.Bool // killed on purpose: failed requests are expected
}

type soAck struct {
	rc decision.Receipt
	by int // index of the node that acknowledged it
}

type scaleOut struct {
	t                *testing.T
	bin              string
	logURL, indexDSN string
	client           *http.Client
	logKey           crypto.PublicKey
	nodes            [2]*soNode

	mu          sync.Mutex
	acked       []soAck
	timedOut    int // 503 "deadline exceeded" under load on a busy machine
	failures    []string
	ackedByNode [2]int
}

// TestScaleOutTwoProcesses runs two real `gatelog serve` processes against
// one log on MariaDB and one audit index on PostgreSQL, with the same log
// key, and drives decides at both at once. Then the faults: one daemon is
// killed with SIGKILL under load (the other keeps answering, and the killed
// one is restarted); MariaDB is frozen with SIGSTOP (every decide fails
// closed with 503, never an allow) and resumed (decides succeed again); and
// MariaDB is killed with SIGKILL (503s again) and restarted on its data.
// Afterwards every receipt acknowledged by either daemon must be served by
// the other with an inclusion proof that verifies offline, no log index may
// have been handed out twice, and the audit search of either daemon must
// find every acknowledged decision.
func TestScaleOutTwoProcesses(t *testing.T) {
	_, logURL := testdb.MariaDB(t)
	indexDSN := testdb.Postgres(t)
	db := testdb.MariaDBProcess(t)

	s := &scaleOut{t: t, bin: buildGatelog(t), logURL: logURL, indexDSN: indexDSN,
		client: &http.Client{Timeout: 60 * time.Second}}
	root := t.TempDir()
	for i, name := range []string{"A", "B"} {
		s.nodes[i] = &soNode{name: name, data: filepath.Join(root, name)}
	}
	a, b := s.nodes[0], s.nodes[1]

	// A first; B gets A's log key before it starts (docs/operators.md).
	s.start(a)
	for _, f := range []string{"log.key", "log.pub"} {
		raw := mustRead(t, filepath.Join(a.data, "keys", f))
		if err := os.MkdirAll(filepath.Join(b.data, "keys"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(b.data, "keys", f), raw, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s.start(b)
	var err error
	if s.logKey, err = cryptoutils.UnmarshalPEMToPublicKey(mustRead(t, filepath.Join(a.data, "keys", "log.pub"))); err != nil {
		t.Fatal(err)
	}
	for _, n := range s.nodes {
		n.admin = strings.TrimSpace(string(mustRead(t, filepath.Join(n.data, "bootstrap-api-key"))))
		if n.signer, err = cryptoutils.UnmarshalPEMToPublicKey(mustRead(t, filepath.Join(n.data, "keys", "decision.pub"))); err != nil {
			t.Fatal(err)
		}
		n.read = s.createReadKey(n)
	}

	// Both at once.
	s.load(3*time.Second, nil)
	s.checkFailures("concurrent load at both daemons")

	// Fault (a): kill -9 A under load; B keeps answering.
	var bBefore int
	s.load(4*time.Second, func() {
		time.Sleep(1500 * time.Millisecond)
		a.down.Store(true)
		a.proc.Kill(s.t)
		s.mu.Lock()
		bBefore = s.ackedByNode[1]
		s.mu.Unlock()
	})
	s.checkFailures("load while A was killed")
	s.mu.Lock()
	bWhileADown := s.ackedByNode[1] - bBefore
	s.mu.Unlock()
	if bWhileADown == 0 {
		t.Fatal("B acknowledged nothing while A was down")
	}
	s.start(a) // same data directory, a new port
	a.down.Store(false)

	// Fault (b): MariaDB hangs. Every decide fails closed, never an allow.
	if err := db.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP MariaDB: %v", err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			if err := db.Signal(syscall.SIGCONT); err != nil {
				t.Errorf("SIGCONT MariaDB: %v", err)
			}
		}
	}
	t.Cleanup(resume)
	outage503, slowest := s.decideWhileDown()
	resume()
	s.checkFailures("decides while MariaDB was stopped")
	recoveredAfter := s.untilRecovered()
	s.load(2*time.Second, nil)
	s.checkFailures("load after MariaDB came back")

	// Fault (c): MariaDB crashes (kill -9) and restarts on the same data
	// and port; meanwhile every decide fails closed.
	testdb.CrashMariaDB(t)
	crash503, crashSlowest := s.decideWhileDown()
	s.checkFailures("decides while MariaDB was down after kill -9")
	testdb.RestartMariaDB(t)
	restartedAfter := s.untilRecovered()
	s.load(2*time.Second, nil)
	s.checkFailures("load after MariaDB restarted")

	found, lost := s.finalCheck()
	s.mu.Lock()
	t.Logf("scale-out: acknowledged=%d (A %d, B %d; B alone while A was down %d) found=%d lost=%d; "+
		"MariaDB stopped: %d decides answered 503, none allowed, slowest %v; both succeed again %v after resuming; "+
		"MariaDB killed: %d decides answered 503, none allowed, slowest %v; both succeed again %v after its restart; timed-out 503s under load=%d",
		len(s.acked), s.ackedByNode[0], s.ackedByNode[1], bWhileADown, found, lost,
		outage503, slowest.Round(time.Millisecond), recoveredAfter.Round(time.Millisecond),
		crash503, crashSlowest.Round(time.Millisecond), restartedAfter.Round(time.Millisecond), s.timedOut)
	s.mu.Unlock()
	if lost != 0 {
		t.Fatalf("lost %d acknowledged decisions", lost)
	}
	for _, n := range s.nodes {
		n.proc.Stop(s.t)
	}
}

// start starts (or restarts) n's daemon and waits until it is ready.
func (s *scaleOut) start(n *soNode) {
	s.t.Helper()
	p := e2e.Launch(s.t, s.bin, e2e.Options{
		Data: n.data,
		Args: []string{"--checkpoint-interval", "200ms", "--rate-limit", "-1", "--append-timeout", soAppendTimeout},
		// The DSNs by environment, as an operator keeps them out of ps.
		Env: []string{"GATELOG_LOG=" + s.logURL, "GATELOG_INDEX=" + s.indexDSN},
	})
	s.t.Cleanup(func() {
		if s.t.Failed() {
			s.t.Logf("daemon %s log (tail):\n%s", n.name, tail(p.Log(), 3000))
		}
	})
	p.WaitReady(s.t)
	n.proc, n.base = p, p.URL
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// call sends one request with key and returns the status and body; err
// means no complete answer.
func (s *scaleOut) call(method, url, key string, body []byte) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, err
}

func (s *scaleOut) createReadKey(n *soNode) string {
	s.t.Helper()
	body, _ := json.Marshal(map[string]any{"name": "auditor", "permissions": []string{"read"}})
	code, raw, err := s.call(http.MethodPost, n.base+"/v1/apikeys", n.admin, body)
	if err != nil || code/100 != 2 {
		s.t.Fatalf("create read key on %s: %d %v %s", n.name, code, err, raw)
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		s.t.Fatal(err)
	}
	for _, k := range []string{"secret", "key", "api_key"} {
		if v, ok := out[k].(string); ok && v != "" {
			return v
		}
	}
	s.t.Fatalf("create read key on %s: no secret in %s", n.name, raw)
	return ""
}

func (s *scaleOut) fail(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures = append(s.failures, fmt.Sprintf(format, args...))
}

func (s *scaleOut) checkFailures(phase string) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.failures) > 0 {
		s.t.Fatalf("%s: %d unexpected answers, first: %s", phase, len(s.failures), s.failures[0])
	}
}

// decide posts one request to n; ok means a receipt was acknowledged.
func (s *scaleOut) decide(i int, input []byte) (rc decision.Receipt, code int, msg string, err error) {
	n := s.nodes[i]
	code, raw, err := s.call(http.MethodPost, n.base+"/v1/decide", n.admin, input)
	if err != nil || code != http.StatusOK {
		return rc, code, string(raw), err
	}
	if err := json.Unmarshal(raw, &rc); err != nil {
		return rc, 0, "", fmt.Errorf("200 with a body that is not a receipt: %v", err)
	}
	return rc, code, "", nil
}

func (s *scaleOut) ack(i int, rc decision.Receipt) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.acked = append(s.acked, soAck{rc: rc, by: i})
	s.ackedByNode[i]++
}

// load runs two workers per daemon for dur; during runs alongside (and may
// kill a daemon, after marking it down).
func (s *scaleOut) load(dur time.Duration, during func()) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range s.nodes {
		for w := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := 0; ; k++ {
					select {
					case <-stop:
						return
					default:
					}
					rc, code, msg, err := s.decide(i, crashInputs[(w+k)%len(crashInputs)])
					switch {
					case err != nil && s.nodes[i].down.Load():
						time.Sleep(20 * time.Millisecond) // killed: nothing acknowledged
					case err != nil:
						s.fail("decide at %s: %v", s.nodes[i].name, err)
						time.Sleep(20 * time.Millisecond)
					case code == http.StatusOK:
						s.ack(i, rc)
					case code == http.StatusServiceUnavailable && strings.Contains(msg, "deadline exceeded"):
						s.mu.Lock()
						s.timedOut++
						s.mu.Unlock()
					default:
						s.fail("decide at %s answered %d: %s", s.nodes[i].name, code, msg)
					}
				}
			}()
		}
	}
	start := time.Now()
	if during != nil {
		during()
	}
	time.Sleep(dur - time.Since(start))
	close(stop)
	wg.Wait()
}

// decideWhileDown sends decides at both daemons while MariaDB is stopped:
// every one must fail closed with 503 (no receipt, no allow). A lookup of
// a decision at each must get an answer (200 or 503), not hang.
func (s *scaleOut) decideWhileDown() (n503 int, slowest time.Duration) {
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for i := range s.nodes {
		for k := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				began := time.Now()
				// deploy-prod.json alone would be allowed: the answer must
				// still not be one.
				_, code, msg, err := s.decide(i, crashInputs[k%2*2])
				took := time.Since(began)
				mu.Lock()
				defer mu.Unlock()
				slowest = max(slowest, took)
				switch {
				case err != nil:
					s.fail("decide at %s while MariaDB was stopped: no answer: %v", s.nodes[i].name, err)
				case code == http.StatusOK:
					s.fail("decide at %s while MariaDB was stopped answered 200: an unlogged decision", s.nodes[i].name)
				case code != http.StatusServiceUnavailable:
					s.fail("decide at %s while MariaDB was stopped answered %d, want 503: %s", s.nodes[i].name, code, msg)
				case strings.Contains(msg, `"allow":true`):
					s.fail("decide at %s while MariaDB was stopped: a 503 that allows: %s", s.nodes[i].name, msg)
				default:
					n503++
				}
			}()
		}
	}
	// Reads answer too, from the log's cache or with 503, rather than hang.
	s.mu.Lock()
	acked := append([]soAck(nil), s.acked...)
	s.mu.Unlock()
	for i, n := range s.nodes {
		for k := len(acked) - 1; k >= 0; k-- {
			if acked[k].by == i {
				continue
			}
			id := acked[k].rc.DecisionID
			wg.Add(1)
			go func() {
				defer wg.Done()
				code, raw, err := s.call(http.MethodGet, n.base+"/v1/decisions/"+id, n.read, nil)
				switch {
				case err != nil:
					s.fail("GET %s/v1/decisions/%s while MariaDB was down: no answer: %v", n.name, id, err)
				case code != http.StatusOK && code != http.StatusServiceUnavailable:
					s.fail("GET %s/v1/decisions/%s while MariaDB was down: %d: %s", n.name, id, code, raw)
				}
			}()
			break
		}
	}
	wg.Wait()
	return n503, slowest
}

// untilRecovered decides at both daemons until each acknowledges one again.
func (s *scaleOut) untilRecovered() time.Duration {
	s.t.Helper()
	began := time.Now()
	deadline := began.Add(60 * time.Second)
	for i := range s.nodes {
		for {
			rc, code, msg, err := s.decide(i, crashInputs[0])
			if err == nil && code == http.StatusOK {
				s.ack(i, rc)
				break
			}
			if time.Now().After(deadline) {
				s.t.Fatalf("%s did not recover after MariaDB came back: %d %v %s", s.nodes[i].name, code, err, msg)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return time.Since(began)
}

// fetch gets an acknowledged decision from node i (not the one that
// acknowledged it) and verifies it with that node's proof and checkpoint.
func (s *scaleOut) fetch(i int, want soAck) error {
	n := s.nodes[i]
	code, raw, err := s.call(http.MethodGet, n.base+"/v1/decisions/"+want.rc.DecisionID, n.read, nil)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("GET %s/v1/decisions/%s (acknowledged by %s at log index %d): %d: %s",
			n.name, want.rc.DecisionID, s.nodes[want.by].name, want.rc.LogIndex, code, raw)
	}
	var got decision.Receipt
	if err := json.Unmarshal(raw, &got); err != nil {
		return err
	}
	if got.InclusionProof == nil {
		return fmt.Errorf("decision %s from %s: no inclusion proof", want.rc.DecisionID, n.name)
	}
	if _, err := verify.Receipt(got, s.logKey, s.nodes[want.by].signer); err != nil {
		return fmt.Errorf("decision %s as served by %s: %v", want.rc.DecisionID, n.name, err)
	}
	if got.LogIndex != want.rc.LogIndex || got.UUID != want.rc.UUID || got.Allow != want.rc.Allow || !bytes.Equal(got.Envelope, want.rc.Envelope) {
		return fmt.Errorf("decision %s: %s serves index %d uuid %s allow %v, %s acknowledged index %d uuid %s allow %v",
			want.rc.DecisionID, n.name, got.LogIndex, got.UUID, got.Allow, s.nodes[want.by].name, want.rc.LogIndex, want.rc.UUID, want.rc.Allow)
	}
	// The receipt as the client got it, with the other daemon's proof.
	rc := want.rc
	rc.InclusionProof = got.InclusionProof
	if _, err := verify.Receipt(rc, s.logKey, s.nodes[want.by].signer); err != nil {
		return fmt.Errorf("receipt %s from %s against the proof of %s: %v", want.rc.DecisionID, s.nodes[want.by].name, n.name, err)
	}
	return nil
}

// finalCheck checks every acknowledged receipt at the other daemon, the
// log indexes, and the audit search of both daemons.
func (s *scaleOut) finalCheck() (found, lost int) {
	s.t.Helper()
	s.mu.Lock()
	acked := append([]soAck(nil), s.acked...)
	s.mu.Unlock()
	if len(acked) == 0 {
		s.t.Fatal("nothing was acknowledged; the test proved nothing")
	}
	byIndex := map[int64]string{}
	for _, a := range acked {
		if prev, dup := byIndex[a.rc.LogIndex]; dup {
			s.t.Errorf("log index %d assigned twice: decisions %s and %s", a.rc.LogIndex, prev, a.rc.DecisionID)
		}
		byIndex[a.rc.LogIndex] = a.rc.DecisionID
	}

	var (
		mu   sync.Mutex
		errs []string
		wg   sync.WaitGroup
		next = make(chan soAck)
	)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for a := range next {
				// The proof may need the next checkpoint: retry a while.
				var err error
				for try := 0; try < 50; try++ {
					if err = s.fetch(1-a.by, a); err == nil {
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
				mu.Lock()
				if err != nil {
					errs = append(errs, err.Error())
				} else {
					found++
				}
				mu.Unlock()
			}
		}()
	}
	for _, a := range acked {
		next <- a
	}
	close(next)
	wg.Wait()
	for i, e := range errs {
		if i == 10 {
			s.t.Errorf("... and %d more", len(errs)-10)
			break
		}
		s.t.Error(e)
	}

	// The audit index follows the log: poll until both daemons' searches
	// find every acknowledged decision.
	for _, n := range s.nodes {
		var missing []string
		deadline := time.Now().Add(60 * time.Second)
		for {
			ids, err := s.searchAll(n)
			missing = missing[:0]
			if err == nil {
				for _, a := range acked {
					if !ids[a.rc.DecisionID] {
						missing = append(missing, a.rc.DecisionID)
					}
				}
				if len(missing) == 0 {
					break
				}
			}
			if time.Now().After(deadline) {
				s.t.Errorf("audit search on %s: %d of %d acknowledged decisions missing (err %v), e.g. %v",
					n.name, len(missing), len(acked), err, missing[:min(3, len(missing))])
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	return found, len(acked) - found
}

// searchAll pages through the decisions in n's audit search.
func (s *scaleOut) searchAll(n *soNode) (map[string]bool, error) {
	ids := map[string]bool{}
	cursor := ""
	for {
		q := url.Values{"kind": {"decision"}, "limit": {"1000"}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		code, raw, err := s.call(http.MethodGet, n.base+"/v1/audit/search?"+q.Encode(), n.read, nil)
		if err != nil {
			return nil, err
		}
		if code != http.StatusOK {
			return nil, fmt.Errorf("audit search on %s: %d: %s", n.name, code, raw)
		}
		var page struct {
			Results []struct {
				ID string `json:"id"`
			} `json:"results"`
			NextCursor string `json:"next_cursor"`
		}
		if err := json.Unmarshal(raw, &page); err != nil {
			return nil, err
		}
		for _, r := range page.Results {
			ids[r.ID] = true
		}
		if page.NextCursor == "" {
			return ids, nil
		}
		cursor = page.NextCursor
	}
}

package main_test

import (
	"bytes"
	"crypto"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/gatelog/gatelog/internal/e2e"
	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/translog/rekorapi"
	"github.com/gatelog/gatelog/translog/verify"
)

// crashCycles is how many kill -9 cycles TestCrashRecovery runs: 20 in
// make test, GATELOG_SOAK_CYCLES (make soak) for the long form.
func crashCycles(t *testing.T) int { return envCount(t, "GATELOG_SOAK_CYCLES", 20) }

// envCount is the positive integer in the environment variable name, def
// when it is unset.
func envCount(t *testing.T, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 1 {
		t.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return v
}

// envSeed is the random seed in the environment variable name, or a new
// one from the clock; the drills print it so a failure can be rerun.
func envSeed(t *testing.T, name string) uint64 {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return uint64(time.Now().UnixNano())
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, s, err)
	}
	return v
}

// TestCrashRecovery runs the real daemon on one data directory, drives
// concurrent decide calls at it and kills it with SIGKILL at random
// moments (now and then while it is still starting and recovering), then
// restarts it, cycle after cycle. Afterwards every receipt a client got
// (HTTP 200) must be served again by GET /v1/decisions/{id} at the same
// log index with an inclusion proof that verifies offline with the keys on
// disk; no checkpoint ever seen may shrink the tree, and every one of them
// must be consistent with the final checkpoint.
//
// The random delays come from a seed printed at the start; rerun a failure
// with GATELOG_CRASH_SEED=<seed> (timing on a busy machine still varies).
func TestCrashRecovery(t *testing.T) {
	cycles := crashCycles(t)
	seed := envSeed(t, "GATELOG_CRASH_SEED")
	t.Logf("crash test: %d cycles, seed %d (rerun with GATELOG_CRASH_SEED=%d)", cycles, seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0x9a7e10c))

	bin := buildGatelog(t)
	data := filepath.Join(t.TempDir(), "data")
	h := &crashHarness{t: t, bin: bin, data: data, seen: map[string]bool{}}
	h.client = &http.Client{Timeout: 60 * time.Second}

	startupKills := 0
	for cycle := range cycles {
		d := h.spawn()
		// Now and then kill it before it is ready: during key loading, the
		// index catch-up, Tessera's initialisation. Never on the first
		// start, which creates the keys and the bootstrap API key.
		if cycle > 0 && rng.IntN(5) == 0 {
			time.Sleep(time.Duration(rng.IntN(200)) * time.Millisecond)
			d.Kill(h.t)
			startupKills++
			continue
		}
		d.WaitReady(h.t)
		if cycle == 0 {
			h.loadKeys()
		}
		// The last decisions acknowledged before the previous kill are the
		// ones most likely to lack their index records: look them up first,
		// before any new append can paper over a missing record.
		h.checkRecent(d, 8)
		h.load(d, 4, time.Duration(50+rng.IntN(700))*time.Millisecond, rng.IntN(3) == 0)
	}

	// The final start: everything acknowledged must be there.
	d := h.spawn()
	d.WaitReady(h.t)
	final := h.finalCheck(d)
	t.Logf("cycles=%d (%d killed during start-up) acknowledged=%d found=%d lost=%d checkpoints=%d final tree size=%d timed-out 503s=%d",
		cycles, startupKills, len(h.acked), final.found, len(h.acked)-final.found, len(h.cps), final.size, h.unavailable)
	if final.found != len(h.acked) {
		t.Fatalf("lost %d of %d acknowledged decisions", len(h.acked)-final.found, len(h.acked))
	}
	if len(h.acked) == 0 {
		t.Fatal("no decision was acknowledged in any cycle; the test proved nothing")
	}
	d.Stop(h.t)
}

type crashHarness struct {
	t         *testing.T
	bin, data string
	apiKey    string
	client    *http.Client
	logKey    crypto.PublicKey
	signerKey crypto.PublicKey

	mu       sync.Mutex
	acked    []decision.Receipt
	lastAck  []decision.Receipt // acknowledged in the latest load phase
	cps      [][]byte           // every distinct checkpoint seen, in order
	seen     map[string]bool
	maxSize  uint64
	maxCP    []byte
	failures []string
	// unavailable counts 503s from appends that timed out.
	unavailable int
}

// spawn starts gatelog serve on the harness's data directory without
// waiting for it (e2e.Launch); it is killed at the end of the test.
func (h *crashHarness) spawn() *e2e.Daemon {
	h.t.Helper()
	return e2e.Launch(h.t, h.bin, e2e.Options{Data: h.data, Args: []string{"--rate-limit", "-1"}})
}

func (h *crashHarness) loadKeys() {
	h.t.Helper()
	h.apiKey = strings.TrimSpace(string(mustRead(h.t, filepath.Join(h.data, "bootstrap-api-key"))))
	var err error
	if h.logKey, err = cryptoutils.UnmarshalPEMToPublicKey(mustRead(h.t, filepath.Join(h.data, "keys", "log.pub"))); err != nil {
		h.t.Fatal(err)
	}
	if h.signerKey, err = cryptoutils.UnmarshalPEMToPublicKey(mustRead(h.t, filepath.Join(h.data, "keys", "decision.pub"))); err != nil {
		h.t.Fatal(err)
	}
}

var crashInputs = func() [][]byte {
	var out [][]byte
	for _, name := range []string{"deploy-prod.json", "deploy-prod-denied.json", "pipeline-trigger.json"} {
		raw, err := os.ReadFile(filepath.Join("..", "..", "examples", "requests", name))
		if err != nil {
			panic(err)
		}
		out = append(out, raw)
	}
	return out
}()

// load runs workers deciding as fast as they can for dur, then kills the
// daemon mid-flight. A checkpoint poller keeps every checkpoint it sees.
// With waitProofs, some calls ask for ?wait=checkpoint.
func (h *crashHarness) load(d *e2e.Daemon, workers int, dur time.Duration, waitProofs bool) {
	h.t.Helper()
	base := "http://" + d.Addr
	stop := make(chan struct{})
	var wg sync.WaitGroup
	h.mu.Lock()
	h.lastAck = nil
	h.mu.Unlock()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				url := base + "/v1/decide"
				if waitProofs && i%3 == 0 {
					url += "?wait=checkpoint"
				}
				rc, status, msg, err := h.decide(url, crashInputs[(w+i)%len(crashInputs)])
				switch {
				case err != nil:
					// Expected once the daemon is killed: nothing was acknowledged.
					select {
					case <-stop:
						return
					default:
						time.Sleep(5 * time.Millisecond)
					}
				case status == http.StatusOK:
					h.ack(rc)
				case status == http.StatusServiceUnavailable && strings.Contains(msg, "deadline exceeded"):
					// Fail closed because the append outlasted its timeout on
					// a busy machine: allowed, nothing acknowledged.
					h.mu.Lock()
					h.unavailable++
					h.mu.Unlock()
				case status == http.StatusServiceUnavailable:
					// Any other 503 means a healthy daemon could not log.
					h.fail("decide answered 503 while running: %s", msg)
				default:
					h.fail("decide answered %d: %s", status, msg)
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			h.pollCheckpoint(base)
			time.Sleep(10 * time.Millisecond)
		}
	}()
	time.Sleep(dur)
	d.Kill(h.t)
	close(stop)
	wg.Wait()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.failures) > 0 {
		h.t.Fatalf("%d unexpected answers, first: %s", len(h.failures), h.failures[0])
	}
}

func (h *crashHarness) fail(format string, args ...any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.failures = append(h.failures, fmt.Sprintf(format, args...))
}

// decide posts one request. err != nil means the client got no complete
// answer (the daemon died first), so nothing was acknowledged.
func (h *crashHarness) decide(url string, body []byte) (decision.Receipt, int, string, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return decision.Receipt{}, 0, "", err
	}
	req.Header.Set("Authorization", "Bearer "+h.apiKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.client.Do(req)
	if err != nil {
		return decision.Receipt{}, 0, "", err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return decision.Receipt{}, 0, "", err
	}
	if resp.StatusCode != http.StatusOK {
		return decision.Receipt{}, resp.StatusCode, string(raw), nil
	}
	var rc decision.Receipt
	if err := json.Unmarshal(raw, &rc); err != nil {
		return decision.Receipt{}, 0, "", fmt.Errorf("200 with a body that is not a receipt: %v", err)
	}
	return rc, resp.StatusCode, "", nil
}

func (h *crashHarness) ack(rc decision.Receipt) {
	if rc.InclusionProof != nil {
		// Asked for with ?wait=checkpoint: it must verify right away, and
		// its checkpoint counts as one seen.
		if _, err := verify.Receipt(rc, h.logKey, h.signerKey); err != nil {
			h.fail("fresh receipt %s with proof does not verify: %v", rc.DecisionID, err)
		}
		h.observe([]byte(rc.InclusionProof.Checkpoint))
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.acked = append(h.acked, rc)
	h.lastAck = append(h.lastAck, rc)
}

func (h *crashHarness) pollCheckpoint(base string) {
	if raw, err := h.getOK(base + "/checkpoint"); err == nil {
		h.observe(raw)
	}
}

// getOK GETs url and returns the body of a 200 answer; any other status
// is an error naming it.
func (h *crashHarness) getOK(url string) ([]byte, error) {
	resp, err := h.client.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", strings.TrimPrefix(url, "http://"), resp.Status, raw)
	}
	return raw, nil
}

// observe keeps a checkpoint, which must verify with the log key and must
// not be smaller than any seen before (across restarts too).
func (h *crashHarness) observe(raw []byte) {
	cp, err := verify.Checkpoint(raw, h.logKey)
	if err != nil {
		h.fail("checkpoint does not verify: %v\n%s", err, raw)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.seen[string(raw)] {
		return
	}
	h.seen[string(raw)] = true
	h.cps = append(h.cps, raw)
	if cp.Size < h.maxSize {
		h.failures = append(h.failures, fmt.Sprintf("tree shrank: checkpoint of size %d after one of size %d:\n%s\nafter\n%s", cp.Size, h.maxSize, raw, h.maxCP))
		return
	}
	h.maxSize, h.maxCP = cp.Size, raw
}

// fetch gets decision id from the daemon and checks it against the
// receipt the client got when it was decided.
func (h *crashHarness) fetch(base string, want decision.Receipt) error {
	req, _ := http.NewRequest(http.MethodGet, base+"/v1/decisions/"+want.DecisionID, nil)
	req.Header.Set("Authorization", "Bearer "+h.apiKey)
	resp, err := h.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /v1/decisions/%s (acknowledged at log index %d): %s: %s", want.DecisionID, want.LogIndex, resp.Status, raw)
	}
	var got decision.Receipt
	if err := json.Unmarshal(raw, &got); err != nil {
		return err
	}
	if _, err := verify.Receipt(got, h.logKey, h.signerKey); err != nil {
		return fmt.Errorf("decision %s: %v", want.DecisionID, err)
	}
	if got.LogIndex != want.LogIndex || got.UUID != want.UUID || got.Allow != want.Allow || got.IntegratedTime != want.IntegratedTime || !bytes.Equal(got.Envelope, want.Envelope) {
		return fmt.Errorf("decision %s: served as index %d uuid %s allow %v time %d, acknowledged as index %d uuid %s allow %v time %d",
			want.DecisionID, got.LogIndex, got.UUID, got.Allow, got.IntegratedTime, want.LogIndex, want.UUID, want.Allow, want.IntegratedTime)
	}
	// The SET the client got first must still verify against the served body.
	body, err := h.entryBody(base, got.UUID)
	if err != nil {
		return err
	}
	if err := verify.SET(want.SignedEntryTimestamp, body, want.IntegratedTime, want.LogID, want.LogIndex, h.logKey); err != nil {
		return fmt.Errorf("decision %s: the acknowledged SET: %v", want.DecisionID, err)
	}
	return nil
}

// entryBody is the logged entry body, from the Rekor API.
func (h *crashHarness) entryBody(base, uuid string) ([]byte, error) {
	raw, err := h.getOK(base + "/api/v1/log/entries/" + uuid)
	if err != nil {
		return nil, err
	}
	var m map[string]rekorapi.LogEntryAnon
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	e, ok := m[uuid]
	if !ok {
		return nil, fmt.Errorf("entry %s not in the answer", uuid)
	}
	return base64.StdEncoding.DecodeString(e.Body)
}

// checkRecent looks up the last n decisions acknowledged before the last
// kill, right after the restart.
func (h *crashHarness) checkRecent(d *e2e.Daemon, n int) {
	h.t.Helper()
	h.mu.Lock()
	recent := h.lastAck
	h.mu.Unlock()
	if len(recent) > n {
		recent = recent[len(recent)-n:]
	}
	for _, rc := range recent {
		if err := h.fetch("http://"+d.Addr, rc); err != nil {
			h.t.Fatalf("after restart: %v", err)
		}
	}
}

type finalResult struct {
	found int
	size  uint64
}

// finalCheck waits for a checkpoint that covers every acknowledged entry,
// fetches and verifies every acknowledged decision, and proves every
// checkpoint seen consistent with the final one.
func (h *crashHarness) finalCheck(d *e2e.Daemon) finalResult {
	h.t.Helper()
	base := "http://" + d.Addr
	var maxIndex int64 = -1
	indexes := map[int64]string{}
	for _, rc := range h.acked {
		if prev, dup := indexes[rc.LogIndex]; dup {
			h.t.Errorf("log index %d acknowledged twice: decisions %s and %s", rc.LogIndex, prev, rc.DecisionID)
		}
		indexes[rc.LogIndex] = rc.DecisionID
		maxIndex = max(maxIndex, rc.LogIndex)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		h.pollCheckpoint(base)
		h.mu.Lock()
		size := h.maxSize
		h.mu.Unlock()
		if int64(size) > maxIndex {
			break
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("no checkpoint covers log index %d; largest seen %d", maxIndex, size)
		}
		time.Sleep(50 * time.Millisecond)
	}

	var (
		mu    sync.Mutex
		found int
		errs  []string
		wg    sync.WaitGroup
		next  = make(chan decision.Receipt)
	)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for rc := range next {
				err := h.fetch(base, rc)
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
	for _, rc := range h.acked {
		next <- rc
	}
	close(next)
	wg.Wait()
	for i, e := range errs {
		if i == 10 {
			h.t.Errorf("... and %d more", len(errs)-10)
			break
		}
		h.t.Error(e)
	}

	// Every checkpoint ever seen is a prefix of the final tree.
	h.pollCheckpoint(base)
	h.mu.Lock()
	finalCP, cps := h.maxCP, append([][]byte(nil), h.cps...)
	failures := h.failures
	h.mu.Unlock()
	for _, f := range failures {
		h.t.Error(f)
	}
	final, err := verify.Checkpoint(finalCP, h.logKey)
	if err != nil {
		h.t.Fatal(err)
	}
	for _, raw := range cps {
		cp, err := verify.Checkpoint(raw, h.logKey)
		if err != nil {
			h.t.Fatal(err)
		}
		var hashes [][]byte
		if cp.Size > 0 && cp.Size < final.Size {
			if hashes, err = h.consistencyProof(base, cp.Size, final.Size); err != nil {
				h.t.Fatal(err)
			}
		}
		if cp.Size == 0 {
			continue // the empty tree is a prefix of every tree
		}
		if err := verify.Consistency(raw, finalCP, h.logKey, hashes); err != nil {
			h.t.Errorf("checkpoint of size %d is not consistent with the final one of size %d: %v\n%s", cp.Size, final.Size, err, raw)
		}
	}
	return finalResult{found: found, size: final.Size}
}

func (h *crashHarness) consistencyProof(base string, from, to uint64) ([][]byte, error) {
	raw, err := h.getOK(fmt.Sprintf("%s/api/v1/log/proof?firstSize=%d&lastSize=%d", base, from, to))
	if err != nil {
		return nil, fmt.Errorf("consistency proof %d..%d: %w", from, to, err)
	}
	var p rekorapi.ConsistencyProof
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, err
	}
	hashes := make([][]byte, len(p.Hashes))
	for i, s := range p.Hashes {
		if hashes[i], err = hex.DecodeString(s); err != nil {
			return nil, err
		}
	}
	return hashes, nil
}

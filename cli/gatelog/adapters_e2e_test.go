package main_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatelog/gatelog/record/decision"
)

// childPIDs lists the processes whose parent is pid.
func childPIDs(t *testing.T, pid int) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces, so cut at the last ')'.
		rest := string(stat[bytes.LastIndexByte(stat, ')')+2:])
		fields := strings.Fields(rest)
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			out = append(out, n)
		}
	}
	return out
}

type admissionResponse struct {
	Response struct {
		UID              string            `json:"uid"`
		Allowed          bool              `json:"allowed"`
		AuditAnnotations map[string]string `json:"auditAnnotations"`
		Status           *struct {
			Message string `json:"message"`
		} `json:"status"`
	} `json:"response"`
}

// TestTektonAdapterThroughTheDaemon: the daemon with the built-in Tekton
// adapter answers a captured AdmissionReview natively, logs the decision,
// fails closed while the adapter process is dead and brings it back.
func TestTektonAdapterThroughTheDaemon(t *testing.T) {
	bin := buildGatelog(t)
	data := filepath.Join(t.TempDir(), "data")
	d := startServe(t, bin, data, "--adapter", "tekton")
	key, err := os.ReadFile(filepath.Join(data, "bootstrap-api-key"))
	if err != nil {
		t.Fatal(err)
	}
	review, err := os.ReadFile(filepath.Join("..", "..", "plugins", "tekton", "testdata", "pipelinerun-git-resolver.payload.json"))
	if err != nil {
		t.Fatal(err)
	}
	post := func() (int, admissionResponse, string) {
		req, _ := http.NewRequest(http.MethodPost, "http://"+d.Addr+"/v1/adapters/tekton", bytes.NewReader(review))
		req.Header.Set("Content-Type", "application/json")
		// The bootstrap key stands in for the API server's mTLS identity:
		// both may vouch for the AdmissionReview's userInfo.
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(key)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var ar admissionResponse
		_ = json.Unmarshal(raw, &ar)
		return resp.StatusCode, ar, string(raw)
	}

	code, ar, raw := post()
	if code != 200 || !ar.Response.Allowed || ar.Response.UID == "" {
		t.Fatalf("admission: %d %s\n%s", code, raw, d.Log())
	}
	id := ar.Response.AuditAnnotations["decision-id"]
	if id == "" {
		t.Fatalf("no decision id in the admission response: %s", raw)
	}
	// The decision is in the log, with the adapter as its source and the
	// API server's user as the vouched subject.
	req, _ := http.NewRequest(http.MethodGet, "http://"+d.Addr+"/v1/decisions/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(key)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var rc decision.Receipt
	err = json.NewDecoder(resp.Body).Decode(&rc)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || rc.InclusionProof == nil {
		t.Fatalf("decision %s not retrievable with a proof: %d %v", id, resp.StatusCode, err)
	}
	out := filepath.Join(t.TempDir(), "receipt.json")
	b, _ := json.Marshal(rc)
	_ = os.WriteFile(out, b, 0o644)
	if code, text := run(t, bin, nil, "verify", "--receipt", out, "--log-key", filepath.Join(data, "keys/log.pub"), "--signer-key", filepath.Join(data, "keys/decision.pub")); code != 0 || !strings.Contains(text, "pipeline.trigger") {
		t.Fatalf("verify: %d %s", code, text)
	}

	// Kill the adapter process: the next request fails closed...
	kids := childPIDs(t, d.PID())
	if len(kids) != 1 {
		t.Fatalf("want one adapter process under the daemon, got %v", kids)
	}
	if err := syscall.Kill(kids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	sawDenied := false
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, ar, raw = post()
		if code == 200 && ar.Response.Allowed {
			if !sawDenied {
				// The restart beat us: it must be a new process.
				if now := childPIDs(t, d.PID()); len(now) != 1 || now[0] == kids[0] {
					t.Fatalf("allowed, but the adapter was not restarted: %v", now)
				}
			}
			break
		}
		if code == 200 && !ar.Response.Allowed || code >= 500 {
			sawDenied = true // native fail-closed answer while it is down
		} else {
			t.Fatalf("unexpected answer while the adapter is down: %d %s", code, raw)
		}
		if time.Now().After(deadline) {
			t.Fatalf("adapter not back after its crash: %d %s\n%s", code, raw, d.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// ...and the host brought it back as a new process.
	if now := childPIDs(t, d.PID()); len(now) != 1 || now[0] == kids[0] {
		t.Fatalf("adapter processes after restart: %v (killed %d)", now, kids[0])
	}
	if !strings.Contains(d.Log(), "adapter=tekton") {
		t.Errorf("the adapter's events are not in the daemon log with its name")
	}
	// The crash raised an alert, delivered through the outbox like any other,
	// and is itself a signed entry in the log (found by the audit index).
	if !alertSeen(t, "http://"+d.Addr, strings.TrimSpace(string(key)), "gatelog.adapter_restarted") {
		t.Errorf("no gatelog.adapter_restarted alert after the adapter crashed")
	}
	if !restartLogged(t, "http://"+d.Addr, strings.TrimSpace(string(key))) {
		t.Errorf("the adapter restart is not in the log as an adapter.restart entry")
	}

	// Without a credential the API server is told no, natively, and nothing is logged.
	req, _ = http.NewRequest(http.MethodPost, "http://"+d.Addr+"/v1/adapters/tekton", bytes.NewReader(review))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw2, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var denied admissionResponse
	if json.Unmarshal(raw2, &denied) != nil || denied.Response.Allowed {
		t.Fatalf("unauthenticated admission was not denied natively: %d %s", resp.StatusCode, raw2)
	}
	d.Stop(t)
}

// alertSeen reads the daemon's alert stream (recent alerts first) until
// one with the given code arrives or a deadline passes.
func alertSeen(t *testing.T, base, key, code string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/alerts/stream?recent=50", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "data:") && strings.Contains(sc.Text(), code) {
			return true
		}
	}
	return false
}

// restartLogged polls the audit search for the adapter.restart entry.
func restartLogged(t *testing.T, base, key string) bool {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		req, _ := http.NewRequest(http.MethodGet, base+"/v1/audit/search?action=adapter.restart", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 && strings.Contains(string(raw), `"tekton"`) && strings.Contains(string(raw), "gatelog:daemon") {
			return true
		}
	}
	return false
}

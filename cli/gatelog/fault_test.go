package main_test

import (
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatelog/gatelog/internal/e2e"
	"github.com/gatelog/gatelog/record/decision"
)

// mountTmpfs mounts a tmpfs of size (e.g. "4m") on dir, or skips the test
// where mounting is not allowed. The faults below must be real: the tests
// run as root, for whom chmod stops nothing, so a full disk is a full
// tmpfs and a read-only data directory is a tmpfs remounted read-only.
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v: %s); the fault tests need one", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
}

func remount(t *testing.T, dir, mode string) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", "remount,"+mode, dir).CombinedOutput(); err != nil {
		t.Fatalf("remount %s %s: %v %s", dir, mode, err, out)
	}
}

// fillDisk writes to path until the file system is full and returns how
// many bytes it took.
func fillDisk(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var n int64
	for _, chunk := range []int{1 << 16, 1 << 12, 1} {
		buf := make([]byte, chunk)
		for {
			w, err := f.Write(buf)
			n += int64(w)
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	return n
}

// TestFaultsFailClosed puts the daemon's log tree (DATA/log/tlog) on a
// small tmpfs and breaks it under a running daemon: full, then read-only.
// (The envelope store beside it is one database the daemon holds open for
// writing, and a mount with a file open for writing cannot be remounted
// read-only; the translog fault tests fill the store's disk instead.) Every decide call must
// answer 503 naming the fault (never an allow), the daemon must stay up,
// serve what it logged before, and decide again once the fault clears;
// everything it acknowledged must then verify. Then, with the daemon
// stopped, a garbled, missing or foreign log key, or a read-only log, must
// stop `gatelog serve` from starting with a message naming the problem.
func TestFaultsFailClosed(t *testing.T) {
	bin := buildGatelog(t)
	data := filepath.Join(t.TempDir(), "data")
	logDir := filepath.Join(data, "log", "tlog")
	mountTmpfs(t, logDir, "4m")
	h := &crashHarness{t: t, bin: bin, data: data, seen: map[string]bool{}, client: &http.Client{Timeout: 60 * time.Second}}

	d := h.spawn()
	d.WaitReady(h.t)
	h.loadKeys()
	base := "http://" + d.Addr
	allow, deny := crashInputs[0], crashInputs[1]
	mustDecide := func(body []byte) decision.Receipt {
		t.Helper()
		rc, status, msg, err := h.decide(base+"/v1/decide", body)
		if err != nil || status != http.StatusOK {
			t.Fatalf("decide: %v %d %s", err, status, msg)
		}
		h.ack(rc)
		return rc
	}
	first := mustDecide(allow)
	mustDecide(deny)

	// failClosed decides a few times under a fault of the tiles' disk:
	// 503 with the reason, never a receipt; reads of what was logged
	// before still work. The envelope store (on another disk) is the
	// log's durable sequencer and Tessera integrates behind it, so the
	// first decisions after the fault may still be acknowledged — durably
	// sequenced, integrated once the disk is back, and checked with the
	// rest at the end — until the integrator meets the fault; from then
	// on every decision is refused.
	failClosed := func(reason string) {
		t.Helper()
		refused := 0
		for i := 0; refused < 6; i++ {
			body := allow
			if i%2 == 1 {
				body = deny
			}
			rc, status, msg, err := h.decide(base+"/v1/decide", body)
			if err != nil {
				t.Fatalf("decide under %q: %v", reason, err)
			}
			if status == http.StatusOK && refused == 0 && i < 20 {
				h.ack(rc) // sequenced before the integrator met the fault
				time.Sleep(50 * time.Millisecond)
				continue
			}
			refused++
			if status != http.StatusServiceUnavailable || !strings.Contains(msg, reason) || !strings.Contains(msg, "denied") {
				t.Fatalf("decide under %q: %d %s (receipt allow=%v index %d)", reason, status, msg, rc.Allow, rc.LogIndex)
			}
			// The answer says what failed, not where the daemon keeps its files.
			if strings.Contains(msg, data) || strings.Contains(msg, filepath.Dir(data)) {
				t.Fatalf("decide under %q: the 503 names a server path: %s", reason, msg)
			}
		}
		if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable {
			t.Errorf("readyz under %q: %d %s", reason, code, body)
		}
		if err := h.fetch(base, first); err != nil {
			t.Errorf("reading a logged decision under %q: %v", reason, err)
		}
		h.pollCheckpoint(base)
	}
	// recovers polls until decide answers 200 again; until then only 503.
	recovers := func(fault string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			rc, status, msg, err := h.decide(base+"/v1/decide", allow)
			if err != nil {
				t.Fatalf("after %s: %v", fault, err)
			}
			if status == http.StatusOK {
				h.ack(rc)
				break
			}
			if status != http.StatusServiceUnavailable {
				t.Fatalf("after %s: %d %s", fault, status, msg)
			}
			if time.Now().After(deadline) {
				t.Fatalf("decide did not recover after %s: %s", fault, msg)
			}
			time.Sleep(100 * time.Millisecond)
		}
		mustDecide(deny)
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			code, body := get(t, base+"/readyz")
			if code == http.StatusOK {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("readyz after %s: %d %s", fault, code, body)
			}
		}
		h.pollCheckpoint(base)
	}

	// Reads under a fault need a checkpoint that was published before it.
	covered := func() {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			h.pollCheckpoint(base)
			h.mu.Lock()
			size := h.maxSize
			h.mu.Unlock()
			if int64(size) > h.acked[len(h.acked)-1].LogIndex {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("no checkpoint covers the acknowledged entries; largest seen %d", size)
			}
		}
	}

	covered()
	fill := filepath.Join(logDir, "fill")
	n := fillDisk(t, fill)
	t.Logf("disk full: tmpfs filled with %d bytes", n)
	failClosed("no space left on device")
	if err := os.Remove(fill); err != nil {
		t.Fatal(err)
	}
	recovers("disk full")

	covered()
	remount(t, logDir, "ro")
	failClosed("read-only file system")
	remount(t, logDir, "rw")
	recovers("read-only log")

	if d.Exited() {
		t.Fatalf("daemon died during the faults (%v):\n%s", d.ExitErr(), d.Log())
	}
	final := h.finalCheck(d)
	t.Logf("faults: acknowledged=%d found=%d lost=%d", len(h.acked), final.found, len(h.acked)-final.found)
	d.Stop(h.t)
	if strings.Contains(d.Log(), "panic") {
		t.Errorf("the daemon logged a panic:\n%s", d.Log())
	}

	// Start-up faults: each must stop serve with exit 1 and a message that
	// names the file, and leave the data directory as it was.
	keyPath := filepath.Join(data, "keys", "log.key")
	goodKey := mustRead(t, keyPath)
	serve := func() (int, string) {
		return run(t, bin, nil, "serve", "--addr", e2e.FreeAddr(t), "--data", data, "--rate-limit", "-1")
	}
	refuses := func(fault string, want ...string) {
		t.Helper()
		code, out := serve()
		if code != 1 || strings.Contains(out, "panic") {
			t.Fatalf("serve with %s: exit %d\n%s", fault, code, out)
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("serve with %s: output does not say %q:\n%s", fault, w, out)
			}
		}
	}

	if err := os.WriteFile(keyPath, []byte("-----BEGIN EC PRIVATE KEY-----\ngarbage\n-----END EC PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	refuses("a garbled log key", "log key", keyPath)

	if err := os.Remove(keyPath); err != nil {
		t.Fatal(err)
	}
	refuses("no log key", keyPath, "missing")
	if _, err := os.Stat(keyPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("serve created a new log key over an existing log (%v)", err)
	}

	// Another valid key (the decision key) in its place: a different tree ID.
	if err := os.WriteFile(keyPath, mustRead(t, filepath.Join(data, "keys", "decision.key")), 0o600); err != nil {
		t.Fatal(err)
	}
	refuses("another log key", keyPath, "different log key")

	if err := os.WriteFile(keyPath, goodKey, 0o600); err != nil {
		t.Fatal(err)
	}
	remount(t, logDir, "ro")
	refuses("a read-only log", "not writable", "read-only file system")
	remount(t, logDir, "rw")

	// Fault cleared: it starts, and everything is still there.
	d = h.spawn()
	d.WaitReady(h.t)
	final = h.finalCheck(d)
	if final.found != len(h.acked) {
		t.Fatalf("after the start-up faults: found %d of %d", final.found, len(h.acked))
	}
	d.Stop(h.t)
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

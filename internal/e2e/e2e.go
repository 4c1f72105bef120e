// Package e2e runs the real gatelog binary for end-to-end tests of the CI
// integrations: it builds cli/gatelog, starts `gatelog serve` on a loopback
// port with the arguments a user would give (shipped example configs,
// bundled policies, keys generated on first start), and checks that a
// decision a CI system was answered with is in the log and verifies offline
// with `gatelog verify` and the daemon's public keys alone.
//
// It is a helper for tests (it takes a *testing.T) and is imported by no
// production code.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/record/receipt"
)

// Build compiles cli/gatelog into a temporary directory of t and returns the
// binary's path.
func Build(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "gatelog")
	cmd := exec.Command("go", "build", "-o", bin, "./cli/gatelog")
	cmd.Dir = RepoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cli/gatelog: %v\n%s", err, out)
	}
	return bin
}

// RepoRoot is the module's root directory (where go.mod is).
func RepoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("e2e: cannot locate the source tree")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Path is a path below the repository root, e.g. Path(t, "examples/jenkins").
func Path(t testing.TB, rel string) string {
	t.Helper()
	return filepath.Join(RepoRoot(t), filepath.FromSlash(rel))
}

// Daemon is a `gatelog serve` process started by Launch, Start or
// StartWith. A goroutine reaps it, so Done closes as soon as it exits,
// whoever made it exit.
type Daemon struct {
	Bin  string
	Addr string
	// URL is http://Addr (https:// when Options.Client is set).
	URL string
	// Data is the daemon's --data directory.
	Data string
	// APIKey is the bootstrap API key the daemon wrote on first start (all
	// permissions), if it has one: tests use it to read decisions back.
	APIKey string

	cmd     *exec.Cmd
	client  *http.Client
	done    chan struct{}
	waitErr error
	mu      sync.Mutex
	stderr  bytes.Buffer
}

// Options are how Launch starts a daemon; every field may be left empty.
type Options struct {
	// Data is --data (default: a new directory in t's temporary directory).
	// A test restarts a daemon on the same directory by passing it again.
	Data string
	// Addr is --addr (default: a free loopback port).
	Addr string
	// Env is added to the environment.
	Env []string
	// Args are more flags of serve, after the defaults --addr, --data and
	// --checkpoint-interval 100ms (a flag given again here wins).
	Args []string
	// Client asks /readyz; set it for a daemon serving TLS (the URL is
	// then https://).
	Client *http.Client
}

// Start runs `gatelog serve --addr <free loopback port> --data <temp dir>`
// plus args, with env added to the environment, and waits for /readyz. At
// the end of the test it stops the daemon with SIGTERM and fails t unless
// it exits cleanly.
func Start(t testing.TB, bin string, env []string, args ...string) *Daemon {
	t.Helper()
	d := StartWith(t, bin, Options{Env: env, Args: args})
	t.Cleanup(func() {
		if !d.Exited() {
			d.Stop(t)
		}
	})
	return d
}

// StartWith is Launch, then WaitReady.
func StartWith(t testing.TB, bin string, opts Options) *Daemon {
	t.Helper()
	d := Launch(t, bin, opts)
	d.WaitReady(t)
	return d
}

// Launch starts `gatelog serve` without waiting for it to be ready. The
// process is killed at the end of the test if it still runs.
func Launch(t testing.TB, bin string, opts Options) *Daemon {
	t.Helper()
	d := &Daemon{Bin: bin, Data: opts.Data, Addr: opts.Addr, client: opts.Client, done: make(chan struct{})}
	if d.Data == "" {
		d.Data = filepath.Join(t.TempDir(), "gatelog-data")
	}
	if d.Addr == "" {
		d.Addr = freeAddr(t)
	}
	d.URL = "http://" + d.Addr
	if d.client == nil {
		d.client = http.DefaultClient
	} else {
		d.URL = "https://" + d.Addr
	}
	all := append([]string{"serve", "--addr", d.Addr, "--data", d.Data, "--checkpoint-interval", "100ms"}, opts.Args...)
	d.cmd = exec.Command(bin, all...)
	d.cmd.Env = append(os.Environ(), opts.Env...)
	d.cmd.Stdout = &lockedWriter{d: d}
	d.cmd.Stderr = &lockedWriter{d: d}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		d.waitErr = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(d.Abort)
	return d
}

// WaitReady waits up to 90 s for /readyz to answer 200 and reads the
// bootstrap API key, if there is one. A daemon that exits or never gets
// ready fails t with its log.
func (d *Daemon) WaitReady(t testing.TB) {
	t.Helper()
	if err := d.Ready(90 * time.Second); err != nil {
		t.Fatalf("gatelog serve: %v\n%s", err, d.Log())
	}
}

// Ready is WaitReady that returns the failure instead: for tests that
// count starts that fail (the power-cut drill).
func (d *Daemon) Ready(within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		resp, err := d.client.Get(d.URL + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
			err = fmt.Errorf("%s: %s", resp.Status, body)
		}
		if d.Exited() {
			return fmt.Errorf("exited while starting (%v)", d.waitErr)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready within %s: %w", within, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
	if key, err := os.ReadFile(filepath.Join(d.Data, "bootstrap-api-key")); err == nil {
		d.APIKey = strings.TrimSpace(string(key))
	}
	return nil
}

type lockedWriter struct{ d *Daemon }

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.d.mu.Lock()
	defer w.d.mu.Unlock()
	return w.d.stderr.Write(p)
}

// Log is what the daemon printed so far.
func (d *Daemon) Log() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stderr.String()
}

// PID is the daemon's process ID (to send it SIGHUP, say).
func (d *Daemon) PID() int { return d.cmd.Process.Pid }

// Signal sends sig to the daemon.
func (d *Daemon) Signal(sig os.Signal) error { return d.cmd.Process.Signal(sig) }

// Done is closed once the daemon has exited.
func (d *Daemon) Done() <-chan struct{} { return d.done }

// Exited reports whether the daemon has exited, and ExitErr how.
func (d *Daemon) Exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// ExitErr is how the daemon exited (nil: status 0); valid once Done.
func (d *Daemon) ExitErr() error { return d.waitErr }

// Kill ends the daemon with SIGKILL, as a crash does. A daemon that had
// already exited on its own fails t: that was a crash of its own.
func (d *Daemon) Kill(t testing.TB) {
	t.Helper()
	if d.Exited() {
		t.Fatalf("gatelog serve exited before it was killed (%v):\n%s", d.waitErr, d.Log())
	}
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9: %v", err)
	}
	<-d.done
	if ws, ok := d.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("gatelog serve exited before it was killed (%v):\n%s", d.waitErr, d.Log())
	}
}

// Abort kills the daemon if it still runs and waits for it to go: for a
// daemon a test has given up on, however it got there.
func (d *Daemon) Abort() {
	_ = d.cmd.Process.Kill()
	<-d.done
}

// Stop ends the daemon with SIGTERM; it must exit cleanly within two
// minutes (then it is killed and t fails). Calling it on a daemon that has
// exited already checks only how it exited.
func (d *Daemon) Stop(t testing.TB) {
	t.Helper()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(2 * time.Minute):
		_ = d.cmd.Process.Kill()
		<-d.done
		t.Fatalf("gatelog serve did not stop on SIGTERM\n%s", d.Log())
	}
	if d.waitErr != nil {
		t.Fatalf("gatelog serve did not exit cleanly: %v\n%s", d.waitErr, d.Log())
	}
}

// Post sends body to path (e.g. "/v1/adapters/jenkins") with the headers
// given and returns the status, the response headers and the body.
func (d *Daemon) Post(t testing.TB, path string, body []byte, headers http.Header) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, d.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range headers {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v\n%s", path, err, d.Log())
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, raw
}

// Receipt reads decision id back from the daemon (GET /v1/decisions/{id}
// with the bootstrap key), waiting until its inclusion proof is there.
func (d *Daemon) Receipt(t testing.TB, id string) decision.Receipt {
	t.Helper()
	if id == "" {
		t.Fatal("e2e: no decision id to look up")
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		rc, status, err := d.getReceipt(id)
		if err == nil && status == http.StatusOK && rc.InclusionProof != nil {
			return rc
		}
		if time.Now().After(deadline) {
			t.Fatalf("decision %s not in the log with a proof: status %d, %v\n%s", id, status, err, d.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (d *Daemon) getReceipt(id string) (decision.Receipt, int, error) {
	var rc decision.Receipt
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.URL+"/v1/decisions/"+id, nil)
	if err != nil {
		return rc, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+d.APIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return rc, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return rc, resp.StatusCode, nil
	}
	return rc, resp.StatusCode, json.NewDecoder(resp.Body).Decode(&rc)
}

// Verified is a decision found in the log and verified offline.
type Verified struct {
	Receipt decision.Receipt
	// Record is the signed record the receipt carries: the request as the
	// policy saw it and the decision.
	Record decision.Record
	// Output is what `gatelog verify` printed.
	Output string
}

// Verify fetches decision id, writes its receipt to a file and runs
// `gatelog verify` on it with the daemon's two public keys only (the log
// key and the decision signer key, as an auditor has them). It fails t
// unless verify exits 0, and returns the record that was verified.
func (d *Daemon) Verify(t testing.TB, id string) Verified {
	t.Helper()
	rc := d.Receipt(t, id)
	raw, err := json.Marshal(rc)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "receipt.json")
	if err := os.WriteFile(file, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out := Run(t, d.Bin, nil, "verify", "--log-key", filepath.Join(d.Data, "keys", "log.pub"),
		"--signer-key", filepath.Join(d.Data, "keys", "decision.pub"), "--receipt", file)
	if code != 0 || !strings.Contains(out, "VERIFIED") {
		t.Fatalf("gatelog verify of decision %s: exit %d\n%s", id, code, out)
	}
	rec, err := recordOf(rc)
	if err != nil {
		t.Fatalf("decision %s: %v", id, err)
	}
	return Verified{Receipt: rc, Record: rec, Output: out}
}

// recordOf decodes the signed record inside a receipt's DSSE envelope.
// `gatelog verify` has checked the signature; this reads what was signed.
func recordOf(rc decision.Receipt) (decision.Record, error) {
	st, err := receipt.ReadStatement(rc.Envelope)
	return st.Predicate, err
}

// Run runs the gatelog binary with args (env added to the environment) and
// returns its exit code and combined output.
func Run(t testing.TB, bin string, env []string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	// A fresh configuration directory per run (keys pinned on first use,
	// monitor state) unless env names one: nothing leaks between tests or
	// into the user's own.
	cmd.Env = append(append(os.Environ(), "XDG_CONFIG_HOME="+t.TempDir()), env...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatalf("gatelog %s: %v", strings.Join(args, " "), err)
	}
	return 0, string(out)
}

// FreeAddr is a loopback address with a port nobody listens on now.
func FreeAddr(t testing.TB) string { return freeAddr(t) }

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

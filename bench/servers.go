package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Server is a server process started for a benchmark.
type Server struct {
	Name string
	// URL is where it answers decisions.
	URL string
	// Header goes with every decision request (gatelog's API key).
	Header http.Header
	// Addr is host:port; DataDir is gatelog's data directory.
	Addr    string
	DataDir string
	// Ready is how long the process took from exec to answering ready.
	Ready time.Duration

	cmd     *exec.Cmd
	done    chan struct{} // closed once the process has exited
	waitErr error
	stderr  *tailBuffer
	wrap    func([]byte) []byte
}

// Target is the decide endpoint under load with the given requests, each
// wrapped the way this server expects it.
func (s *Server) Target(requests [][]byte) Target {
	bodies := make([][]byte, len(requests))
	for i, r := range requests {
		bodies[i] = s.wrap(r)
	}
	return Target{Name: s.Name, URL: s.URL, Header: s.Header, Bodies: bodies}
}

// Decide sends one request and returns the raw reply body.
func (s *Server) Decide(ctx context.Context, request []byte) ([]byte, error) {
	return s.do(ctx, http.MethodPost, s.URL, bytes.NewReader(s.wrap(request)))
}

// get fetches path (e.g. "/v1/audit/search?limit=1") from the server with
// its credentials and returns the body of a 200.
func (s *Server) get(ctx context.Context, path string) ([]byte, error) {
	return s.do(ctx, http.MethodGet, "http://"+s.Addr+path, nil)
}

func (s *Server) do(ctx context.Context, method, url string, body io.Reader) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return nil, err
	}
	for k, v := range s.Header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s %s: HTTP %d: %s", s.Name, method, url, resp.StatusCode, bytes.TrimSpace(buf.Bytes()))
	}
	return buf.Bytes(), nil
}

// Pid is the server's process ID.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// RSS is the server's resident set size in bytes.
func (s *Server) RSS() (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.Pid()))
	if err != nil {
		return 0, err
	}
	return ParseRSS(raw)
}

// RSSAnon is the server's resident memory not backed by files, in bytes.
func (s *Server) RSSAnon() (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.Pid()))
	if err != nil {
		return 0, err
	}
	return ParseRSSAnon(raw)
}

// CPUTime is the user plus system CPU time the server has used so far.
func (s *Server) CPUTime() (time.Duration, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.Pid()))
	if err != nil {
		return 0, err
	}
	return ParseCPUTime(raw)
}

// Stderr is the tail of what the server wrote to stderr.
func (s *Server) Stderr() string { return s.stderr.String() }

// Stop ends the server with SIGTERM (SIGKILL after timeout) and waits.
func (s *Server) Stop(timeout time.Duration) error {
	select {
	case <-s.done:
		return nil
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
		var ee *exec.ExitError
		if errors.As(s.waitErr, &ee) && !ee.Exited() {
			return nil // ended by our signal
		}
		return s.waitErr
	case <-time.After(timeout):
		_ = s.cmd.Process.Kill()
		<-s.done
		return fmt.Errorf("%s did not stop within %s; killed", s.Name, timeout)
	}
}

// StartGatelog runs `gatelog serve` on a free loopback port with dataDir
// (created fresh on first use) and returns once /readyz answers 200. The
// bootstrap API key from dataDir authenticates the decide calls. The
// per-caller rate limit is off: the benchmark measures capacity, and OPA
// has none. Extra arguments go to serve (e.g. --pprof 127.0.0.1:6060).
func StartGatelog(ctx context.Context, bin, dataDir string, extra ...string) (*Server, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	args := []string{"serve", "--addr", addr, "--data", dataDir}
	if hasFlag(bin, "serve", "--rate-limit") {
		args = append(args, "--rate-limit", "-1")
	}
	args = append(args, extra...)
	s := &Server{Name: "gatelog", Addr: addr, DataDir: dataDir, URL: "http://" + addr + "/v1/decide",
		wrap: func(b []byte) []byte { return b }}
	if err := s.start(ctx, bin, args, "http://"+addr+"/readyz"); err != nil {
		return nil, err
	}
	key, err := os.ReadFile(filepath.Join(dataDir, "bootstrap-api-key"))
	if err != nil {
		_ = s.Stop(10 * time.Second)
		return nil, fmt.Errorf("gatelog API key: %w", err)
	}
	s.Header = http.Header{
		"Authorization": {"Bearer " + strings.TrimSpace(string(key))},
		"Content-Type":  {"application/json"},
	}
	return s, nil
}

// StartOPA runs `opa run --server` with the policies in policyDir on a free
// loopback port and returns once /health answers 200. Decisions go to
// POST /v1/data/gatelog/decision with the request as input.
func StartOPA(ctx context.Context, bin, policyDir string) (*Server, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	args := []string{"run", "--server", "--addr", addr, "--log-level", "error", policyDir}
	s := &Server{Name: "opa", Addr: addr, URL: "http://" + addr + "/v1/data/gatelog/decision",
		Header: http.Header{"Content-Type": {"application/json"}},
		wrap: func(b []byte) []byte {
			return append(append([]byte(`{"input":`), bytes.TrimSpace(b)...), '}')
		}}
	if err := s.start(ctx, bin, args, "http://"+addr+"/health"); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Server) start(ctx context.Context, bin string, args []string, readyURL string) error {
	s.stderr = &tailBuffer{max: 8 << 10}
	s.cmd = exec.Command(bin, args...)
	s.cmd.Stderr = s.stderr
	s.cmd.Stdout = s.stderr
	begin := time.Now()
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.Name, err)
	}
	s.done = make(chan struct{})
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.done)
	}()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := http.Get(readyURL)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				s.Ready = time.Since(begin)
				return nil
			}
		}
		select {
		case <-s.done:
			return fmt.Errorf("%s exited before it was ready: %s", s.Name, s.stderr.String())
		case <-ctx.Done():
			_ = s.Stop(10 * time.Second)
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = s.Stop(10 * time.Second)
			return fmt.Errorf("%s not ready after 2m: %v: %s", s.Name, err, s.stderr.String())
		}
	}
}

// hasFlag reports whether `bin cmd --help` lists flag, so the harness can
// drive daemons built before the flag existed.
func hasFlag(bin, cmd, flag string) bool {
	out, _ := exec.Command(bin, cmd, "--help").CombinedOutput()
	return bytes.Contains(out, []byte(flag+" "))
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// ParseRSS reads VmRSS from the text of /proc/PID/status, in bytes.
func ParseRSS(status []byte) (int64, error) { return parseStatusKB(status, "VmRSS") }

// ParseRSSAnon reads RssAnon from the text of /proc/PID/status, in bytes:
// the resident memory not backed by a file. VmRSS also counts the pages
// of memory-mapped files the process has touched (the envelope store is
// one, mapped whole by bbolt), which the kernel can drop at any time.
func ParseRSSAnon(status []byte) (int64, error) { return parseStatusKB(status, "RssAnon") }

func parseStatusKB(status []byte, field string) (int64, error) {
	for line := range strings.Lines(string(status)) {
		rest, ok := strings.CutPrefix(line, field+":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("%s line %q: want \"<n> kB\"", field, strings.TrimSpace(line))
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || kb < 0 || kb > 1<<40 {
			return 0, fmt.Errorf("%s line %q: bad number", field, strings.TrimSpace(line))
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("no %s line in process status", field)
}

// ParseCPUTime reads utime+stime from the text of /proc/PID/stat. The
// command name (field 2) may hold spaces and parentheses, so fields are
// counted after its last ')'. Linux reports them in USER_HZ (100/s).
func ParseCPUTime(stat []byte) (time.Duration, error) {
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("process stat has no command name")
	}
	f := strings.Fields(s[i+1:])
	// After the name: state(3) ppid(4) ... utime(14) stime(15).
	if len(f) < 13 {
		return 0, fmt.Errorf("process stat has %d fields after the name, want at least 13", len(f))
	}
	var ticks int64
	for _, v := range f[11:13] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 || n > 1<<50 {
			return 0, fmt.Errorf("process stat: bad CPU time %q", v)
		}
		ticks += n
	}
	return time.Duration(ticks) * (time.Second / 100), nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

package main_test

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatelog/gatelog/internal/e2e"
)

// TestUnauthenticatedBodiesAreNotRead: callers without a credential who
// open many connections to the adapter endpoints and send large bodies
// slowly cannot grow the daemon's memory — the credential (a header) is
// checked before the body is read. On the old code each connection held
// its body (up to 3 MiB) until it was complete.
func TestUnauthenticatedBodiesAreNotRead(t *testing.T) {
	bin := e2e.Build(t)
	dir := t.TempDir()
	token := filepath.Join(dir, "gitlab-token")
	if err := os.WriteFile(token, []byte("glvt-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hooks := filepath.Join(dir, "webhooks.json")
	if err := os.WriteFile(hooks, []byte(`{"gitlab":{"token_file":"gitlab-token"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	d := e2e.Start(t, bin, nil, "--adapter", "jenkins", "--adapter", "gitlab", "--webhooks-config", hooks)
	before := rssKB(t, d.PID())

	const conns, sent = 120, 1 << 20 // each declares 3 MiB and sends 1 MiB of it, then stalls
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	var open []net.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	answered := 0
	for i := range conns {
		path := "/v1/adapters/jenkins"
		if i%2 == 1 {
			path = "/v1/adapters/gitlab"
		}
		c, err := net.Dial("tcp", d.Addr)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", path, d.Addr, 3<<20)
		_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		for n := 0; n < sent; n += len(chunk) {
			if _, err := c.Write(chunk); err != nil {
				break // the daemon answered and stopped reading: what we want
			}
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if line, err := bufio.NewReader(c).ReadString('\n'); err == nil && (strings.Contains(line, " 401 ") || strings.Contains(line, " 406 ")) {
			answered++
		}
	}
	after := rssKB(t, d.PID())
	t.Logf("daemon RSS %d kB before, %d kB with %d stalled unauthenticated uploads open; %d refused before their body was read", before, after, conns, answered)
	if answered < conns*9/10 {
		t.Errorf("only %d of %d unauthenticated uploads were refused (401/406) without waiting for their bodies", answered, conns)
	}
	// 120 bodies of 1 MiB would be 120 MiB; allow the daemon's own growth.
	if grew := after - before; grew > 40<<10 {
		t.Errorf("RSS grew by %d kB for %d unauthenticated uploads", grew, conns)
	}

	// Callers who hang up mid-body are not worth a log line each.
	warnsBefore := strings.Count(d.Log(), "level=WARN")
	for range 20 {
		c, err := net.Dial("tcp", d.Addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "POST /v1/adapters/jenkins HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Length: 100000\r\n\r\n{\"JOB", d.Addr, d.APIKey)
		time.Sleep(50 * time.Millisecond)
		c.Close()
	}
	time.Sleep(500 * time.Millisecond)
	if n := strings.Count(d.Log(), "level=WARN") - warnsBefore; n > 2 {
		t.Errorf("20 aborted uploads wrote %d WARN lines to the daemon log:\n%s", n, d.Log())
	}
}

// rssKB is the resident set size of process pid, in kB.
func rssKB(t *testing.T, pid int) int {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			n, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
)

// defaultServer is where a daemon started with `make run` listens.
const defaultServer = "http://127.0.0.1:8080"

// connectionHelp is the HTTPS guidance every client command's help shows.
const connectionHelp = "Connecting: --server takes the daemon's URL; use https:// for anything but a daemon on this\n" +
	"machine (API keys and records cross the network). A daemon with a private CA needs --cacert; one that\n" +
	"asks for client certificates (mTLS) needs --client-cert and --client-key. Every flag has an environment\n" +
	"variable (GATELOG_SERVER, GATELOG_API_KEY, GATELOG_API_KEY_FILE, GATELOG_CACERT, GATELOG_CLIENT_CERT,\n" +
	"GATELOG_CLIENT_KEY, GATELOG_TIMEOUT), the same for every command."

// clientFlags are the connection flags of every command that talks to a
// daemon: one set, one meaning, one environment variable each.
func clientFlags(apiKeyUsage string) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "server", Value: defaultServer, Usage: "daemon URL (https:// for anything but localhost)", EnvVars: []string{"GATELOG_SERVER"}},
		&cli.StringFlag{Name: "api-key", Usage: apiKeyUsage + " (prefer GATELOG_API_KEY or --api-key-file: a flag shows in the process list)", EnvVars: []string{"GATELOG_API_KEY"}},
		&cli.StringFlag{Name: "api-key-file", Usage: "file holding the API key", EnvVars: []string{"GATELOG_API_KEY_FILE"}},
		&cli.StringFlag{Name: "cacert", Usage: "CA certificate(s) (PEM) to trust for an https daemon, instead of the system's", EnvVars: []string{"GATELOG_CACERT"}},
		&cli.StringFlag{Name: "client-cert", Usage: "client certificate (PEM) for a daemon that authenticates callers by mTLS", EnvVars: []string{"GATELOG_CLIENT_CERT"}},
		&cli.StringFlag{Name: "client-key", Usage: "private key (PEM) of --client-cert", EnvVars: []string{"GATELOG_CLIENT_KEY"}},
		&cli.DurationFlag{Name: "timeout", Value: 30 * time.Second, Usage: "give up on one request after this long", EnvVars: []string{"GATELOG_TIMEOUT"}},
	}
}

// client is the one HTTP client of every command that talks to a daemon.
type client struct {
	base *url.URL
	// key is the bearer credential; "" sends none (the public log view, or
	// a caller identified by its client certificate).
	key string
	hc  *http.Client
	// stream is hc without the timeout, for requests that last (the alert
	// stream, an index rebuild); ^C ends them.
	stream *http.Client
}

// newClient builds the client from clientFlags. With needKey an API key
// (or a client certificate) is required.
func newClient(c *cli.Context, needKey bool) (*client, error) {
	base, err := url.Parse(strings.TrimRight(c.String("server"), "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("--server %q: want http(s)://host[:port]", c.String("server"))
	}
	key, err := optionalAPIKey(c)
	if err != nil {
		return nil, err
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if f := c.String("cacert"); f != "" {
		raw, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("--cacert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(raw) {
			return nil, fmt.Errorf("--cacert %s: no PEM certificate", f)
		}
		tlsCfg.RootCAs = pool
	}
	certFile, keyFile := c.String("client-cert"), c.String("client-key")
	if (certFile == "") != (keyFile == "") {
		return nil, fmt.Errorf("--client-cert and --client-key go together")
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("--client-cert/--client-key: %w", err)
		}
		tlsCfg.Certificates = []tls.Certificate{cert}
	}
	if needKey && key == "" && certFile == "" {
		return nil, fmt.Errorf("no API key: set GATELOG_API_KEY or pass --api-key-file (or a client certificate)")
	}
	if base.Scheme == "http" && (tlsCfg.RootCAs != nil || certFile != "") {
		return nil, fmt.Errorf("--server %s is http://: --cacert and --client-cert need https://", base)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsCfg
	return &client{
		base:   base,
		key:    key,
		hc:     &http.Client{Transport: tr, Timeout: c.Duration("timeout")},
		stream: &http.Client{Transport: tr},
	}, nil
}

// optionalAPIKey is the API key from --api-key-file or --api-key, "" for none.
func optionalAPIKey(c *cli.Context) (string, error) {
	if f := c.String("api-key-file"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("--api-key-file: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	return strings.TrimSpace(c.String("api-key")), nil
}

// URL is the daemon's base URL, for packages that take it (the monitor,
// the Rekor API client).
func (cl *client) URL() string { return cl.base.String() }

// HTTPClient is the configured *http.Client (TLS, timeout).
func (cl *client) HTTPClient() *http.Client { return cl.hc }

// HTTPError is a daemon's non-2xx answer.
type HTTPError struct {
	Status  string
	Code    int
	Message string
}

// Error escapes the daemon's message: whatever answers on the URL writes it.
func (e *HTTPError) Error() string { return fmt.Sprintf("%s: %s", e.Status, printable(e.Message)) }

// request sends one request and returns the response (the caller closes
// its body); a non-2xx answer is an *HTTPError.
func (cl *client) request(ctx context.Context, hc *http.Client, method, path string, body io.Reader, header http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, cl.base.String()+path, body)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if cl.key != "" {
		req.Header.Set("Authorization", "Bearer "+cl.key)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return nil, &HTTPError{Status: resp.Status, Code: resp.StatusCode, Message: errorMessage(raw)}
	}
	return resp, nil
}

// do sends body (raw bytes, JSON) and returns the 2xx reply's body, at
// most limit bytes.
func (cl *client) do(ctx context.Context, method, path string, body []byte, limit int64) ([]byte, error) {
	var rd io.Reader
	h := http.Header{}
	if body != nil {
		rd = bytes.NewReader(body)
		h.Set("Content-Type", "application/json")
	}
	resp, err := cl.request(ctx, cl.hc, method, path, rd, h)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return nil, fmt.Errorf("reading the reply: %w", err)
	}
	return raw, nil
}

// call sends in (if any) as JSON and decodes a 2xx reply into out.
func (cl *client) call(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	raw, err := cl.do(ctx, method, path, body, 64<<20)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("the reply is not what %s %s returns: %w", method, path, err)
	}
	return nil
}

func errorMessage(raw []byte) string {
	var e struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(raw, &e) == nil && e.Message != "" {
		return e.Message
	}
	return strings.TrimSpace(string(raw))
}

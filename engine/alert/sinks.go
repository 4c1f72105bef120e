package alert

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/syslog"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Writer writes each alert as one JSON line (stdout, a log file).
type Writer struct {
	name string
	mu   sync.Mutex
	w    io.Writer
}

// NewWriter is a sink named name that writes JSON lines to w.
func NewWriter(name string, w io.Writer) *Writer { return &Writer{name: name, w: w} }

// Name implements Sink.
func (s *Writer) Name() string { return s.name }

// Deliver implements Sink.
func (s *Writer) Deliver(_ context.Context, a Alert) error {
	line, err := json.Marshal(a)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err = s.w.Write(append(line, '\n'))
	return err
}

// Webhook headers. The signature is hex HMAC-SHA256, keyed with the shared
// secret, over "<timestamp>.<body>"; receivers recompute it, compare in
// constant time, reject old timestamps and deduplicate on the alert ID.
const (
	HeaderSignature = "X-Gatelog-Signature" // "sha256=<hex>"
	HeaderTimestamp = "X-Gatelog-Timestamp" // Unix seconds
	HeaderAlertID   = "X-Gatelog-Alert-Id"
)

// Sign computes the X-Gatelog-Signature value for body sent at timestamp.
func Sign(secret []byte, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// VerifySignature checks a webhook delivery as a receiver would.
func VerifySignature(secret []byte, timestamp string, body []byte, signature string) bool {
	return hmac.Equal([]byte(Sign(secret, timestamp, body)), []byte(signature))
}

// Webhook POSTs each alert as JSON, signed with HMAC-SHA256. Any answer
// but 2xx is a failed attempt, retried by the outbox with backoff.
type Webhook struct {
	name   string
	url    string
	secret []byte
	client *http.Client
	now    func() time.Time
	// format turns an alert into the request body.
	format func(Alert) ([]byte, error)
}

// NewWebhook is a sink named name posting to url, signing with secret
// (which may be empty for receivers that do not check).
func NewWebhook(name, url string, secret []byte, client *http.Client) *Webhook {
	if client == nil {
		client = &http.Client{}
	}
	return &Webhook{name: name, url: url, secret: secret, client: client, now: time.Now, format: func(a Alert) ([]byte, error) { return json.Marshal(a) }}
}

// NewSlack is a sink for a Slack-style incoming webhook: the body is
// {"text": "..."} with the alert as one readable line.
func NewSlack(name, url string, client *http.Client) *Webhook {
	w := NewWebhook(name, url, nil, client)
	w.format = slackBody
	return w
}

func slackBody(a Alert) ([]byte, error) {
	text := fmt.Sprintf("*[%s] %s*: %s", a.Severity, a.Code, a.Message)
	if a.Subject != "" || a.Action != "" {
		text += fmt.Sprintf("\n%s → %s", a.Subject, a.Action)
		if a.Environment != "" {
			text += " (" + a.Environment + ")"
		}
	}
	if a.LogIndex != nil {
		text += fmt.Sprintf("\ndecision %s, log index %d", a.DecisionID, *a.LogIndex)
	}
	return json.Marshal(map[string]string{"text": text})
}

// Name implements Sink.
func (s *Webhook) Name() string { return s.name }

// Deliver implements Sink.
func (s *Webhook) Deliver(ctx context.Context, a Alert) error {
	body, err := s.format(a)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "gatelog-alerts")
	req.Header.Set(HeaderAlertID, a.ID)
	if len(s.secret) > 0 {
		ts := strconv.FormatInt(s.now().Unix(), 10)
		req.Header.Set(HeaderTimestamp, ts)
		req.Header.Set(HeaderSignature, Sign(s.secret, ts, body))
	}
	resp, err := s.client.Do(req)
	if err != nil {
		// The URL can hold a token (Slack); the error names only the sink.
		return fmt.Errorf("sink %s: %v", s.name, redactURL(err))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("sink %s: receiver answered %s", s.name, resp.Status)
	}
	return nil
}

// redactURL drops the URL from a client error, keeping the cause.
func redactURL(err error) error {
	type unwrapper interface{ Unwrap() error }
	if u, ok := err.(unwrapper); ok && u.Unwrap() != nil {
		return u.Unwrap()
	}
	return err
}

// Syslog sends each alert as one JSON message to a syslog daemon, with a
// priority from the alert's severity.
type Syslog struct {
	name, network, addr, tag string
	mu                       sync.Mutex
	w                        *syslog.Writer
}

// NewSyslog is a sink named name for the syslog daemon at network/addr
// ("udp", "127.0.0.1:514"; both empty for the local daemon).
func NewSyslog(name, network, addr, tag string) *Syslog {
	if tag == "" {
		tag = "gatelog"
	}
	return &Syslog{name: name, network: network, addr: addr, tag: tag}
}

// Name implements Sink.
func (s *Syslog) Name() string { return s.name }

// Deliver implements Sink.
func (s *Syslog) Deliver(_ context.Context, a Alert) error {
	msg, err := json.Marshal(a)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w == nil {
		w, err := syslog.Dial(s.network, s.addr, syslog.LOG_WARNING|syslog.LOG_DAEMON, s.tag)
		if err != nil {
			return fmt.Errorf("sink %s: %w", s.name, err)
		}
		s.w = w
	}
	var werr error
	switch a.Severity {
	case "critical":
		werr = s.w.Crit(string(msg))
	case "high":
		werr = s.w.Err(string(msg))
	case "medium":
		werr = s.w.Warning(string(msg))
	case "low":
		werr = s.w.Notice(string(msg))
	default:
		werr = s.w.Info(string(msg))
	}
	if werr != nil {
		s.w.Close()
		s.w = nil
		return fmt.Errorf("sink %s: %w", s.name, werr)
	}
	return nil
}

// Close closes the connection to the syslog daemon.
func (s *Syslog) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w == nil {
		return nil
	}
	err := s.w.Close()
	s.w = nil
	return err
}

package alert

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// Config lists the sinks and the outbox settings, as read from the JSON
// file given to `gatelog serve --alerts-config`.
type Config struct {
	Sinks []SinkConfig `json:"sinks"`
	// MinBackoff, MaxBackoff and Retention are Go durations ("250ms", "1m").
	MinBackoff string `json:"min_backoff,omitempty"`
	MaxBackoff string `json:"max_backoff,omitempty"`
	Retention  string `json:"retention,omitempty"`
	// DenyBurst raises an alert when one subject is denied Count times
	// within Window (default 10 in 5m; a Count below 0 turns it off).
	DenyBurst *BurstConfig `json:"deny_burst,omitempty"`
}

// BurstConfig sets the deny-burst alert.
type BurstConfig struct {
	Count  int    `json:"count"`
	Window string `json:"window"`
}

// Default deny-burst threshold.
const (
	DefaultBurstCount  = 10
	DefaultBurstWindow = 5 * time.Minute
)

// Burst returns the deny-burst threshold; count 0 means off.
func (c Config) Burst() (count int, window time.Duration) {
	count, window = DefaultBurstCount, DefaultBurstWindow
	if b := c.DenyBurst; b != nil {
		if b.Count != 0 {
			count = max(b.Count, 0)
		}
		if w, _ := parseDuration(b.Window); w > 0 {
			window = w
		}
	}
	return count, window
}

// SinkConfig is one sink. Secrets (the webhook key, a Slack URL, which
// holds a token) are read from files so they stay out of the config.
type SinkConfig struct {
	Type string `json:"type"` // stdout | webhook | slack | syslog
	Name string `json:"name,omitempty"`
	// URL or URLFile (webhook, slack).
	URL     string `json:"url,omitempty"`
	URLFile string `json:"url_file,omitempty"`
	// SecretFile holds the webhook's HMAC key.
	SecretFile string `json:"secret_file,omitempty"`
	Timeout    string `json:"timeout,omitempty"`
	// Network, Address and Tag (syslog); empty network and address use
	// the local syslog daemon.
	Network string `json:"network,omitempty"`
	Address string `json:"address,omitempty"`
	Tag     string `json:"tag,omitempty"`
}

// ParseConfig decodes a configuration strictly (unknown fields are errors).
func ParseConfig(data []byte) (Config, error) {
	var c Config
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("%w: alerts config: %w", ErrInvalid, err)
	}
	if dec.More() {
		return c, fmt.Errorf("%w: alerts config: data after the JSON object", ErrInvalid)
	}
	ds := []string{c.MinBackoff, c.MaxBackoff, c.Retention}
	if c.DenyBurst != nil {
		ds = append(ds, c.DenyBurst.Window)
	}
	for _, d := range ds {
		if _, err := parseDuration(d); err != nil {
			return c, err
		}
	}
	for i, s := range c.Sinks {
		if _, err := parseDuration(s.Timeout); err != nil {
			return c, fmt.Errorf("sinks[%d]: %w", i, err)
		}
		switch s.Type {
		case "stdout", "syslog":
		case "webhook", "slack":
			if (s.URL == "") == (s.URLFile == "") {
				return c, fmt.Errorf("%w: sinks[%d] (%s) needs exactly one of url and url_file", ErrInvalid, i, s.Type)
			}
			if s.URL != "" {
				if u, err := url.Parse(s.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
					return c, fmt.Errorf("%w: sinks[%d].url must be an http(s) URL", ErrInvalid, i)
				}
			}
		default:
			return c, fmt.Errorf("%w: sinks[%d].type %q must be stdout, webhook, slack or syslog", ErrInvalid, i, s.Type)
		}
	}
	return c, nil
}

// LoadConfig reads and parses a configuration file.
func LoadConfig(path string) (Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("alerts config: %w", err)
	}
	c, err := ParseConfig(raw)
	if err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

func parseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%w: %q is not a duration like 250ms or 1m", ErrInvalid, s)
	}
	return d, nil
}

// Options returns the outbox options the configuration sets.
func (c Config) Options() Options {
	lo, _ := parseDuration(c.MinBackoff)
	hi, _ := parseDuration(c.MaxBackoff)
	ret, _ := parseDuration(c.Retention)
	return Options{MinBackoff: lo, MaxBackoff: hi, Retention: ret}
}

// Build makes the configured sinks; stdout is where the stdout sink writes.
func (c Config) Build(stdout io.Writer) ([]Sink, error) {
	var out []Sink
	for i, s := range c.Sinks {
		name := s.Name
		if name == "" {
			name = s.Type
		}
		timeout, _ := parseDuration(s.Timeout)
		if timeout == 0 {
			timeout = 10 * time.Second
		}
		client := &http.Client{Timeout: timeout}
		switch s.Type {
		case "stdout":
			out = append(out, NewWriter(name, stdout))
		case "syslog":
			out = append(out, NewSyslog(name, s.Network, s.Address, s.Tag))
		case "webhook", "slack":
			u := s.URL
			if s.URLFile != "" {
				raw, err := os.ReadFile(s.URLFile)
				if err != nil {
					return nil, fmt.Errorf("sinks[%d].url_file: %w", i, err)
				}
				u = strings.TrimSpace(string(raw))
			}
			if s.Type == "slack" {
				out = append(out, NewSlack(name, u, client))
				continue
			}
			var secret []byte
			if s.SecretFile != "" {
				raw, err := os.ReadFile(s.SecretFile)
				if err != nil {
					return nil, fmt.Errorf("sinks[%d].secret_file: %w", i, err)
				}
				secret = bytes.TrimSpace(raw)
			}
			out = append(out, NewWebhook(name, u, secret, client))
		default:
			return nil, fmt.Errorf("%w: sinks[%d].type %q", ErrInvalid, i, s.Type)
		}
	}
	return out, nil
}

package rekorapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Client reads a log through its Rekor v1 API. It trusts nothing it reads:
// callers verify what it returns (package translog/verify).
type Client struct {
	base   string
	hc     *http.Client
	bearer string
}

// ClientOption configures a Client.
type ClientOption func(*Client)

// WithBearer sends token (a gatelog API key with the read permission, or
// an OIDC token) as "Authorization: Bearer" with every request, so that a
// log keeping its records private serves entries with their envelopes.
// An empty token sends nothing.
func WithBearer(token string) ClientOption {
	return func(c *Client) { c.bearer = strings.TrimSpace(token) }
}

// NewClient returns a client for the log served at server (its root URL).
func NewClient(server string, hc *http.Client, opts ...ClientOption) (*Client, error) {
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("server %q: want an http(s) URL", server)
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	c := &Client{base: strings.TrimRight(server, "/"), hc: hc}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// Authenticated reports whether the client sends a credential.
func (c *Client) Authenticated() bool { return c.bearer != "" }

// ErrRecordsPrivate means an entry came without its record (the stored
// envelope) because the log keeps records private and the client sent no
// credential: only the leaf, its proofs and its SET are public.
var ErrRecordsPrivate = errors.New("records are private: the log serves entries without their envelopes to callers without a read key (give an API key with the read permission)")

// ErrRecordWithheld means an entry came without its record although the
// client sent a credential the log accepted: a log owes a reader its
// records, so this is the log's fault, not the reader's.
var ErrRecordWithheld = errors.New("the log accepted the read credential but returned no envelope")

// Envelope is the stored DSSE envelope of e (its attestation), or an
// error saying why there is none: ErrRecordsPrivate when this client sent
// no credential, ErrRecordWithheld when it did. It checks nothing else.
func (c *Client) Envelope(e LogEntryAnon) ([]byte, error) {
	if e.Attestation != nil && len(e.Attestation.Data) > 0 {
		return e.Attestation.Data, nil
	}
	if c.Authenticated() {
		return nil, fmt.Errorf("entry %d: %w", e.LogIndex, ErrRecordWithheld)
	}
	return nil, fmt.Errorf("entry %d: %w", e.LogIndex, ErrRecordsPrivate)
}

// HTTPError is a reply other than 200 OK: 401 for a credential the log
// refused, 403 for one without the read permission, 404 for no such entry.
type HTTPError struct {
	Method, Path string
	StatusCode   int
	// Message is the server's error message, or the status text.
	Message string
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("%s %s: %d %s", e.Method, e.Path, e.StatusCode, e.Message)
}

func (c *Client) authorize(req *http.Request) {
	if c.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+c.bearer)
	}
}

func httpError(method, path string, resp *http.Response, raw []byte) error {
	he := &HTTPError{Method: method, Path: path, StatusCode: resp.StatusCode, Message: http.StatusText(resp.StatusCode)}
	var e Error
	if json.Unmarshal(raw, &e) == nil && e.Message != "" {
		he.Message = e.Message
	}
	return he
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	c.authorize(req)
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return httpError(method, path, resp, raw)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("%s %s: reply is not Rekor JSON: %w", method, path, err)
	}
	return nil
}

// LogInfo is GET /api/v1/log.
func (c *Client) LogInfo(ctx context.Context) (LogInfo, error) {
	var li LogInfo
	return li, c.do(ctx, http.MethodGet, "/api/v1/log", nil, &li)
}

// EntryByIndex is GET /api/v1/log/entries?logIndex=.
func (c *Client) EntryByIndex(ctx context.Context, index int64) (string, LogEntryAnon, error) {
	var le LogEntry
	if err := c.do(ctx, http.MethodGet, "/api/v1/log/entries?logIndex="+strconv.FormatInt(index, 10), nil, &le); err != nil {
		return "", LogEntryAnon{}, err
	}
	return one(le)
}

// EntryByUUID is GET /api/v1/log/entries/{uuid}.
func (c *Client) EntryByUUID(ctx context.Context, uuid string) (string, LogEntryAnon, error) {
	var le LogEntry
	if err := c.do(ctx, http.MethodGet, "/api/v1/log/entries/"+url.PathEscape(uuid), nil, &le); err != nil {
		return "", LogEntryAnon{}, err
	}
	return one(le)
}

func one(le LogEntry) (string, LogEntryAnon, error) {
	for k, v := range le {
		if len(le) == 1 {
			return k, v, nil
		}
	}
	return "", LogEntryAnon{}, fmt.Errorf("want one entry in the reply, got %d", len(le))
}

// EntriesByIndex is POST /api/v1/log/entries/retrieve with log indexes
// (at most 10, Rekor's limit).
func (c *Client) EntriesByIndex(ctx context.Context, indexes []int64) ([]LogEntry, error) {
	q := SearchLogQuery{}
	for i := range indexes {
		q.LogIndexes = append(q.LogIndexes, &indexes[i])
	}
	var out []LogEntry
	return out, c.do(ctx, http.MethodPost, "/api/v1/log/entries/retrieve", q, &out)
}

// ConsistencyProof is GET /api/v1/log/proof.
func (c *Client) ConsistencyProof(ctx context.Context, first, last int64) (ConsistencyProof, error) {
	var p ConsistencyProof
	return p, c.do(ctx, http.MethodGet, fmt.Sprintf("/api/v1/log/proof?firstSize=%d&lastSize=%d", first, last), nil, &p)
}

// RekorV1Checkpoint is POST /api/v1/log/checkpoint/rekor-v1 (a gatelog
// extension): the log's checkpoint raw restated in Rekor v1's origin form.
func (c *Client) RekorV1Checkpoint(ctx context.Context, raw []byte) ([]byte, error) {
	const path = "/api/v1/log/checkpoint/rekor-v1"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "text/plain")
	c.authorize(req)
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, maxCheckpoint))
	if err != nil {
		return nil, fmt.Errorf("POST %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, httpError(http.MethodPost, path, resp, out)
	}
	return out, nil
}

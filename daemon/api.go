package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"sync"

	"github.com/google/uuid"

	"github.com/gatelog/gatelog/engine/identity"
	"github.com/gatelog/gatelog/record"
	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/record/receipt"
	"github.com/gatelog/gatelog/translog"
	"github.com/gatelog/gatelog/translog/rekorapi"
	"github.com/gatelog/gatelog/translog/witness"
)

// Handler is the daemon's HTTP API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/decide", s.handleDecide)
	mux.HandleFunc("GET /v1/decisions/{id}", s.handleGetDecision)
	mux.HandleFunc("POST /v1/adapters/{name}", s.handleAdapter) // CI adapters (adapters.go)
	s.mountWebhooks(mux)                                        // webhook endpoints on /v1/adapters/{name} (webhooks.go)
	mux.Handle("GET /checkpoint", s.log.TilesHandler())
	mux.Handle("GET /tile/", s.log.TilesHandler())
	mux.Handle("/api/v1/", rekorapi.Handler(s.log, s.recordAccess())) // Rekor v1 API: leaves public like the tiles, records for readers (records.go)
	if s.witness != nil {
		mux.Handle(witness.CheckpointPath, s.witness.Handler()) // cosigned checkpoints (witness.go)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", s.handleReady)
	s.mountAudit(mux)    // audit search: /v1/audit/search, /v1/audit/counts
	s.mountAlerts(mux)   // alert stream: /v1/alerts/stream
	s.mountMetrics(mux)  // Prometheus: /metrics
	s.mountIdentity(mux) // API keys and signing keys: /v1/apikeys, /v1/keys
	s.mountUI(mux)       // auditor console, /ui/
	return withoutPaths(mux, s.cfg.DataDir)
}

// withoutPaths keeps where the daemon keeps its files out of error
// answers: in the body of a 5xx answer the data directory's path is
// replaced by "DATA". Errors from the log, the index or the outbox name
// their files, which helps the operator reading the daemon's log and
// nobody on the other side of the API.
func withoutPaths(next http.Handler, dataDir string) http.Handler {
	var dirs [][]byte
	for _, d := range []string{dataDir, absPath(dataDir)} {
		if d != "" && d != "." && d != "/" && !slices.ContainsFunc(dirs, func(b []byte) bool { return string(b) == d }) {
			dirs = append(dirs, []byte(d))
		}
	}
	if len(dirs) == 0 {
		return next
	}
	// The longest first, so an absolute path is not half replaced by a
	// relative one it ends with.
	slices.SortFunc(dirs, func(a, b []byte) int { return len(b) - len(a) })
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(&pathScrubber{ResponseWriter: w, dirs: dirs}, r)
	})
}

func absPath(p string) string {
	if p == "" {
		return ""
	}
	a, err := filepath.Abs(p)
	if err != nil {
		return ""
	}
	if r, err := filepath.EvalSymlinks(a); err == nil {
		return r
	}
	return a
}

type pathScrubber struct {
	http.ResponseWriter
	dirs  [][]byte
	scrub bool
}

func (w *pathScrubber) WriteHeader(code int) {
	w.scrub = code >= 500
	w.ResponseWriter.WriteHeader(code)
}

func (w *pathScrubber) Write(b []byte) (int, error) {
	if !w.scrub {
		return w.ResponseWriter.Write(b)
	}
	out := b
	for _, d := range w.dirs {
		out = bytes.ReplaceAll(out, d, []byte("DATA"))
	}
	if _, err := w.ResponseWriter.Write(out); err != nil {
		return 0, err
	}
	return len(b), nil
}

// Unwrap lets http.ResponseController reach the connection (Flush for the
// alert stream).
func (w *pathScrubber) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// apiError is the JSON error body, shaped like Rekor's.
type apiError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func writeError(w http.ResponseWriter, code int, format string, args ...any) {
	writeJSON(w, code, apiError{Code: code, Message: fmt.Sprintf(format, args...)})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// writeReceipt answers a decision with its receipt: compact JSON (a
// receipt is mostly base64, which indenting only re-copies), encoded in a
// pooled buffer and sent with its length.
func writeReceipt(w http.ResponseWriter, rc *decision.Receipt) {
	buf := replyBuffers.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= 1<<20 { // a rare huge receipt is not kept
			replyBuffers.Put(buf)
		}
	}()
	buf.Reset()
	if err := json.NewEncoder(buf).Encode(rc); err != nil {
		writeError(w, http.StatusInternalServerError, "encoding the receipt: %v", err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
}

// replyBuffers hold the receipts writeReceipt encodes.
var replyBuffers = sync.Pool{New: func() any { return bytes.NewBuffer(make([]byte, 0, 8<<10)) }}

func (s *Server) handleDecide(w http.ResponseWriter, r *http.Request) {
	caller, ok := s.authorize(w, r, identity.PermDecide, identity.PermVouch)
	if !ok {
		return
	}
	body, release, err := s.bodies.read(w, r, decision.MaxRequestBytes)
	defer release()
	switch {
	case errors.Is(err, errBodyTooLarge):
		writeError(w, http.StatusBadRequest, "body is larger than %d bytes", decision.MaxRequestBytes)
		return
	case errors.Is(err, errBusy):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "%v", err)
		return
	case err != nil:
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	req, err := decision.ParseRequest(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if req.Context.DryRun {
		// /v1/decide always logs; a dry run is answered only through an
		// adapter, whose native answer cannot be mistaken for a receipt.
		writeError(w, http.StatusBadRequest, "field \"context.dry_run\": dry runs are answered through /v1/adapters/{name} only; /v1/decide logs every decision")
		return
	}
	if err := s.bindSubject(&req, caller); err != nil {
		writeError(w, http.StatusForbidden, "%v", err)
		return
	}
	demoteDaemonFields(&req)
	rc, err := s.Decide(r.Context(), req, caller.Caller, r.URL.Query().Get("wait") == "checkpoint")
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "%v", err)
		return
	}
	writeReceipt(w, &rc)
}

// demoteDaemonFields moves what only the daemon may state out of a request
// a caller wrote itself: which adapter it came through (the adapter
// endpoint sets that, and metrics count by it) and the subject's history
// (the first_privileged_use alert reads it). The caller's values are kept
// under context.unverified, as "source" and "history".
func demoteDaemonFields(req *decision.Request) {
	keep := func(key string, v any) {
		if req.Context.Unverified == nil {
			req.Context.Unverified = map[string]any{}
		}
		req.Context.Unverified[key] = v
	}
	if req.Source.Adapter != "" || req.Source.AdapterVersion != "" {
		keep("source", map[string]any{"adapter": req.Source.Adapter, "adapter_version": req.Source.AdapterVersion})
		req.Source.Adapter, req.Source.AdapterVersion = "", ""
	}
	if req.Context.History != nil {
		keep("history", req.Context.History)
		req.Context.History = nil
	}
}

// Decide evaluates req and records the decision (s.recorder): it returns a
// receipt only once the entry is durably sequenced; with wait, also an
// inclusion proof. Any error (record.ErrNotLogged) means deny.
func (s *Server) Decide(ctx context.Context, req decision.Request, caller decision.Caller, wait bool) (decision.Receipt, error) {
	timer := s.metrics.StartDecide()
	d, pol := s.policies.Decide(ctx, req)
	timer.Stage("eval")
	rc, err := s.recorder.Record(ctx, decision.Record{
		Kind: decision.KindDecision, Request: req, Caller: caller, Decision: d, Policy: pol,
	}, wait)
	timer.Done(req, d, err)
	return rc, err
}

func (s *Server) handleGetDecision(w http.ResponseWriter, r *http.Request) {
	caller, ok := s.authorize(w, r, identity.PermRead, identity.PermDecide)
	if !ok {
		return
	}
	id := r.PathValue("id")
	if _, err := uuid.Parse(id); err != nil {
		writeError(w, http.StatusBadRequest, "decision id %q is not a UUID", id)
		return
	}
	e, err := s.log.Lookup(id)
	if errors.Is(err, translog.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no decision %s", id)
		return
	}
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "reading decision %s: %v", id, err)
		return
	}
	st, err := receipt.ReadStatement(e.Envelope)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "stored record for %s: %v", id, err)
		return
	}
	if !caller.Has(identity.PermRead) && st.Predicate.Caller.ID != caller.ID {
		// Records are for read callers; a caller that may only decide
		// reads back its own decisions, and learns nothing of others'.
		writeError(w, http.StatusNotFound, "no decision %s", id)
		return
	}
	rc := record.Receipt(e, st.Predicate, s.log.LogID())
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.AppendTimeout)
	defer cancel()
	p, err := s.log.InclusionProof(ctx, e.Index, true)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "inclusion proof for %s: %v", id, err)
		return
	}
	rc.InclusionProof = record.ProofJSON(p)
	writeJSON(w, http.StatusOK, rc)
}

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	if _, _, err := s.log.Checkpoint(r.Context()); err != nil {
		writeError(w, http.StatusServiceUnavailable, "log not ready: %v", err)
		return
	}
	if err := s.readiness(); err != nil {
		writeError(w, http.StatusServiceUnavailable, "not ready: %v", err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "ready")
}

package daemon

import (
	"context"
	"errors"
	"net/http"

	"github.com/gatelog/gatelog/daemon/audit"
	"github.com/gatelog/gatelog/engine/identity"
	"github.com/gatelog/gatelog/translog/index"
)

// openAudit opens the audit index and starts it following the log.
func (s *Server) openAudit(ctx context.Context) error {
	ix, err := s.openIndex(ctx)
	if err != nil {
		return err
	}
	cfg := audit.Config{Index: ix, Log: s.log, Shared: s.cfg.Index != "", Every: s.cfg.CheckpointInterval, Logger: s.logger}
	if s.alerts != nil {
		cfg.OnIndexed = s.alerts.FromLog
	}
	s.audit = audit.Open(ctx, cfg)
	return nil
}

func (s *Server) closeAudit() error {
	// s.audit stays set (handlers may read it concurrently); closing is
	// idempotent instead.
	if s.audit == nil {
		return nil
	}
	return s.audit.Close()
}

func (s *Server) mountAudit(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/audit/search", s.handleAuditSearch)
	mux.HandleFunc("GET /v1/audit/counts", s.handleAuditCounts)
	mux.HandleFunc("POST /v1/audit/rebuild", s.handleAuditRebuild)
	mux.HandleFunc("POST /v1/events", s.handleEvent)
}

// auditQuery authorizes a reader and parses its query. A malformed query
// is answered only to a caller who may read: the query syntax is no
// secret, yet unauthenticated callers get 401 first like everywhere else.
func (s *Server) auditQuery(w http.ResponseWriter, r *http.Request) (index.Query, bool) {
	if _, ok := s.authorize(w, r, identity.PermRead); !ok {
		return index.Query{}, false
	}
	if s.audit == nil {
		writeError(w, http.StatusServiceUnavailable, "the audit index is not available on this daemon")
		return index.Query{}, false
	}
	q, err := index.ParseQuery(r.URL.Query(), s.cfg.Now())
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return index.Query{}, false
	}
	return q, true
}

func (s *Server) handleAuditSearch(w http.ResponseWriter, r *http.Request) {
	q, ok := s.auditQuery(w, r)
	if !ok {
		return
	}
	v := r.URL.Query().Get("receipts")
	resp, err := s.audit.Search(r.Context(), q, v == "1" || v == "true")
	if err != nil {
		writeAuditError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) handleAuditCounts(w http.ResponseWriter, r *http.Request) {
	q, ok := s.auditQuery(w, r)
	if !ok {
		return
	}
	by := r.URL.Query().Get("by")
	if by == "" {
		by = "day"
	}
	resp, err := s.audit.Counts(r.Context(), q, by)
	if err != nil {
		writeAuditError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func writeAuditError(w http.ResponseWriter, err error) {
	if errors.Is(err, index.ErrBadQuery) {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	writeError(w, http.StatusServiceUnavailable, "%v", err)
}

// handleAuditRebuild empties the index and rebuilds it from the log (admin).
func (s *Server) handleAuditRebuild(w http.ResponseWriter, r *http.Request) {
	caller, ok := s.authorize(w, r, identity.PermAdmin)
	if !ok {
		return
	}
	if s.audit == nil {
		writeError(w, http.StatusServiceUnavailable, "the audit index is not available on this daemon")
		return
	}
	n, err := s.audit.Rebuild(r.Context())
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "%v", err)
		return
	}
	s.logger.Info("audit index rebuilt", "by", caller.ID, "entries", n)
	writeJSON(w, http.StatusOK, map[string]int{"indexed": n})
}

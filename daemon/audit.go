package daemon

import (
	"context"
	"errors"
	"github.com/gatelog/gatelog/daemon/api"
	"net/http"
	"sync"
	"time"

	"github.com/gatelog/gatelog/engine/identity"
	"github.com/gatelog/gatelog/record"
	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/record/receipt"
	"github.com/gatelog/gatelog/translog"
	"github.com/gatelog/gatelog/translog/index"
)

// auditIndex keeps the audit index following the log.
type auditIndex struct {
	ix        *index.Index
	src       *translog.Reader
	stop      context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// openAudit opens the audit index and starts following the log.
func (s *Server) openAudit(ctx context.Context) error {
	rl := s.log
	ix, err := s.openIndex(ctx)
	if err != nil {
		return err
	}
	every := s.cfg.CheckpointInterval
	if every <= 0 {
		every = time.Second
	}
	if s.alerts != nil {
		ix.OnIndexed(s.alerts.FromLog)
	}
	fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a := &auditIndex{ix: ix, src: rl.Reader(), stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(a.done)
		if _, err := ix.CatchUp(fctx, a.src, s.logger); errors.Is(err, index.ErrOtherLog) && s.cfg.Index != "" {
			// A shared index is never dropped: the other daemons may be
			// right and this one pointed at the wrong log.
			s.logger.Error("shared audit index belongs to another log; not following it", "err", err)
			return
		} else if errors.Is(err, index.ErrOtherLog) {
			// The index is derived data: one built from another log is
			// dropped and rebuilt from this one.
			s.logger.Warn("audit index was built from another log; rebuilding it", "err", err)
			if err := ix.Reset(fctx); err != nil {
				s.logger.Error("audit index: reset failed", "err", err)
			}
		}
		ix.Follow(fctx, a.src, every, s.logger)
	}()
	s.audit = a
	return nil
}

func (s *Server) closeAudit() error {
	// s.audit stays set (handlers may read it concurrently); closing is
	// made idempotent instead.
	a := s.audit
	if a == nil {
		return nil
	}
	a.closeOnce.Do(func() {
		a.stop()
		<-a.done
		a.closeErr = a.ix.Close()
	})
	return a.closeErr
}

func (s *Server) mountAudit(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/audit/search", s.handleAuditSearch)
	mux.HandleFunc("GET /v1/audit/counts", s.handleAuditCounts)
	mux.HandleFunc("POST /v1/audit/rebuild", s.handleAuditRebuild)
	mux.HandleFunc("POST /v1/events", s.handleEvent)
}

// auditReader authenticates a caller with the read permission and returns
// the index caught up with the latest checkpoint (as far as the request's
// time allows: a lagging index is still answered from, and says so).
func (s *Server) auditReader(w http.ResponseWriter, r *http.Request) (*auditIndex, int64, bool) {
	if _, ok := s.authorize(w, r, identity.PermRead); !ok {
		return nil, 0, false
	}
	a := s.audit
	if a == nil {
		writeError(w, http.StatusServiceUnavailable, "the audit index is not available on this daemon")
		return nil, 0, false
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if _, err := a.ix.CatchUp(ctx, a.src, s.logger); err != nil {
		s.logger.Warn("audit index lags the log", "err", err)
	}
	next, err := a.ix.Next(r.Context())
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "audit index: %v", err)
		return nil, 0, false
	}
	return a, next, true
}

func (s *Server) handleAuditSearch(w http.ResponseWriter, r *http.Request) {
	q, err := index.ParseQuery(r.URL.Query(), s.cfg.Now())
	if err != nil {
		s.auditBadRequest(w, r, err)
		return
	}
	a, next, ok := s.auditReader(w, r)
	if !ok {
		return
	}
	p, err := a.ix.Search(r.Context(), q)
	if err != nil {
		writeAuditError(w, err)
		return
	}
	resp := api.SearchResponse{Page: p, Indexed: next}
	if v := r.URL.Query().Get("receipts"); v == "1" || v == "true" {
		if resp.Receipts, err = s.receiptsFor(r.Context(), a, p.Results); err != nil {
			writeError(w, http.StatusServiceUnavailable, "receipts: %v", err)
			return
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

// receiptsFor builds the receipts of rows, as GET /v1/decisions/{id} would,
// but proves them all against one checkpoint with one proof builder.
func (s *Server) receiptsFor(ctx context.Context, a *auditIndex, rows []index.Row) ([]*decision.Receipt, error) {
	raw, cp, err := a.src.Checkpoint(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]*decision.Receipt, len(rows))
	var idxs []int64
	var pos []int
	for i, row := range rows {
		if row.Kind == index.KindUnreadable {
			continue
		}
		e, err := s.log.Lookup(row.ID)
		if err != nil || e.Index < 0 || uint64(e.Index) >= cp.Size {
			continue // the client sees no receipt and reports the row unverified
		}
		st, err := receipt.ReadStatement(e.Envelope)
		if err != nil {
			continue
		}
		rc := record.Receipt(e, st.Predicate, s.log.LogID())
		out[i] = &rc
		idxs, pos = append(idxs, e.Index), append(pos, i)
	}
	proofs, err := a.src.InclusionProofs(ctx, cp.Size, idxs)
	if err != nil {
		return nil, err
	}
	for k, i := range pos {
		out[i].InclusionProof = record.ProofJSON(translog.Proof{Index: idxs[k], TreeSize: int64(cp.Size), RootHash: cp.Hash, Hashes: proofs[k], Checkpoint: raw})
	}
	return out, nil
}

func (s *Server) handleAuditCounts(w http.ResponseWriter, r *http.Request) {
	q, err := index.ParseQuery(r.URL.Query(), s.cfg.Now())
	if err != nil {
		s.auditBadRequest(w, r, err)
		return
	}
	by := r.URL.Query().Get("by")
	if by == "" {
		by = "day"
	}
	a, next, ok := s.auditReader(w, r)
	if !ok {
		return
	}
	cs, err := a.ix.Counts(r.Context(), q, by)
	if err != nil {
		writeAuditError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, api.CountsResponse{By: by, Counts: cs, Indexed: next})
}

// auditBadRequest answers a malformed query, but only to a caller who may
// read: the query syntax is no secret, yet unauthenticated callers get 401
// first like everywhere else.
func (s *Server) auditBadRequest(w http.ResponseWriter, r *http.Request, err error) {
	if _, ok := s.authorize(w, r, identity.PermRead); !ok {
		return
	}
	writeError(w, http.StatusBadRequest, "%v", err)
}

func writeAuditError(w http.ResponseWriter, err error) {
	if errors.Is(err, index.ErrBadQuery) {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	writeError(w, http.StatusServiceUnavailable, "audit index: %v", err)
}

// handleAuditRebuild empties the index and rebuilds it from the log (admin).
func (s *Server) handleAuditRebuild(w http.ResponseWriter, r *http.Request) {
	caller, ok := s.authorize(w, r, identity.PermAdmin)
	if !ok {
		return
	}
	a := s.audit
	if a == nil {
		writeError(w, http.StatusServiceUnavailable, "the audit index is not available on this daemon")
		return
	}
	if err := a.ix.Reset(r.Context()); err != nil {
		writeError(w, http.StatusServiceUnavailable, "audit index: %v", err)
		return
	}
	n, err := a.ix.CatchUp(r.Context(), a.src, s.logger)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "audit index rebuilt %d entries, then: %v", n, err)
		return
	}
	s.logger.Info("audit index rebuilt", "by", caller.ID, "entries", n)
	writeJSON(w, http.StatusOK, map[string]int{"indexed": n})
}

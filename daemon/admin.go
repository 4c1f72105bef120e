package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/gatelog/gatelog/daemon/api"
	"github.com/gatelog/gatelog/engine/identity"
	"github.com/gatelog/gatelog/record/decision"
)

// Admin actions, recorded as the action of their log entry.
const (
	ActionKeyCreate    = "admin.apikey.create"
	ActionKeyRevoke    = "admin.apikey.revoke"
	ActionSignerRotate = "admin.signer.rotate"
)

// mountIdentity adds the key administration API. API keys are managed
// through the daemon, not by editing its files, so a revocation takes
// effect on the very next request and every change is logged with the
// authenticated admin who made it.
func (s *Server) mountIdentity(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/apikeys", s.handleCreateKey)
	mux.HandleFunc("GET /v1/apikeys", s.handleListKeys)
	mux.HandleFunc("DELETE /v1/apikeys/{ref}", s.handleRevokeKey)
	mux.HandleFunc("GET /v1/keys", s.handleSigningKeys)
	mux.HandleFunc("POST /v1/signing-keys", s.handleRotateSigner)
}

// logAdminEvent records an administrative change (decision.KindAdmin):
// the caller, who must hold admin, is the verified subject, the action and
// its details are the request, and the authority is the admin permission.
// Secrets never appear in res.
func (s *Server) logAdminEvent(ctx context.Context, caller identity.Caller, action string, res decision.Resource) (decision.Receipt, error) {
	now := s.recorder.Now()
	req := decision.Request{Action: action, Resource: res, Source: decision.Source{Adapter: "gatelog-admin", AdapterVersion: s.cfg.Version}}
	if err := identity.Bind(&req, caller, now); err != nil {
		return decision.Receipt{}, err
	}
	req.Context.Time = now.UTC().Format(time.RFC3339)
	rc, err := s.recorder.Record(ctx, decision.Record{
		Kind: decision.KindAdmin, Request: req, Caller: caller.Caller,
		Admin: &decision.Admin{Reason: fmt.Sprintf("%s holds the admin permission", caller.ID)},
	}, false)
	if err != nil {
		return rc, err
	}
	s.logger.Info("admin action logged", "action", action, "by", caller.ID, "resource", res.Name, "log_index", rc.LogIndex)
	return rc, nil
}

// requireAdmin authenticates the caller and checks the admin permission.
func (s *Server) requireAdmin(w http.ResponseWriter, r *http.Request) (identity.Caller, bool) {
	return s.authorize(w, r, identity.PermAdmin)
}

func (s *Server) handleCreateKey(w http.ResponseWriter, r *http.Request) {
	caller, ok := s.requireAdmin(w, r)
	if !ok {
		return
	}
	var req api.CreateKeyRequest
	if err := decodeStrict(w, r, &req); err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	ttl, err := identity.ParseTTL(req.ExpiresIn)
	if err != nil {
		writeError(w, http.StatusBadRequest, "field \"expires_in\": %v", err)
		return
	}
	now := s.cfg.Now()
	secret, k, err := s.keys.NewKey(req.Name, req.Permissions, ttl, now)
	if errors.Is(err, identity.ErrTooManyKeys) {
		writeError(w, http.StatusConflict, "%v", err)
		return
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	// The key works only once its creation is in the log.
	rc, err := s.logAdminEvent(r.Context(), caller, ActionKeyCreate, keyResource(k.Info()))
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "key not created: %v", err)
		return
	}
	if err := s.keys.Add(k, now); err != nil {
		writeError(w, http.StatusServiceUnavailable, "key not created (its creation is logged at index %d): %v", rc.LogIndex, err)
		return
	}
	writeJSON(w, http.StatusCreated, api.CreateKeyResponse{Key: secret, Info: k.Info(), Receipt: rc})
}

func (s *Server) handleListKeys(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.requireAdmin(w, r); !ok {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"keys": s.keys.List()})
}

func (s *Server) handleRevokeKey(w http.ResponseWriter, r *http.Request) {
	caller, ok := s.requireAdmin(w, r)
	if !ok {
		return
	}
	// Revocation takes effect first — a door is never held open waiting
	// for the log — and is then logged.
	revoked, err := s.keys.Revoke(r.PathValue("ref"), s.cfg.Now())
	if errors.Is(err, identity.ErrNoSuchKey) {
		writeError(w, http.StatusNotFound, "%v", err)
		return
	}
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "%v", err)
		return
	}
	resp := api.RevokeKeyResponse{Revoked: revoked}
	for _, k := range revoked {
		rc, err := s.logAdminEvent(r.Context(), caller, ActionKeyRevoke, keyResource(k))
		if err != nil {
			s.logger.Error("key revoked but its log entry failed", "key_id", k.ID, "err", err)
			writeError(w, http.StatusServiceUnavailable, "key %s is revoked, but logging the revocation failed: %v", k.ID, err)
			return
		}
		resp.Receipt = rc
	}
	writeJSON(w, http.StatusOK, resp)
}

// keyResource describes an API key in a log entry: never its secret or hash.
func keyResource(k identity.Info) decision.Resource {
	attrs := map[string]any{"id": k.ID, "permissions": k.Permissions, "created": k.Created.Format(time.RFC3339)}
	if !k.Expires.IsZero() {
		attrs["expires"] = k.Expires.Format(time.RFC3339)
	}
	return decision.Resource{System: "gatelog", Kind: "api_key", Name: k.Name, Attributes: attrs}
}

// decodeStrict reads a small JSON body, refusing unknown fields.
func decodeStrict(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("empty body, expected a JSON object")
		}
		return fmt.Errorf("malformed JSON: %v", err)
	}
	return nil
}

package daemon

import (
	"net/http"

	"github.com/gatelog/gatelog/engine/identity"
	"github.com/gatelog/gatelog/translog/rekorapi"
)

// recordAccess is the privacy model of the public log. The leaves (hashes,
// signature, verifier key), their proofs and SETs are public: they are
// what a Rekor client, a monitor or a receipt holder verifies, and they
// say nothing about who asked for what. The records (the signed envelopes:
// subject, groups, resource, source IP, reasons) go to callers with the
// read permission, as /v1/decisions and audit search do, unless the
// operator chose a fully public log (Config.PublicRecords).
//
// A request without a credential gets the public view. A credential is
// checked like on every other endpoint: a bad one is a 401 and one
// without the read permission a 403, so that a reader who meant to see
// records learns why not instead of quietly getting less.
func (s *Server) recordAccess() rekorapi.Options {
	if s.cfg.PublicRecords {
		return rekorapi.Options{Access: rekorapi.PublicRecords}
	}
	return rekorapi.Options{Access: func(w http.ResponseWriter, r *http.Request) rekorapi.View {
		if r.Header.Get("Authorization") == "" && (r.TLS == nil || len(r.TLS.PeerCertificates) == 0) {
			return rekorapi.Leaf
		}
		caller, ok := s.identify(w, r) // no rate limit: a leaf is read at any rate too
		if !ok {
			return rekorapi.Refused
		}
		if !caller.Has(identity.PermRead) {
			writeError(w, http.StatusForbidden, "caller %s lacks the read permission that records need; send no credential for the public view (leaf, proofs, SET)", caller.ID)
			return rekorapi.Refused
		}
		return rekorapi.Full
	}}
}

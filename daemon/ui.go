package daemon

import (
	"net/http"
	"strings"

	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/gatelog/gatelog/ui"
)

// mountUI serves the auditor console at /ui/. The console's files and the
// daemon's public keys are public; everything it shows about decisions
// comes from the authenticated API, and it verifies each decision itself
// against keys the auditor pins.
func (s *Server) mountUI(mux *http.ServeMux) {
	mux.Handle("GET /ui/", http.StripPrefix("/ui", ui.Handler()))
	mux.Handle("GET /ui", http.RedirectHandler("/ui/", http.StatusMovedPermanently))
	mux.HandleFunc("GET /ui/keys", s.handleUIKeys)
}

// uiKeys are the public keys the daemon uses, offered to the console as a
// starting point for pinning (trust on first use: an auditor compares the
// fingerprints with keys obtained out of band).
type uiKeys struct {
	LogPublicKey string `json:"log_public_key,omitempty"`
	// DecisionPublicKey holds one PEM block per decision signing key.
	DecisionPublicKey string `json:"decision_public_key"`
	Origin            string `json:"origin"`
}

func (s *Server) handleUIKeys(w http.ResponseWriter, r *http.Request) {
	// The key in use first, then the others the daemon has signed with, so
	// decisions from before a rotation verify too.
	pems := string(s.signerPEM)
	if s.signers != nil {
		for _, sk := range s.signers.public().Keys {
			if !sk.Pending && sk.PublicKey != "" && !strings.Contains(pems, strings.TrimSpace(sk.PublicKey)) {
				pems += strings.TrimSpace(sk.PublicKey) + "\n"
			}
		}
	}
	k := uiKeys{DecisionPublicKey: pems, Origin: s.log.Origin()}
	if pem, err := cryptoutils.MarshalPublicKeyToPEM(s.log.PublicKey()); err == nil {
		k.LogPublicKey = string(pem)
	}
	w.Header().Set("Cache-Control", "no-cache")
	writeJSON(w, http.StatusOK, k)
}

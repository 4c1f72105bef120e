// Package api is the daemon's HTTP API as its clients see it: the request
// and response bodies of the endpoints beside /v1/decide (whose request
// and receipt are record/decision's), and the layout of the data
// directory that offline tools read. It imports no part of the daemon,
// so a client — the CLI's auditor commands among them — builds without
// the policy engine.
package api

import (
	"crypto"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/gatelog/gatelog/engine/identity"
	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/translog/index"
	"github.com/gatelog/gatelog/translog/verify"
)

// Paths inside a daemon's data directory.
const (
	DecisionKeyFile  = "keys/decision.key"
	LogKeyFile       = "keys/log.key"
	APIKeysFile      = "apikeys.json"
	BootstrapKeyFile = "bootstrap-api-key"
	LogDir           = "log"
	// SignersFile lists every decision-signing key the daemon has used,
	// with validity windows, and where each private key lives (a file in
	// the data directory or a KMS URI).
	SignersFile = "keys/signers.json"
	// IndexFile is the audit index (SQLite). It is derived from the log
	// and can be deleted and rebuilt at any time.
	IndexFile = "index.db"
)

// SearchResponse is the body of GET /v1/audit/search.
type SearchResponse struct {
	index.Page
	// Indexed is how many log entries the index covered when it answered.
	Indexed int64 `json:"indexed"`
	// Receipts, with ?receipts=1, holds each result's receipt (in the same
	// order; null where there is none), every one with an inclusion proof
	// to the same checkpoint: a client verifies a whole page with one call.
	Receipts []*decision.Receipt `json:"receipts,omitempty"`
}

// CountsResponse is the body of GET /v1/audit/counts.
type CountsResponse struct {
	By      string        `json:"by"`
	Counts  []index.Count `json:"counts"`
	Indexed int64         `json:"indexed"`
}

// CreateKeyRequest is the body of POST /v1/apikeys.
type CreateKeyRequest struct {
	Name        string   `json:"name"`
	Permissions []string `json:"permissions"`
	// ExpiresIn is a duration like "90d", "12h" or "" for no expiry.
	ExpiresIn string `json:"expires_in,omitempty"`
}

// CreateKeyResponse carries the new key's secret, shown this once.
type CreateKeyResponse struct {
	Key     string           `json:"key"`
	Info    identity.Info    `json:"info"`
	Receipt decision.Receipt `json:"receipt"`
}

// RevokeKeyResponse lists the revoked keys.
type RevokeKeyResponse struct {
	Revoked []identity.Info  `json:"revoked"`
	Receipt decision.Receipt `json:"receipt"`
}

// RotateSignerRequest is the body of POST /v1/signing-keys.
type RotateSignerRequest struct {
	// Signer is a KMS URI; empty means a new ECDSA P-256 key file.
	Signer string `json:"signer,omitempty"`
}

// RotateSignerResponse describes the new key and the log entry announcing it.
type RotateSignerResponse struct {
	Key     verify.SigningKey `json:"key"`
	Receipt decision.Receipt  `json:"receipt"`
}

// readPublicKey reads a PEM public key file.
func readPublicKey(path string) (crypto.PublicKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := cryptoutils.UnmarshalPEMToPublicKey(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// DataDirKeys reads a daemon's public keys from its data directory: the
// log key (keys/log.pub) and every decision-signing key it has used
// (keys/decision.pub and every key of keys/signers.json).
func DataDirKeys(dataDir string) (logKey crypto.PublicKey, signerKeys []crypto.PublicKey, err error) {
	logKey, err = readPublicKey(filepath.Join(dataDir, "keys/log.pub"))
	if err != nil {
		return nil, nil, fmt.Errorf("log key: %w", err)
	}
	signerKeys, err = signerKeysIn(dataDir)
	return logKey, signerKeys, err
}

func signerKeysIn(dataDir string) ([]crypto.PublicKey, error) {
	first, err := readPublicKey(filepath.Join(dataDir, "keys/decision.pub"))
	if err != nil {
		return nil, fmt.Errorf("decision key: %w", err)
	}
	keys := []crypto.PublicKey{first}
	raw, err := os.ReadFile(filepath.Join(dataDir, SignersFile))
	if errors.Is(err, os.ErrNotExist) {
		return keys, nil
	}
	if err != nil {
		return nil, err
	}
	ks, err := verify.ParseSigningKeys(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", SignersFile, err)
	}
	for _, k := range ks.Keys {
		pub, err := cryptoutils.UnmarshalPEMToPublicKey([]byte(k.PublicKey))
		if err != nil {
			return nil, fmt.Errorf("%s: key %s: %w", SignersFile, k.KeyID, err)
		}
		keys = append(keys, pub)
	}
	return keys, nil
}

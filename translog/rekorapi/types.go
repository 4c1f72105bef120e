package rekorapi

// The JSON shapes of the Rekor v1 API (sigstore/rekor pkg/generated/models),
// restricted to what a gatelog log serves. Field names and encodings match
// Rekor's so that its generated client, rekor-cli and sigstore tools read
// them unchanged; the tests check that with Rekor's own models.

// LogInfo is GET /api/v1/log.
type LogInfo struct {
	InactiveShards []any  `json:"inactiveShards"`
	RootHash       string `json:"rootHash"`
	SignedTreeHead string `json:"signedTreeHead"`
	TreeID         string `json:"treeID"`
	TreeSize       int64  `json:"treeSize"`
}

// LogEntry maps an entry UUID to the entry (Rekor returns one per map).
type LogEntry map[string]LogEntryAnon

// LogEntryAnon is one entry with its proofs.
type LogEntryAnon struct {
	Attestation *Attestation `json:"attestation,omitempty"`
	// Body is the base64 of the canonical entry body (the leaf).
	Body           string        `json:"body"`
	IntegratedTime int64         `json:"integratedTime"`
	LogID          string        `json:"logID"`
	LogIndex       int64         `json:"logIndex"`
	Verification   *Verification `json:"verification,omitempty"`
}

// Attestation carries the stored DSSE envelope; Data is base64 on the wire.
type Attestation struct {
	Data []byte `json:"data,omitempty"`
}

// Verification is what proves an entry is in the log.
type Verification struct {
	InclusionProof       *InclusionProof `json:"inclusionProof,omitempty"`
	SignedEntryTimestamp []byte          `json:"signedEntryTimestamp,omitempty"`
}

// InclusionProof proves an entry is in the tree of a signed checkpoint.
// Hashes and RootHash are hex.
type InclusionProof struct {
	Checkpoint string   `json:"checkpoint"`
	Hashes     []string `json:"hashes"`
	LogIndex   int64    `json:"logIndex"`
	RootHash   string   `json:"rootHash"`
	TreeSize   int64    `json:"treeSize"`
}

// ConsistencyProof is GET /api/v1/log/proof: hex hashes and the hex root
// of the larger tree.
type ConsistencyProof struct {
	Hashes   []string `json:"hashes"`
	RootHash string   `json:"rootHash"`
}

// SearchLogQuery is POST /api/v1/log/entries/retrieve.
type SearchLogQuery struct {
	EntryUUIDs []string        `json:"entryUUIDs,omitempty"`
	LogIndexes []*int64        `json:"logIndexes,omitempty"`
	Entries    []ProposedEntry `json:"entries,omitempty"`
}

// ProposedEntry is a Rekor entry as a client proposes it; gatelog answers
// searches for kind "dsse", apiVersion "0.0.1".
type ProposedEntry struct {
	Kind       string   `json:"kind"`
	APIVersion string   `json:"apiVersion"`
	Spec       DSSESpec `json:"spec"`
}

// DSSESpec is the spec of a proposed dsse v0.0.1 entry: either the
// proposed content (envelope and base64 PEM verifiers) or the canonical
// fields of a logged body.
type DSSESpec struct {
	ProposedContent *struct {
		Envelope  string   `json:"envelope"`
		Verifiers [][]byte `json:"verifiers"`
	} `json:"proposedContent,omitempty"`
	EnvelopeHash *struct {
		Algorithm string `json:"algorithm"`
		Value     string `json:"value"`
	} `json:"envelopeHash,omitempty"`
	PayloadHash *struct {
		Algorithm string `json:"algorithm"`
		Value     string `json:"value"`
	} `json:"payloadHash,omitempty"`
	Signatures []struct {
		Signature string `json:"signature"`
		Verifier  []byte `json:"verifier"`
	} `json:"signatures,omitempty"`
}

// SearchIndex is POST /api/v1/index/retrieve. gatelog answers searches by
// Hash ("sha256:<hex>"): the SHA-256 of a decision's request (the
// in-toto subject digest), of the DSSE payload, or of the envelope.
type SearchIndex struct {
	Hash      string `json:"hash,omitempty"`
	Email     string `json:"email,omitempty"`
	Subject   string `json:"subject,omitempty"`
	Operator  string `json:"operator,omitempty"`
	PublicKey *struct {
		Format  string `json:"format"`
		Content []byte `json:"content,omitempty"`
		URL     string `json:"url,omitempty"`
	} `json:"publicKey,omitempty"`
}

// Error is every error body, as Rekor returns them.
type Error struct {
	Code    int64  `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

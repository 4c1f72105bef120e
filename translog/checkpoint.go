package translog

import (
	"crypto"
	"fmt"

	"github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"

	"github.com/gatelog/gatelog/translog/verify"
)

// checkpointVerifier checks the log's own checkpoints before serving them,
// so a corrupted checkpoint on disk is reported instead of handed out.
type checkpointVerifier struct {
	origin string
	v      note.Verifier
}

func newCheckpointVerifier(origin string, pub crypto.PublicKey) (*checkpointVerifier, error) {
	v, err := verify.CheckpointVerifier(origin, pub)
	if err != nil {
		return nil, fmt.Errorf("checkpoint verifier: %w", err)
	}
	return &checkpointVerifier{origin: origin, v: v}, nil
}

func (c *checkpointVerifier) parse(raw []byte) (*log.Checkpoint, error) {
	cp, _, _, err := log.ParseCheckpoint(raw, c.origin, c.v)
	return cp, err
}

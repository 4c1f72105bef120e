package translog

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// ErrNotOurCheckpoint marks a checkpoint this log did not sign.
var ErrNotOurCheckpoint = errors.New("not a checkpoint signed by this log")

// RekorV1Checkpoint restates one of this log's checkpoints in the exact
// form Rekor v1 writes: the same tree size and root hash under the origin
// "<host> - <tree id>", with one signature line named after the host,
// signed by the log key as Rekor v1 signs (ECDSA over the SHA-256 of the
// note text, key hint = the first four bytes of the SHA-256 of the key's
// PKIX DER).
//
// The log's own checkpoints use "<host>/<tree id>", because Tessera names
// the origin after its note signer and signer names cannot contain spaces;
// Sigstore verifiers that tell Rekor v1 from Rekor v2 by the origin line
// (sigstore-go) need this form instead. raw must verify as a checkpoint
// of this log, so the log never signs a tree head it did not already
// commit to.
func (l *Log) RekorV1Checkpoint(raw []byte) ([]byte, error) {
	cp, err := l.verifier.parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotOurCheckpoint, err)
	}
	host := strings.TrimSuffix(l.origin, fmt.Sprintf("/%d", l.treeID))
	text := fmt.Sprintf("%s - %d\n%d\n%s\n", host, l.treeID, cp.Size, base64.StdEncoding.EncodeToString(cp.Hash))
	signer, err := newNoteSigner(l.origin, l.cfg.Key)
	if err != nil {
		return nil, err
	}
	sig, err := signer.Sign([]byte(text))
	if err != nil {
		return nil, fmt.Errorf("%w: sign checkpoint: %w", ErrUnavailable, err)
	}
	hinted := binary.BigEndian.AppendUint32(nil, signer.KeyHash())
	return fmt.Appendf(nil, "%s\n— %s %s\n", text, host, base64.StdEncoding.EncodeToString(append(hinted, sig...))), nil
}

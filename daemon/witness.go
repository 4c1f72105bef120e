package daemon

import (
	"crypto"
	"fmt"
	"os"
	"path/filepath"

	"github.com/gatelog/gatelog/translog/verify"
	"github.com/gatelog/gatelog/translog/witness"
)

// WitnessFile keeps the latest cosigned checkpoint across restarts.
const WitnessFile = "witness/checkpoint"

// openWitness makes the store of cosigned checkpoints when witnesses are
// configured; nil otherwise.
func openWitness(cfg Config, origin string, logKey crypto.PublicKey) (*witness.Store, error) {
	if len(cfg.WitnessKeys) == 0 {
		return nil, nil
	}
	lv, err := verify.CheckpointVerifier(origin, logKey)
	if err != nil {
		return nil, fmt.Errorf("witness: %w", err)
	}
	path := filepath.Join(cfg.DataDir, WitnessFile)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("witness: %w", err)
	}
	st, err := witness.NewStore(origin, lv, cfg.WitnessKeys, path)
	if err != nil {
		return nil, fmt.Errorf("witness: %w", err)
	}
	return st, nil
}

// Package witness lets monitors cosign a gatelog log's checkpoints and the
// daemon serve the latest cosigned one, as C2SP tlog-cosignature/v1
// describes: a witness that has checked that a checkpoint is consistent
// with every earlier one it saw adds its timestamped Ed25519 cosignature to
// the checkpoint note; a verifier that trusts the witness then knows the
// log showed the witness that same tree.
//
// Keys are note keys: GenerateKey makes a witness's private key (kept by
// the monitor) and its cosignature/v1 verifier key (given to the daemon and
// to anyone checking cosignatures).
package witness

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/transparency-dev/formats/log"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/gatelog/gatelog/internal/durable"
)

// ErrRejected marks a cosigned checkpoint the daemon will not keep.
var ErrRejected = errors.New("cosigned checkpoint rejected")

// GenerateKey makes a witness key named name: skey is the private key (a
// note signer key, keep it secret), vkey the cosignature/v1 verifier key.
func GenerateKey(name string) (skey, vkey string, err error) {
	skey, v, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		return "", "", err
	}
	vkey, err = fnote.VKeyToCosignatureV1(v)
	if err != nil {
		return "", "", err
	}
	return skey, vkey, nil
}

// Cosigner adds a witness's cosignature to checkpoints.
type Cosigner struct {
	s note.Signer
}

// NewCosigner loads a witness private key (GenerateKey's skey).
func NewCosigner(skey string) (*Cosigner, error) {
	s, err := fnote.NewSignerForCosignatureV1(strings.TrimSpace(skey))
	if err != nil {
		return nil, fmt.Errorf("witness key: %w", err)
	}
	return &Cosigner{s: s}, nil
}

// Name is the witness's name.
func (c *Cosigner) Name() string { return c.s.Name() }

// Cosign returns checkpoint with the witness's cosignature added. The
// checkpoint must verify with logVerifier: the caller has already checked
// it is consistent with what the witness saw before.
func (c *Cosigner) Cosign(checkpoint []byte, logVerifier note.Verifier) ([]byte, error) {
	n, err := note.Open(checkpoint, note.VerifierList(logVerifier))
	if err != nil {
		return nil, fmt.Errorf("checkpoint does not verify: %w", err)
	}
	return note.Sign(n, c.s)
}

// Store keeps the latest cosigned checkpoint of one log and serves it.
// It keeps a cosigned checkpoint only if the log's signature and at least
// one trusted witness's cosignature verify, and it is no smaller than the
// one it has.
type Store struct {
	origin    string
	log       note.Verifier
	witnesses []note.Verifier
	path      string

	mu     sync.Mutex
	latest []byte
	size   uint64
}

// NewStore makes a store for the log whose checkpoints have origin and
// verify with logVerifier, accepting cosignatures by the witnesses with
// the given cosignature/v1 verifier keys. path, if set, keeps the latest
// cosigned checkpoint across restarts.
func NewStore(origin string, logVerifier note.Verifier, witnessVKeys []string, path string) (*Store, error) {
	if len(witnessVKeys) == 0 {
		return nil, errors.New("no witness keys")
	}
	var vs []note.Verifier
	for _, k := range witnessVKeys {
		v, err := fnote.NewVerifierForCosignatureV1(strings.TrimSpace(k))
		if err != nil {
			return nil, fmt.Errorf("witness key %q: %w", k, err)
		}
		vs = append(vs, v)
	}
	s := &Store{origin: origin, log: logVerifier, witnesses: vs, path: path}
	if path != "" {
		raw, err := os.ReadFile(path)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return nil, fmt.Errorf("cosigned checkpoint: %w", err)
		default:
			// A stored checkpoint that no longer verifies (a witness
			// removed, a damaged file) is dropped, not served.
			if cp, _, err := s.check(raw); err == nil {
				s.latest, s.size = raw, cp.Size
			}
		}
	}
	return s, nil
}

// check verifies a cosigned checkpoint and returns it and the witnesses
// that cosigned it.
func (s *Store) check(raw []byte) (*log.Checkpoint, []string, error) {
	cp, _, n, err := log.ParseCheckpoint(raw, s.origin, s.log, s.witnesses...)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrRejected, err)
	}
	var names []string
	for _, sig := range n.Sigs {
		if sig.Name != s.log.Name() || sig.Hash != s.log.KeyHash() {
			names = append(names, sig.Name)
		}
	}
	if len(names) == 0 {
		return nil, nil, fmt.Errorf("%w: no cosignature by a trusted witness", ErrRejected)
	}
	return cp, names, nil
}

// Add keeps raw if it is a valid cosigned checkpoint at least as large as
// the latest; it returns the witnesses that cosigned it.
func (s *Store) Add(raw []byte) ([]string, error) {
	cp, names, err := s.check(raw)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if cp.Size < s.size {
		return nil, fmt.Errorf("%w: size %d is older than the cosigned checkpoint of size %d", ErrRejected, cp.Size, s.size)
	}
	if s.path != "" {
		if err := durable.WriteFile(s.path, raw); err != nil {
			return nil, fmt.Errorf("store cosigned checkpoint: %w", err)
		}
	}
	s.latest, s.size = raw, cp.Size
	return names, nil
}

// Latest is the latest cosigned checkpoint, nil if none.
func (s *Store) Latest() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.latest
}

// Paths the Handler serves.
const (
	// CheckpointPath: GET the latest cosigned checkpoint (text/plain,
	// 404 if none), POST a cosigned checkpoint.
	CheckpointPath = "/witness/checkpoint"
)

// maxNote bounds a posted checkpoint note.
const maxNote = 16 << 10

// Handler serves GET and POST CheckpointPath. POST needs no credentials:
// the cosignatures authenticate it.
func (s *Store) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+CheckpointPath, func(w http.ResponseWriter, r *http.Request) {
		raw := s.Latest()
		if raw == nil {
			http.Error(w, "no cosigned checkpoint yet", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write(raw)
	})
	mux.HandleFunc("POST "+CheckpointPath, func(w http.ResponseWriter, r *http.Request) {
		raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxNote))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		names, err := s.Add(raw)
		switch {
		case errors.Is(err, ErrRejected):
			http.Error(w, err.Error(), http.StatusBadRequest)
		case err != nil:
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		default:
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprintf(w, "kept, cosigned by %s\n", strings.Join(names, ", "))
		}
	})
	return mux
}

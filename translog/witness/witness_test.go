package witness_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/gatelog/gatelog/translog/verify"
	"github.com/gatelog/gatelog/translog/witness"
)

const origin = "gatelog.test/42"

// logSigner signs checkpoints as a gatelog log does (translog's note signer).
type logSigner struct{ k *ecdsa.PrivateKey }

func (s logSigner) Name() string { return origin }
func (s logSigner) KeyHash() uint32 {
	der, _ := x509.MarshalPKIXPublicKey(s.k.Public())
	sum := sha256.Sum256(der)
	return binary.BigEndian.Uint32(sum[:4])
}
func (s logSigner) Sign(msg []byte) ([]byte, error) {
	d := sha256.Sum256(msg)
	return s.k.Sign(rand.Reader, d[:], crypto.SHA256)
}

func checkpoint(t *testing.T, s logSigner, size uint64) []byte {
	t.Helper()
	root := sha256.Sum256(fmt.Appendf(nil, "root %d", size))
	raw, err := note.Sign(&note.Note{Text: fmt.Sprintf("%s\n%d\n%s\n", origin, size, base64.StdEncoding.EncodeToString(root[:]))}, s)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestCosignAndStore(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ls := logSigner{k}
	lv, err := verify.CheckpointVerifier(origin, k.Public())
	if err != nil {
		t.Fatal(err)
	}
	skey, vkey, err := witness.GenerateKey("witness.example")
	if err != nil {
		t.Fatal(err)
	}
	otherSkey, _, _ := witness.GenerateKey("stranger.example")
	w, err := witness.NewCosigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	stranger, _ := witness.NewCosigner(otherSkey)
	path := filepath.Join(t.TempDir(), "cosigned")
	st, err := witness.NewStore(origin, lv, []string{vkey}, path)
	if err != nil {
		t.Fatal(err)
	}

	cp5, err := w.Cosign(checkpoint(t, ls, 5), lv)
	if err != nil {
		t.Fatal(err)
	}
	if names, err := st.Add(cp5); err != nil || len(names) != 1 || names[0] != "witness.example" {
		t.Fatalf("Add = %v, %v", names, err)
	}
	if !strings.HasPrefix(string(st.Latest()), origin+"\n5\n") || strings.Count(string(st.Latest()), "\n— ") != 2 {
		t.Fatalf("latest:\n%s", st.Latest())
	}

	byStranger, _ := stranger.Cosign(checkpoint(t, ls, 6), lv)
	tampered := []byte(strings.Replace(string(cp5), "\n5\n", "\n7\n", 1))
	older, _ := w.Cosign(checkpoint(t, ls, 4), lv)
	otherLog, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	forged, _ := w.Cosign(checkpoint(t, logSigner{otherLog}, 9), mustVerifier(t, otherLog))
	for name, raw := range map[string][]byte{
		"uncosigned":             checkpoint(t, ls, 6),
		"cosigned by a stranger": byStranger,
		"tampered":               tampered,
		"older":                  older,
		"another log's":          forged,
	} {
		if _, err := st.Add(raw); err == nil {
			t.Errorf("%s checkpoint kept", name)
		}
	}
	if _, err := w.Cosign(tampered, lv); err == nil {
		t.Error("the witness cosigned a checkpoint the log did not sign")
	}

	reopened, err := witness.NewStore(origin, lv, []string{vkey}, path)
	if err != nil {
		t.Fatal(err)
	}
	if string(reopened.Latest()) != string(cp5) {
		t.Errorf("after a restart the store serves\n%s", reopened.Latest())
	}
}

func mustVerifier(t *testing.T, k *ecdsa.PrivateKey) note.Verifier {
	v, err := verify.CheckpointVerifier(origin, k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

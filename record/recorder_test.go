package record_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/transparency-dev/tessera/storage/posix"

	"github.com/gatelog/gatelog/record"
	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/record/receipt"
	"github.com/gatelog/gatelog/translog"
	"github.com/gatelog/gatelog/translog/entry"
)

// openRecorder opens a real log (Tessera POSIX in dir) and a Recorder on
// it with a fresh signing key, reporting outcomes to observe.
func openRecorder(dir string, observe func(record.Outcome)) (*record.Recorder, func(), error) {
	logKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	decKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	driver, err := posix.New(context.Background(), posix.Config{Path: translog.TilesDir(dir)})
	if err != nil {
		return nil, nil, err
	}
	lg, err := translog.Open(context.Background(), translog.Config{Dir: dir, Driver: driver, Key: logKey, CheckpointInterval: 100 * time.Millisecond})
	if err != nil {
		return nil, nil, err
	}
	sv, err := signature.LoadECDSASignerVerifier(decKey, crypto.SHA256)
	if err != nil {
		return nil, nil, err
	}
	signer, err := receipt.NewSigner(sv)
	if err != nil {
		return nil, nil, err
	}
	pem, err := entry.PublicKeyPEM(decKey.Public())
	if err != nil {
		return nil, nil, err
	}
	r, err := record.New(record.Config{Log: lg, Signer: signer, SignerPEM: pem, Timeout: 10 * time.Second, Observe: observe, Version: "example"})
	if err != nil {
		return nil, nil, err
	}
	return r, func() { _ = lg.Close(context.Background()) }, nil
}

// A decision and an event go through the same path; only the decision can
// be an allow.
func Example() {
	dir, _ := os.MkdirTemp("", "record-example")
	defer os.RemoveAll(dir)
	r, closeLog, err := openRecorder(filepath.Join(dir, "log"), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer closeLog()
	ctx := context.Background()
	allowed, err := r.Record(ctx, decision.Record{
		Request:  decision.Request{Action: "deploy", Subject: decision.Subject{ID: "alice", Verified: true}},
		Decision: decision.Decision{Allow: true, Reasons: []string{"release manager"}},
	}, false)
	if err != nil {
		fmt.Println(err)
		return
	}
	event, err := r.Record(ctx, decision.Record{
		Kind:    decision.KindEvent,
		Request: decision.Request{Action: "event.login", Subject: decision.Subject{ID: "alice", Verified: true}},
		Event:   &decision.Event{Type: "login", Message: "alice logged in"},
	}, false)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, rc := range []decision.Receipt{allowed, event} {
		fmt.Println(rc.Kind, rc.Allow, rc.Reasons, rc.LogIndex)
	}
	// Output:
	// decision true [release manager] 0
	// event false [alice logged in] 1
}

// A caller that hangs up does not cancel its record: it is logged (and
// no failure is reported), not abandoned half-way.
func TestCallerCancellationIsNotAFailure(t *testing.T) {
	var outcomes []record.Outcome
	r, closeLog, err := openRecorder(filepath.Join(t.TempDir(), "log"), func(o record.Outcome) { outcomes = append(outcomes, o) })
	if err != nil {
		t.Fatal(err)
	}
	defer closeLog()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rc, err := r.Record(ctx, decision.Record{Request: decision.Request{Action: "deploy"}, Decision: decision.Decision{Reasons: []string{"no"}}}, true)
	if err != nil || rc.LogIndex != 0 || rc.Kind != decision.KindDecision {
		t.Fatalf("record with the caller gone: %+v %v", rc, err)
	}
	if len(outcomes) != 1 || outcomes[0].Stage != "" || outcomes[0].LogFailed() {
		t.Fatalf("outcomes: %+v", outcomes)
	}
	// A record that cannot be signed as what it says is refused, and
	// reported as a signing failure.
	_, err = r.Record(context.Background(), decision.Record{Kind: decision.KindEvent, Request: decision.Request{Action: "event.x"}}, false)
	if !errors.Is(err, record.ErrNotLogged) || !errors.Is(err, receipt.ErrInvalid) || outcomes[len(outcomes)-1].Stage != record.StageSign {
		t.Fatalf("an event without its event part: %v, outcome %+v", err, outcomes[len(outcomes)-1])
	}
}

// hungSigner is a signer from outside the process (as a KMS client is)
// whose calls never return until released: the Recorder must answer
// ErrNotLogged at its timeout, not wait for it.
type hungSigner struct {
	signature.Signer
	release chan struct{}
}

func (h hungSigner) SignMessage(io.Reader, ...signature.SignOption) ([]byte, error) {
	<-h.release
	return nil, errors.New("released")
}

// A signer outside the process that hangs fails the record at the
// Recorder's timeout; the log is left alone.
func TestHungSignerFailsAtTheTimeout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "log")
	logKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	driver, err := posix.New(context.Background(), posix.Config{Path: translog.TilesDir(dir)})
	if err != nil {
		t.Fatal(err)
	}
	lg, err := translog.Open(context.Background(), translog.Config{Dir: dir, Driver: driver, Key: logKey})
	if err != nil {
		t.Fatal(err)
	}
	defer lg.Close(context.Background())
	decKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sv, err := signature.LoadECDSASignerVerifier(decKey, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	hung := hungSigner{Signer: sv, release: make(chan struct{})}
	defer close(hung.release)
	signer, err := receipt.NewSigner(hung)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := entry.PublicKeyPEM(decKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	r, err := record.New(record.Config{Log: lg, Signer: signer, SignerPEM: pem, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = r.Record(context.Background(), decision.Record{Request: decision.Request{Action: "deploy"}}, false)
	if !errors.Is(err, record.ErrNotLogged) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("record with a hung signer: %v, want ErrNotLogged and DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("answered after %s, the timeout is 200ms", d)
	}
	if n, err := lg.Size(context.Background()); err != nil || n != 0 {
		t.Errorf("log holds %d entries after a failed signature (%v)", n, err)
	}
}

// Package record is the one path by which anything enters the log: the
// Recorder signs a record, appends it durably, queues its alerts, reports
// the outcome (metrics, readiness, fail-closed alarms) and returns the
// receipt. Every entry point of the daemon — /v1/decide, the CI adapters,
// the webhooks, /v1/events, API key and signer administration, policy
// loads — records through it, so all of them fail the same way: closed.
//
// The record types live in record/decision (what a record says) and
// record/receipt (how it is signed); this package joins them to the log.
package record

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/record/receipt"
	"github.com/gatelog/gatelog/translog"
)

// ErrNotLogged means a record could not be signed or made durable in the
// log. For a decision it means deny: the caller must not act on it.
var ErrNotLogged = errors.New("not logged, so denied")

// Stages of recording, as an Outcome names the one that failed.
const (
	StageSign   = "sign"
	StageAppend = "append"
)

// Log is what the Recorder needs of the transparency log (translog.Log).
type Log interface {
	// AppendEnvelope logs a signed envelope given with its parts.
	AppendEnvelope(ctx context.Context, key string, env translog.Envelope, signerPEM []byte) (translog.Entry, error)
	InclusionProof(ctx context.Context, index int64, wait bool) (translog.Proof, error)
	LogID() string
}

// Outcome is what became of one record, for whoever watches (metrics,
// readiness, the fail-closed alarm).
type Outcome struct {
	Record decision.Record
	// Entry is the record's log entry; zero when Stage is StageSign or
	// StageAppend.
	Entry translog.Entry
	// Stage is the stage that failed, "" when the record is logged and its
	// alerts are queued; Err says why.
	Stage string
	Err   error
	// Sign and Append are how long each stage took.
	Sign, Append time.Duration
}

// LogFailed reports whether the outcome says something about the log's
// health: an append that failed. (Signing and the alert outbox are not
// the log.)
func (o Outcome) LogFailed() bool { return o.Stage == StageAppend }

// Config configures a Recorder. Log, Signer and SignerPEM are required.
type Config struct {
	Log Log
	// Signer signs every record; SignerPEM is its public key as logged.
	Signer    *receipt.Signer
	SignerPEM []byte
	// Timeout bounds signing and appending together (default 10s): a hung
	// signer or log answers ErrNotLogged in time, never an allow.
	Timeout time.Duration
	// Queue is handed every logged record, to pass its alerts on to the
	// outbox; nil when there is no outbox. It must not make the reply wait
	// for a second durable write: the log holds the alerts already, and
	// whatever Queue misses is taken from the log (alerts.Service.FromLog).
	Queue func(rec decision.Record, e translog.Entry)
	// Observe is told every outcome; nil ignores them.
	Observe func(Outcome)
	// Now is the clock for record times (default time.Now).
	Now func() time.Time
	// Version is the daemon's version, recorded in every record.
	Version string
}

// Recorder records. It is safe for concurrent use.
type Recorder struct {
	cfg Config
}

// New returns a Recorder.
func New(cfg Config) (*Recorder, error) {
	if cfg.Log == nil || cfg.Signer == nil || len(cfg.SignerPEM) == 0 {
		return nil, errors.New("record: Log, Signer and SignerPEM are required")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Recorder{cfg: cfg}, nil
}

// NewID names a record with a time-ordered UUID (version 7, RFC 9562):
// record IDs sort by when they were made, and the log's map from ID to
// entry takes each new one at its right edge.
func NewID() string { return uuid.Must(uuid.NewV7()).String() }

// Now is the Recorder's clock.
func (r *Recorder) Now() time.Time { return r.cfg.Now() }

// Record signs rec, appends it to the log, queues its alerts and returns
// its receipt, once the entry is durably sequenced; with wait, also its
// inclusion proof when the log gives one within the timeout. rec.Kind
// defaults to a decision, rec.DecisionID to a new ID, rec.Time to now.
//
// A caller that hangs up does not cancel a record half-way: signing and
// appending run to completion (or to the timeout) on their own deadline,
// so a cancelled request is never a log failure. Any error wraps
// ErrNotLogged and means deny.
func (r *Recorder) Record(ctx context.Context, rec decision.Record, wait bool) (decision.Receipt, error) {
	if rec.Kind == "" {
		rec.Kind = decision.KindDecision
	}
	if rec.DecisionID == "" {
		rec.DecisionID = NewID()
	}
	if rec.Time == "" {
		rec.Time = r.cfg.Now().UTC().Format(time.RFC3339Nano)
	}
	rec.Daemon.Version = r.cfg.Version
	out := Outcome{Record: rec}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.Timeout)
	defer cancel()

	start := time.Now()
	signed, err := r.sign(dctx, rec)
	out.Sign = time.Since(start)
	if err != nil {
		return r.fail(out, StageSign, err)
	}
	start = time.Now()
	e, err := r.cfg.Log.AppendEnvelope(dctx, rec.DecisionID, translog.Envelope{
		JSON: signed.Envelope, Payload: signed.Statement,
		Signatures: []string{signed.Signature}, SubjectDigests: []string{signed.SubjectDigest},
	}, r.cfg.SignerPEM)
	out.Append = time.Since(start)
	if err != nil {
		return r.fail(out, StageAppend, err)
	}
	out.Entry = e
	if r.cfg.Queue != nil {
		r.cfg.Queue(rec, e)
	}
	r.observe(out)
	rc := Receipt(e, rec, r.cfg.Log.LogID())
	if wait {
		pctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
		defer cancel()
		// The record is logged; a late proof is no failure, and the caller
		// fetches it later from GET /v1/decisions/{id}.
		if p, err := r.cfg.Log.InclusionProof(pctx, e.Index, true); err == nil {
			rc.InclusionProof = ProofJSON(p)
		}
	}
	return rc, nil
}

// sign runs the signer under ctx's deadline. A signer that honours the
// context (KMS) stops; one that does not is left to finish on its own,
// and the record is not logged. A key held in this process signs on the
// caller's goroutine: it cannot hang, and handing every decision to a new
// goroutine and back cost a wait for a processor each way under load
// (and a copy of the record for the closure).
func (r *Recorder) sign(ctx context.Context, rec decision.Record) (receipt.Signed, error) {
	if r.cfg.Signer.InProcess() {
		return r.cfg.Signer.SignRecord(ctx, rec)
	}
	return r.signAsync(ctx, rec)
}

// signAsync is sign for a signer that may hang. (Apart from sign, so the
// record is copied to the heap for the goroutine only on this path.)
func (r *Recorder) signAsync(ctx context.Context, rec decision.Record) (receipt.Signed, error) {
	type result struct {
		signed receipt.Signed
		err    error
	}
	done := make(chan result, 1)
	go func() {
		signed, err := r.cfg.Signer.SignRecord(ctx, rec)
		done <- result{signed, err}
	}()
	select {
	case res := <-done:
		return res.signed, res.err
	case <-ctx.Done():
		return receipt.Signed{}, fmt.Errorf("signing did not finish within %s: %w", r.cfg.Timeout, ctx.Err())
	}
}

func (r *Recorder) fail(out Outcome, stage string, err error) (decision.Receipt, error) {
	out.Stage, out.Err = stage, err
	r.observe(out)
	return decision.Receipt{}, fmt.Errorf("%w: %s %s: %s failed: %w", ErrNotLogged, out.Record.Kind, out.Record.DecisionID, stage, err)
}

func (r *Recorder) observe(out Outcome) {
	if r.cfg.Observe != nil {
		r.cfg.Observe(out)
	}
}

// Receipt is the receipt of a logged record: its outcome (an allow only
// for a decision that allowed), where it is in the log and the signed
// material to verify it offline.
func Receipt(e translog.Entry, rec decision.Record, logID string) decision.Receipt {
	rc := decision.Receipt{
		DecisionID: rec.DecisionID, Kind: rec.Kind, Allow: rec.Allowed(), Reasons: rec.Reasons(), Alerts: rec.Alerts(),
		LogIndex: e.Index, UUID: e.UUID, IntegratedTime: e.IntegratedTime, LogID: logID,
		SignedEntryTimestamp: e.SignedEntryTimestamp, Envelope: e.Envelope,
	}
	return rc
}

// ProofJSON is an inclusion proof as a receipt carries it (hex hashes, as
// in Rekor).
func ProofJSON(p translog.Proof) *decision.InclusionProof {
	hashes := make([]string, len(p.Hashes))
	for i, h := range p.Hashes {
		hashes[i] = hex.EncodeToString(h)
	}
	return &decision.InclusionProof{
		LogIndex: p.Index, TreeSize: p.TreeSize, RootHash: hex.EncodeToString(p.RootHash),
		Hashes: hashes, Checkpoint: string(p.Checkpoint),
	}
}

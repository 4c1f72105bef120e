package main

import (
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/urfave/cli/v2"

	"github.com/gatelog/gatelog/record/receipt"
	"github.com/gatelog/gatelog/translog/entry"
	"github.com/gatelog/gatelog/translog/monitor"
	"github.com/gatelog/gatelog/translog/rekorapi"
	"github.com/gatelog/gatelog/translog/verify"
)

// readClientFlags are the connection flags of commands that read the log:
// the public view (leaves, proofs, SETs) needs no credential; the records
// (signed envelopes) need an API key with the read permission unless the
// daemon runs with --public-records.
func readClientFlags() []cli.Flag {
	return clientFlags("API key with the read permission, to see and check the records (envelopes) of a log that keeps them private")
}

// privateHint is what to tell someone who ran without a read key.
const privateHint = "records are private: give an API key with the read permission (--api-key-file or GATELOG_API_KEY)"

// auditorFlags are the flags of commands that check a log with its keys:
// --log-key and --signer-keys (pinned; without them the keys are pinned on
// first use), the connection, and where the last checkpoint is kept.
func auditorFlags() []cli.Flag {
	return append(append([]cli.Flag{
		&cli.StringFlag{Name: "state-dir", Usage: "where the last checkpoint seen is kept (default $XDG_CONFIG_HOME/gatelog/state)"},
		&cli.BoolFlag{Name: "json", Usage: "print JSON"},
		pinFileFlag,
	}, keyFlags()...), readClientFlags()...)
}

func logCommand() *cli.Command {
	return &cli.Command{
		Name:  "log",
		Usage: "audit a gatelog transparency log with only its public keys; exit 3 when anything does not verify",
		Description: "Every entry read is checked with --log-key: its leaf and UUID, SET, inclusion proof to a signed\n" +
			"checkpoint; with --signer-keys (the key set, gatelog keys signers --out) also that it names the signing\n" +
			"key valid when it was logged and, with the record, that its signature verifies. Without --log-key the\n" +
			"keys are pinned on first use as gatelog decide does (--pin-file), and a key set that grew by a rotation\n" +
			"is pinned when it keeps every pinned key.\n\n" + connectionHelp,
		Subcommands: append([]*cli.Command{
			{
				Name:   "info",
				Usage:  "verify the latest checkpoint and that it extends the last one this client saw",
				Flags:  auditorFlags(),
				Action: logInfo,
			},
			{
				Name:  "get",
				Usage: "fetch one entry, verify its proofs and print the decision",
				Flags: append(auditorFlags(),
					&cli.Int64Flag{Name: "index", Value: -1, Usage: "log index"},
					&cli.StringFlag{Name: "uuid", Usage: "entry UUID"}),
				Action: logGet,
			},
			{
				Name:   "proof",
				Usage:  "print and verify the inclusion proof of an entry",
				Flags:  append(auditorFlags(), &cli.Int64Flag{Name: "index", Required: true, Usage: "log index"}),
				Action: logProof,
			},
			{
				Name:  "consistency",
				Usage: "prove the tree of size --from is a prefix of the tree of size --to (default: the latest checkpoint)",
				Flags: append(auditorFlags(),
					&cli.Uint64Flag{Name: "from", Required: true, Usage: "older tree size"},
					&cli.Uint64Flag{Name: "to", Usage: "newer tree size (default: the latest checkpoint's)"}),
				Action: logConsistency,
			},
		}, append(bundleCommands(), witnessKeyCommand())...),
	}
}

type auditor struct {
	c        *cli.Context
	v        *verify.Verifier
	logKey   crypto.PublicKey
	follower *monitor.Follower
	rekor    *rekorapi.Client
	client   *client
	stateDir string
	pins     *pinSession // keys pinned on first use; nil when pinned by flags
}

func newAuditor(c *cli.Context) (*auditor, error) {
	a := &auditor{c: c, stateDir: c.String("state-dir")}
	var err error
	if a.client, err = newClient(c, false); err != nil {
		return nil, err
	}
	if c.String("log-key") != "" {
		a.v, err = pinnedVerifier(c, false)
	} else {
		a.v, a.pins, err = pinOnFirstUse(c, a.client, c.App.ErrWriter, true)
	}
	if err != nil {
		return nil, err
	}
	a.logKey = a.v.LogKey()
	if a.stateDir == "" {
		if a.stateDir, err = monitor.StateDir(); err != nil {
			return nil, fmt.Errorf("no state directory (set --state-dir): %w", err)
		}
	}
	a.follower, err = monitor.New(monitor.Config{Server: a.client.URL(), Verifier: a.v, Bearer: a.client.key, HTTPClient: a.client.HTTPClient()})
	if err != nil {
		return nil, fmt.Errorf("--server: %w", err)
	}
	if a.rekor, err = rekorapi.NewClient(a.client.URL(), a.client.HTTPClient(), rekorapi.WithBearer(a.client.key)); err != nil {
		return nil, fmt.Errorf("--server: %w", err)
	}
	return a, nil
}

// refreshPins re-fetches the keys pinned on first use after an entry named
// a signing key not pinned (a rotation since): it reports whether the
// verifier changed, so the check is worth repeating.
func (a *auditor) refreshPins(err error) (bool, error) {
	if a.pins == nil || !errors.Is(err, verify.ErrUnknownKey) {
		return false, nil
	}
	v, rerr := a.pins.refresh()
	if rerr != nil {
		return false, rerr
	}
	if err := a.follower.SetVerifier(v); err != nil {
		return false, err
	}
	a.v = v
	return true, nil
}

// auditFail turns an *monitor.Alarm into a loud report with both
// checkpoints and exit status 3; anything else is returned as it is.
func auditFail(w io.Writer, err error) error {
	var al *monitor.Alarm
	if !errors.As(err, &al) {
		return err
	}
	fmt.Fprintf(w, "!!! ALARM: the log misbehaved: %s\n", printable(al.Error()))
	if al.Old != nil {
		fmt.Fprintf(w, "--- last checkpoint this client trusted ---\n%s", printableLines(al.Old))
	}
	if al.New != nil {
		fmt.Fprintf(w, "--- checkpoint the log serves now ---\n%s", printableLines(al.New))
	}
	return &exitErr{code: exitVerify, err: errors.New("")}
}

func logInfo(c *cli.Context) error {
	a, err := newAuditor(c)
	if err != nil {
		return err
	}
	ctx := c.Context
	raw, cp, err := a.follower.FetchCheckpoint(ctx)
	if err != nil {
		return auditFail(c.App.ErrWriter, err)
	}
	old, err := monitor.LoadState(a.stateDir, cp.Origin)
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	consistency := "first time this client sees this log: nothing to compare with yet"
	if old != nil {
		if err := a.follower.Consistent(ctx, old, raw); err != nil {
			return auditFail(c.App.ErrWriter, err)
		}
		oc, _ := a.v.Checkpoint(old)
		consistency = fmt.Sprintf("consistent with the checkpoint of size %d this client saw before", oc.Size)
	}
	envs, err := a.follower.CheckLatest(ctx, raw, cp)
	if err != nil {
		return auditFail(c.App.ErrWriter, err)
	}
	if err := monitor.SaveState(a.stateDir, cp.Origin, raw); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	if c.Bool("json") {
		return printAuditJSON(c, map[string]any{
			"origin": cp.Origin, "tree_size": cp.Size, "root_hash": hex.EncodeToString(cp.Hash),
			"checkpoint": string(raw), "consistency": consistency,
			"envelopes_checked": envs.Checked, "envelopes_private": envs.Private,
		})
	}
	w := c.App.Writer
	fmt.Fprintf(w, "VERIFIED  log %s\n", cp.Origin)
	fmt.Fprintf(w, "  tree size %d, root %x\n", cp.Size, cp.Hash)
	fmt.Fprintf(w, "  checkpoint signed by the log key\n")
	fmt.Fprintf(w, "  %s\n", consistency)
	fmt.Fprintf(w, "  the tiles reproduce the root; the last entry bundle re-hashes into them\n")
	fmt.Fprintf(w, "  last entry bundle: %s\n", envs.Describe(a.follower.SigningKeys()))
	return nil
}

func printAuditJSON(c *cli.Context, v any) error {
	enc := json.NewEncoder(c.App.Writer)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// checkedEntry is an entry whose every proof verified.
type checkedEntry struct {
	UUID  string                `json:"uuid"`
	Entry rekorapi.LogEntryAnon `json:"entry"`
	// Record is the signed decision record (the in-toto statement); null
	// when the log keeps records private and no read key was given.
	Record json.RawMessage `json:"record"`
	// RecordPrivate says the record was neither shown nor checked: the
	// log keeps records private and no read key was given.
	RecordPrivate bool `json:"record_private,omitempty"`
	// SignatureChecked says whether the envelope signature was verified
	// (it is when --signer-keys is given and the record was read).
	SignatureChecked bool `json:"signature_checked"`
	// SignerKeyID is the signing key the entry names, checked against the
	// key set and its validity window (with --signer-keys, record or not).
	SignerKeyID string `json:"signer_key_id,omitempty"`
}

// fetchChecked fetches an entry by index or UUID and verifies everything
// the keys can: leaf hash and UUID, SET, inclusion proof to a signed
// checkpoint of this log, and, with the record, that the envelope is the
// one the body commits to; with the key set, that the entry names a key
// valid when it was logged and the record's signature. A log that keeps
// records private gives none without a read key: then the entry is checked
// as far as its leaf goes and RecordPrivate says so.
func (a *auditor) fetchChecked(index int64, uuid string) (checkedEntry, *verifiedProof, error) {
	ctx := a.c.Context
	var (
		id  string
		e   rekorapi.LogEntryAnon
		err error
	)
	if uuid != "" {
		id, e, err = a.rekor.EntryByUUID(ctx, uuid)
	} else {
		id, e, err = a.rekor.EntryByIndex(ctx, index)
	}
	if err != nil {
		return checkedEntry{}, nil, err
	}
	bad := func(err error) error {
		return &monitor.Alarm{Kind: monitor.BadEntry, Detail: fmt.Sprintf("entry %s: %v", id, err), Err: err}
	}
	badf := func(format string, args ...any) error { return bad(fmt.Errorf(format, args...)) }
	body, err := base64.StdEncoding.DecodeString(e.Body)
	if err != nil {
		return checkedEntry{}, nil, badf("body is not base64")
	}
	leaf := entry.LeafHash(body)
	if want := entry.UUID(a.v.TreeID(), leaf); id != want || (uuid != "" && !strings.HasSuffix(want, uuid)) {
		return checkedEntry{}, nil, badf("the body hashes to UUID %s", want)
	}
	if uuid == "" && e.LogIndex != index {
		return checkedEntry{}, nil, badf("asked for index %d, got %d", index, e.LogIndex)
	}
	if e.Verification == nil || e.Verification.InclusionProof == nil {
		return checkedEntry{}, nil, badf("no inclusion proof")
	}
	vp, err := a.checkInclusion(e.Verification.InclusionProof, leaf)
	if err != nil {
		return checkedEntry{}, nil, bad(err)
	}
	if vp.index != e.LogIndex {
		return checkedEntry{}, nil, badf("the proof is for index %d", vp.index)
	}
	out := checkedEntry{UUID: id, Entry: e}
	env, err := a.rekor.Envelope(e)
	if errors.Is(err, rekorapi.ErrRecordsPrivate) {
		out.RecordPrivate = true
	} else if err != nil {
		return checkedEntry{}, nil, bad(err)
	}
	res, err := a.v.Entry(verify.Entry{Body: body, LogIndex: e.LogIndex, IntegratedTime: e.IntegratedTime, LogID: e.LogID, SET: e.Verification.SignedEntryTimestamp, Envelope: env})
	if err != nil {
		return checkedEntry{}, nil, bad(err)
	}
	out.SignerKeyID = res.KeyID
	if out.RecordPrivate {
		return out, vp, nil
	}
	out.SignatureChecked = res.Statement != nil
	pe, err := receipt.ParseEnvelope(env)
	if err != nil {
		return checkedEntry{}, nil, bad(err)
	}
	payload, err := base64.StdEncoding.DecodeString(pe.Payload)
	if err != nil {
		return checkedEntry{}, nil, badf("envelope payload is not base64")
	}
	out.Record = payload
	return out, vp, nil
}

type verifiedProof struct {
	index, size int64
	hashes      []string
	origin      string
}

func (a *auditor) checkInclusion(p *rekorapi.InclusionProof, leaf []byte) (*verifiedProof, error) {
	root, err := hex.DecodeString(p.RootHash)
	if err != nil {
		return nil, &verify.CheckError{Check: verify.CheckInclusion, Detail: "root is not hex"}
	}
	hashes := make([][]byte, len(p.Hashes))
	for i, h := range p.Hashes {
		if hashes[i], err = hex.DecodeString(h); err != nil {
			return nil, &verify.CheckError{Check: verify.CheckInclusion, Detail: fmt.Sprintf("hash %d is not hex", i)}
		}
	}
	if p.LogIndex < 0 || p.TreeSize <= p.LogIndex {
		return nil, &verify.CheckError{Check: verify.CheckInclusion, Detail: fmt.Sprintf("index %d is outside tree size %d", p.LogIndex, p.TreeSize)}
	}
	cp, err := a.v.Inclusion([]byte(p.Checkpoint), uint64(p.LogIndex), uint64(p.TreeSize), root, leaf, hashes)
	if err != nil {
		return nil, err
	}
	return &verifiedProof{index: p.LogIndex, size: p.TreeSize, hashes: p.Hashes, origin: cp.Origin}, nil
}

func logGet(c *cli.Context) error {
	a, err := newAuditor(c)
	if err != nil {
		return err
	}
	if (c.Int64("index") < 0) == (c.String("uuid") == "") {
		return fmt.Errorf("give exactly one of --index N or --uuid U")
	}
	ce, vp, err := a.fetchChecked(c.Int64("index"), c.String("uuid"))
	if err != nil {
		return auditFail(c.App.ErrWriter, err)
	}
	if c.Bool("json") {
		return printAuditJSON(c, ce)
	}
	w := c.App.Writer
	if ce.RecordPrivate {
		fmt.Fprintf(w, "VERIFIED  entry %d  %s (its leaf: the record is not shown)\n", ce.Entry.LogIndex, ce.UUID)
		fmt.Fprintf(w, "  logged %s\n", time.Unix(ce.Entry.IntegratedTime, 0).UTC().Format(time.RFC3339))
		fmt.Fprintf(w, "  in log %q at index %d of %d: inclusion proof, checkpoint signature and SET OK\n", vp.origin, vp.index, vp.size)
		if ce.SignerKeyID != "" {
			fmt.Fprintf(w, "  the entry names signing key %.16s…, valid when it was logged\n", ce.SignerKeyID)
		}
		fmt.Fprintf(w, "  record not shown, envelope not checked: %s\n", privateHint)
		return nil
	}
	// The payload was checked against the entry above; read it as the
	// record it is (its kind comes from the signed predicate type).
	st, _ := receipt.ParseStatement(ce.Record)
	rec := st.Predicate
	fmt.Fprintf(w, "VERIFIED  entry %d  %s\n", ce.Entry.LogIndex, ce.UUID)
	fmt.Fprintf(w, "  %s %s: %s %s by %s", printable(rec.Kind), printable(rec.DecisionID), strings.ToUpper(recordOutcome(rec)), printable(rec.Request.Action), printable(rec.Request.Subject.ID))
	if r := rec.Request.Resource; r.Name != "" || r.Environment != "" || r.Repository != "" {
		fmt.Fprintf(w, " on %s", printable(strings.Trim(strings.Join([]string{r.System, r.Repository, r.Name, r.Environment}, " "), " ")))
	}
	fmt.Fprintln(w)
	for _, r := range rec.Reasons() {
		fmt.Fprintf(w, "  reason: %s\n", printable(r))
	}
	fmt.Fprintf(w, "  at %s, logged %s\n", printable(rec.Time), time.Unix(ce.Entry.IntegratedTime, 0).UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "  policy sha256 %s\n", printable(rec.Policy.SHA256))
	fmt.Fprintf(w, "  in log %q at index %d of %d: inclusion proof, checkpoint signature and SET OK\n", vp.origin, vp.index, vp.size)
	if ce.SignatureChecked {
		fmt.Fprintf(w, "  envelope signature OK (signing key %.16s…, valid when it was logged)\n", ce.SignerKeyID)
	} else {
		fmt.Fprintln(w, "  envelope matches the logged body (give --signer-keys to verify its signature)")
	}
	return nil
}

func logProof(c *cli.Context) error {
	a, err := newAuditor(c)
	if err != nil {
		return err
	}
	ce, vp, err := a.fetchChecked(c.Int64("index"), "")
	if err != nil {
		return auditFail(c.App.ErrWriter, err)
	}
	if c.Bool("json") {
		return printAuditJSON(c, ce.Entry.Verification.InclusionProof)
	}
	w := c.App.Writer
	fmt.Fprintf(w, "VERIFIED  entry %d is in the tree of size %d of log %q\n", vp.index, vp.size, vp.origin)
	fmt.Fprintf(w, "  leaf hash %x\n", entryLeaf(ce.Entry.Body))
	for i, h := range vp.hashes {
		fmt.Fprintf(w, "  hash %d: %s\n", i, h)
	}
	fmt.Fprintf(w, "  root %s (signed checkpoint)\n", ce.Entry.Verification.InclusionProof.RootHash)
	return nil
}

func entryLeaf(b64 string) []byte {
	body, _ := base64.StdEncoding.DecodeString(b64)
	return entry.LeafHash(body)
}

func logConsistency(c *cli.Context) error {
	a, err := newAuditor(c)
	if err != nil {
		return err
	}
	ctx := c.Context
	raw, cp, err := a.follower.FetchCheckpoint(ctx)
	if err != nil {
		return auditFail(c.App.ErrWriter, err)
	}
	from, to := c.Uint64("from"), c.Uint64("to")
	if to == 0 {
		to = cp.Size
	}
	if from < 1 || from > to || to > cp.Size {
		return fmt.Errorf("want 1 <= --from (%d) <= --to (%d) <= tree size %d", from, to, cp.Size)
	}
	old, err := a.rekor.ConsistencyProof(ctx, int64(from), int64(from))
	if err != nil {
		return err
	}
	p, err := a.rekor.ConsistencyProof(ctx, int64(from), int64(to))
	if err != nil {
		return err
	}
	if to == cp.Size && p.RootHash != hex.EncodeToString(cp.Hash) {
		return auditFail(c.App.ErrWriter, &monitor.Alarm{Kind: monitor.Fork, New: raw, Detail: fmt.Sprintf("the proof endpoint's root for size %d is %s, the signed checkpoint says %x", to, p.RootHash, cp.Hash)})
	}
	oldRoot, _ := hex.DecodeString(old.RootHash)
	newRoot, _ := hex.DecodeString(p.RootHash)
	hashes := make([][]byte, len(p.Hashes))
	for i, h := range p.Hashes {
		if hashes[i], err = hex.DecodeString(h); err != nil {
			return auditFail(c.App.ErrWriter, &monitor.Alarm{Kind: monitor.Fork, Detail: "consistency proof hash is not hex"})
		}
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, from, to, hashes, oldRoot, newRoot); err != nil {
		return auditFail(c.App.ErrWriter, &monitor.Alarm{Kind: monitor.Fork, New: raw, Detail: err.Error()})
	}
	if c.Bool("json") {
		return printAuditJSON(c, map[string]any{"from": from, "to": to, "from_root": old.RootHash, "to_root": p.RootHash, "hashes": p.Hashes})
	}
	w := c.App.Writer
	fmt.Fprintf(w, "VERIFIED  the tree of size %d (root %s) is a prefix of the tree of size %d (root %s)\n", from, old.RootHash, to, p.RootHash)
	fmt.Fprintf(w, "  consistency proof of %d hashes OK", len(hashes))
	if to == cp.Size {
		fmt.Fprintf(w, "; size %d is the latest signed checkpoint\n", to)
	} else {
		fmt.Fprintf(w, "; compare both roots with checkpoints you hold\n")
	}
	return nil
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

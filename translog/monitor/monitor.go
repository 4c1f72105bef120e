// Package monitor follows a gatelog log from the outside, holding only its
// public key: every new checkpoint must verify and extend the last one, and
// every new entry is re-hashed from the entry bundles into the tree root.
//
// It reads the C2SP tlog-tiles endpoints (/checkpoint, /tile/...) and,
// to check each entry's SET, signing key and envelope, the Rekor v1 API;
// entries are checked with a translog/verify Verifier, so with the
// daemon's signing key set each entry must be signed by the key valid when
// it was logged. Misbehaviour is an *Alarm.
//
// A log keeps its records (the envelopes) private unless its operator
// publishes them: without a read credential the monitor checks everything
// the leaves allow (consistency, leaf hashes, that each entry names the
// expected signer key) and counts the envelopes it could not check in
// Envelopes.Private. That is reported, never an alarm and never a pass.
package monitor

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"

	"github.com/gatelog/gatelog/internal/durable"
	"github.com/gatelog/gatelog/translog/entry"
	"github.com/gatelog/gatelog/translog/rekorapi"
	"github.com/gatelog/gatelog/translog/verify"
)

// Alarm kinds.
const (
	BadCheckpoint = "bad checkpoint" // not signed by the log key, or not this log's
	Rollback      = "rollback"       // the tree shrank
	Fork          = "fork"           // the new tree does not extend the old one
	BadEntry      = "bad entry"      // an entry does not hash into the tree, or its envelope does not verify
)

// Alarm reports a log that broke its promises, with the evidence.
type Alarm struct {
	Kind string
	// Old is the last checkpoint this client trusted, New the offending one
	// (either may be nil).
	Old, New []byte
	Detail   string
	// Err is the failed check, when one caused the alarm (a
	// *verify.CheckError for an entry that does not verify).
	Err error
}

func (a *Alarm) Error() string { return fmt.Sprintf("%s: %s", strings.ToUpper(a.Kind), a.Detail) }

// Unwrap gives the cause to errors.Is and errors.As.
func (a *Alarm) Unwrap() error { return a.Err }

// Config says which log to follow and how to check it.
type Config struct {
	// Server is the log's root URL (the daemon's address).
	Server string
	// Verifier holds the log key (checkpoints, SETs) and, when made with a
	// signing key set, verifies that every new entry names a key valid
	// when it was logged and, with the record, its envelope's signature.
	Verifier *verify.Verifier
	// Bearer, when set, is sent to the Rekor API to read the envelopes of
	// a log that keeps records private: an API key with the read
	// permission (or an OIDC token the daemon maps to it).
	Bearer     string
	HTTPClient *http.Client
}

// Follower checks a log checkpoint after checkpoint.
type Follower struct {
	cfg    Config
	v      *verify.Verifier
	tiles  *client.HTTPFetcher
	rekor  *rekorapi.Client
	treeID int64
	last   []byte
	lastCP *log.Checkpoint
	rng    *compact.Range
}

var rangeFactory = compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}

// New returns a Follower that trusts nothing yet (call Start).
func New(cfg Config) (*Follower, error) {
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	u, err := url.Parse(strings.TrimRight(cfg.Server, "/") + "/")
	if err != nil {
		return nil, fmt.Errorf("server %q: %w", cfg.Server, err)
	}
	tiles, err := client.NewHTTPFetcher(u, cfg.HTTPClient)
	if err != nil {
		return nil, err
	}
	rc, err := rekorapi.NewClient(cfg.Server, cfg.HTTPClient, rekorapi.WithBearer(cfg.Bearer))
	if err != nil {
		return nil, err
	}
	if cfg.Verifier == nil {
		return nil, errors.New("monitor: no verifier (the log key)")
	}
	return &Follower{cfg: cfg, v: cfg.Verifier, tiles: tiles, rekor: rc, treeID: cfg.Verifier.TreeID(), rng: rangeFactory.NewEmptyRange(0)}, nil
}

// SetVerifier replaces the verifier for the next Step, e.g. with a signing
// key set that gained a rotated-in key. It must verify the same log (the
// same log key): the follower keeps its trusted checkpoint.
func (f *Follower) SetVerifier(v *verify.Verifier) error {
	if v.LogID() != f.v.LogID() {
		return fmt.Errorf("monitor: the new verifier is for another log (%s, not %s)", v.LogID(), f.v.LogID())
	}
	f.v, f.cfg.Verifier = v, v
	return nil
}

// SigningKeys reports whether entries are checked against a signing key set.
func (f *Follower) SigningKeys() bool { return f.v.SigningKeys() != nil }

// FetchCheckpoint reads the log's latest checkpoint and checks it is this
// log's (origin names the key's tree ID) and signed by the log key.
func (f *Follower) FetchCheckpoint(ctx context.Context) ([]byte, *log.Checkpoint, error) {
	raw, err := f.tiles.ReadCheckpoint(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("fetch checkpoint: %w", err)
	}
	cp, err := f.v.Checkpoint(raw)
	if err != nil {
		return nil, nil, &Alarm{Kind: BadCheckpoint, Old: f.last, New: raw, Detail: err.Error(), Err: err}
	}
	if !strings.HasSuffix(cp.Origin, "/"+strconv.FormatInt(f.treeID, 10)) {
		return nil, nil, &Alarm{Kind: BadCheckpoint, Old: f.last, New: raw, Detail: fmt.Sprintf("origin %q is not the log of this key (tree ID %d)", cp.Origin, f.treeID)}
	}
	return raw, cp, nil
}

// Consistent checks that the signed checkpoint newer extends older, with
// a consistency proof built from the log's tiles. A shrunk tree is a
// Rollback, anything else that does not prove out a Fork.
func (f *Follower) Consistent(ctx context.Context, older, newer []byte) error {
	a, err := f.v.Checkpoint(older)
	if err != nil {
		return &Alarm{Kind: BadCheckpoint, Old: older, New: newer, Detail: "the earlier checkpoint: " + err.Error()}
	}
	b, err := f.v.Checkpoint(newer)
	if err != nil {
		return &Alarm{Kind: BadCheckpoint, Old: older, New: newer, Detail: err.Error(), Err: err}
	}
	switch {
	case a.Origin != b.Origin:
		return &Alarm{Kind: Fork, Old: older, New: newer, Detail: fmt.Sprintf("origin changed from %q to %q", a.Origin, b.Origin)}
	case b.Size < a.Size:
		return &Alarm{Kind: Rollback, Old: older, New: newer, Detail: fmt.Sprintf("tree size went from %d down to %d", a.Size, b.Size)}
	case b.Size == a.Size:
		if !bytes.Equal(a.Hash, b.Hash) {
			return &Alarm{Kind: Fork, Old: older, New: newer, Detail: fmt.Sprintf("two different roots for tree size %d", a.Size)}
		}
		return nil
	case a.Size == 0:
		return nil
	}
	pb, err := client.NewProofBuilder(ctx, b.Size, f.tiles.ReadTile)
	if err != nil {
		return fmt.Errorf("consistency proof: %w", err)
	}
	hashes, err := pb.ConsistencyProof(ctx, a.Size, b.Size)
	if err != nil {
		return fmt.Errorf("consistency proof %d..%d from the tiles: %w", a.Size, b.Size, err)
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, a.Size, b.Size, hashes, a.Hash, b.Hash); err != nil {
		return &Alarm{Kind: Fork, Old: older, New: newer, Detail: fmt.Sprintf("tree of size %d is not a prefix of the tree of size %d: %v", a.Size, b.Size, err)}
	}
	return nil
}

// RightEdge checks that the log's tiles reproduce the checkpoint's root
// (reading only the tiles on the tree's right edge).
func (f *Follower) RightEdge(ctx context.Context, raw []byte, cp *log.Checkpoint) error {
	if cp.Size == 0 {
		return nil
	}
	nodes, err := client.FetchRangeNodes(ctx, cp.Size, f.tiles.ReadTile)
	if err != nil {
		return fmt.Errorf("read tiles: %w", err)
	}
	r, err := rangeFactory.NewRange(0, cp.Size, nodes)
	if err != nil {
		return &Alarm{Kind: BadEntry, New: raw, Detail: fmt.Sprintf("tiles for size %d: %v", cp.Size, err)}
	}
	root, err := r.GetRootHash(nil)
	if err != nil || !bytes.Equal(root, cp.Hash) {
		return &Alarm{Kind: BadEntry, New: raw, Detail: fmt.Sprintf("the log's tiles hash to %x, not the checkpoint's root %x", root, cp.Hash)}
	}
	return nil
}

// Start trusts checkpoint trusted (already verified by the caller, e.g.
// the last one this client saw); nil starts from the empty tree, so the
// first Step re-hashes the whole log. The tiles must reproduce its root.
func (f *Follower) Start(ctx context.Context, trusted []byte) error {
	if trusted == nil {
		f.last, f.lastCP, f.rng = nil, nil, rangeFactory.NewEmptyRange(0)
		return nil
	}
	cp, err := f.v.Checkpoint(trusted)
	if err != nil {
		return &Alarm{Kind: BadCheckpoint, New: trusted, Detail: "the trusted checkpoint: " + err.Error()}
	}
	rng := rangeFactory.NewEmptyRange(0)
	if cp.Size > 0 {
		nodes, err := client.FetchRangeNodes(ctx, cp.Size, f.tiles.ReadTile)
		if err != nil {
			return fmt.Errorf("read tiles: %w", err)
		}
		if rng, err = rangeFactory.NewRange(0, cp.Size, nodes); err != nil {
			return &Alarm{Kind: Fork, Old: trusted, Detail: err.Error()}
		}
		if root, _ := rng.GetRootHash(nil); !bytes.Equal(root, cp.Hash) {
			return &Alarm{Kind: Fork, Old: trusted, Detail: fmt.Sprintf("the log's tiles no longer hash to the root of the trusted checkpoint of size %d", cp.Size)}
		}
	}
	f.last, f.lastCP, f.rng = trusted, cp, rng
	return nil
}

// Report is what one Step saw.
type Report struct {
	Checkpoint []byte
	Size       uint64
	Root       []byte
	// NewEntries is how many entries were re-hashed into the root.
	NewEntries uint64
	// Envelopes says how many of their envelopes were checked.
	Envelopes Envelopes
}

// Envelopes counts what was checked of entries' envelopes (the records).
type Envelopes struct {
	// Checked envelopes were fetched and are the ones their leaves commit
	// to (and, with a signer key, their signatures verify).
	Checked uint64
	// Private envelopes were not checked: the log keeps records private
	// and the monitor has no read credential. Their leaves were checked.
	Private uint64
}

func (e *Envelopes) add(o Envelopes) { e.Checked += o.Checked; e.Private += o.Private }

// Describe says in words what was checked of the envelopes, with or
// without a signing key set, for people reading a monitor's output.
func (e Envelopes) Describe(signerKey bool) string {
	what := "envelopes match their leaves (signatures not checked: no signer keys)"
	if signerKey {
		what = "envelope signatures OK"
	}
	switch {
	case e.Private == 0 && e.Checked == 0:
		return "no new envelopes"
	case e.Private == 0:
		return fmt.Sprintf("%d %s", e.Checked, what)
	}
	s := fmt.Sprintf("%d envelopes not checked: records are private (give a read key)", e.Private)
	if signerKey {
		s += "; every entry names a signer key valid when it was logged"
	}
	if e.Checked > 0 {
		s = fmt.Sprintf("%d %s, %s", e.Checked, what, s)
	}
	return s
}

// Step reads the latest checkpoint, checks it against the last one,
// re-hashes every new entry from the entry bundles into the tree and
// compares the root, verifies new envelopes (with a signer key), and
// moves on to it. Misbehaviour returns an *Alarm and does not move on.
func (f *Follower) Step(ctx context.Context) (Report, error) {
	raw, cp, err := f.FetchCheckpoint(ctx)
	if err != nil {
		return Report{}, err
	}
	from := uint64(0)
	if f.last != nil {
		if err := f.Consistent(ctx, f.last, raw); err != nil {
			return Report{}, err
		}
		from = f.lastCP.Size
	}
	if cp.Size < from {
		return Report{}, &Alarm{Kind: Rollback, Old: f.last, New: raw, Detail: fmt.Sprintf("tree size went from %d down to %d", from, cp.Size)}
	}
	rng := rangeFactory.NewEmptyRange(0)
	if f.rng.End() > 0 {
		var err error
		if rng, err = rangeFactory.NewRange(0, f.rng.End(), slices.Clone(f.rng.Hashes())); err != nil {
			return Report{}, err
		}
	}
	var envs Envelopes
	for i := from; i < cp.Size; {
		b, err := client.GetEntryBundle(ctx, f.tiles.ReadEntryBundle, i/layout.EntryBundleWidth, cp.Size)
		if err != nil {
			return Report{}, &Alarm{Kind: BadEntry, Old: f.last, New: raw, Detail: fmt.Sprintf("entry %d: %v", i, err)}
		}
		first := i % layout.EntryBundleWidth
		var bodies [][]byte
		for j := first; j < uint64(len(b.Entries)) && i+(j-first) < cp.Size; j++ {
			bodies = append(bodies, b.Entries[j])
		}
		if len(bodies) == 0 {
			return Report{}, &Alarm{Kind: BadEntry, Old: f.last, New: raw, Detail: fmt.Sprintf("entry bundle for entry %d is short", i)}
		}
		for k, body := range bodies {
			if _, err := entry.ParseBody(body); err != nil {
				return Report{}, &Alarm{Kind: BadEntry, Old: f.last, New: raw, Detail: fmt.Sprintf("entry %d: %v", i+uint64(k), err)}
			}
			if err := rng.Append(entry.LeafHash(body), nil); err != nil {
				return Report{}, err
			}
		}
		got, err := f.checkLeaves(ctx, i, bodies, cp.Size)
		if refused(err) {
			return Report{}, err
		}
		if err != nil {
			return Report{}, &Alarm{Kind: BadEntry, Old: f.last, New: raw, Detail: err.Error(), Err: err}
		}
		envs.add(got)
		i += uint64(len(bodies))
	}
	if err := f.RightEdge(ctx, raw, cp); err != nil {
		return Report{}, err
	}
	root := rfc6962.DefaultHasher.EmptyRoot()
	if cp.Size > 0 {
		if root, err = rng.GetRootHash(nil); err != nil {
			return Report{}, err
		}
	}
	if !bytes.Equal(root, cp.Hash) {
		return Report{}, &Alarm{Kind: BadEntry, Old: f.last, New: raw, Detail: fmt.Sprintf("the entries hash to root %x, the checkpoint of size %d says %x", root, cp.Size, cp.Hash)}
	}
	f.last, f.lastCP, f.rng = raw, cp, rng
	return Report{Checkpoint: raw, Size: cp.Size, Root: cp.Hash, NewEntries: cp.Size - from, Envelopes: envs}, nil
}

// checkLeaves compares entries first.. re-hashed from the bundles with the
// leaf hashes in the tiles, and checks their envelopes.
func (f *Follower) checkLeaves(ctx context.Context, first uint64, bodies [][]byte, size uint64) (Envelopes, error) {
	tiles, err := client.FetchLeafHashes(ctx, f.tiles.ReadTile, first, uint64(len(bodies)), size)
	if err != nil {
		return Envelopes{}, fmt.Errorf("leaf hashes of entries %d..: %w", first, err)
	}
	for k, body := range bodies {
		if !bytes.Equal(tiles[k], entry.LeafHash(body)) {
			return Envelopes{}, fmt.Errorf("entry %d: its body hashes to %x, the tiles hold %x", first+uint64(k), entry.LeafHash(body), tiles[k])
		}
	}
	return f.checkEnvelopes(ctx, first, bodies)
}

// CheckLatest re-hashes the entries of the log's last entry bundle, checks
// them against the tiles and their envelopes (signatures too, with a
// signer key), and checks the tiles reproduce the checkpoint's root: the
// cheap right-edge audit "gatelog log info" does. Step checks every entry.
func (f *Follower) CheckLatest(ctx context.Context, raw []byte, cp *log.Checkpoint) (Envelopes, error) {
	if cp.Size == 0 {
		return Envelopes{}, nil
	}
	last := cp.Size - 1
	b, err := client.GetEntryBundle(ctx, f.tiles.ReadEntryBundle, last/layout.EntryBundleWidth, cp.Size)
	if err != nil {
		return Envelopes{}, &Alarm{Kind: BadEntry, New: raw, Detail: fmt.Sprintf("last entry bundle: %v", err)}
	}
	first := last - last%layout.EntryBundleWidth
	if uint64(len(b.Entries)) < cp.Size-first {
		return Envelopes{}, &Alarm{Kind: BadEntry, New: raw, Detail: "the last entry bundle is short"}
	}
	envs, err := f.checkLeaves(ctx, first, b.Entries[:cp.Size-first], cp.Size)
	if refused(err) {
		return Envelopes{}, err
	}
	if err != nil {
		return Envelopes{}, &Alarm{Kind: BadEntry, New: raw, Detail: err.Error(), Err: err}
	}
	return envs, f.RightEdge(ctx, raw, cp)
}

// checkEnvelopes fetches entries first.. through the Rekor API, checks the
// API serves the bodies the bundles hold, and checks each entry with the
// verifier: its SET, that it names a signing key valid when it was logged,
// and that its envelope is the one its logged body commits to, signed by
// that key. An envelope the log keeps private (no read credential) is
// counted, not checked; one withheld from a reader is an error.
func (f *Follower) checkEnvelopes(ctx context.Context, first uint64, bodies [][]byte) (Envelopes, error) {
	var envs Envelopes
	for start := 0; start < len(bodies); start += 10 {
		end := min(start+10, len(bodies))
		var idx []int64
		for k := start; k < end; k++ {
			idx = append(idx, int64(first)+int64(k))
		}
		les, err := f.rekor.EntriesByIndex(ctx, idx)
		if err != nil {
			return envs, fmt.Errorf("entries %d..%d: %w", idx[0], idx[len(idx)-1], err)
		}
		got := map[int64]rekorapi.LogEntryAnon{}
		for _, le := range les {
			for _, a := range le {
				got[a.LogIndex] = a
			}
		}
		for k := start; k < end; k++ {
			i := int64(first) + int64(k)
			a, ok := got[i]
			if !ok {
				return envs, fmt.Errorf("entry %d: the log did not return it", i)
			}
			if b, _ := base64.StdEncoding.DecodeString(a.Body); !bytes.Equal(b, bodies[k]) {
				return envs, fmt.Errorf("entry %d: the Rekor API and the entry bundles disagree on the body", i)
			}
			env, err := f.rekor.Envelope(a)
			private := errors.Is(err, rekorapi.ErrRecordsPrivate)
			if err != nil && !private {
				return envs, err
			}
			if a.Verification == nil {
				return envs, fmt.Errorf("entry %d: the log sent no SET", i)
			}
			if _, err := f.v.Entry(verify.Entry{
				Body: bodies[k], LogIndex: a.LogIndex, IntegratedTime: a.IntegratedTime, LogID: a.LogID,
				SET: a.Verification.SignedEntryTimestamp, Envelope: env,
			}); err != nil {
				return envs, fmt.Errorf("entry %d: %w", i, err)
			}
			if private {
				envs.Private++
			} else {
				envs.Checked++
			}
		}
	}
	return envs, nil
}

// refused reports whether err is the log refusing the monitor's read
// credential (401 or 403): the monitor's problem to fix, not the log's
// misbehaviour, so never an Alarm.
func refused(err error) bool {
	var he *rekorapi.HTTPError
	return errors.As(err, &he) && (he.StatusCode == http.StatusUnauthorized || he.StatusCode == http.StatusForbidden)
}

// StateDir is where clients keep the last checkpoint they verified of
// each log: $XDG_CONFIG_HOME/gatelog/state, or ~/.config/gatelog/state.
func StateDir() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "gatelog", "state"), nil
}

func statePath(dir, origin string) string {
	return filepath.Join(dir, url.PathEscape(origin))
}

// LoadState returns the last checkpoint saved for origin, or nil.
func LoadState(dir, origin string) ([]byte, error) {
	raw, err := os.ReadFile(statePath(dir, origin))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return raw, err
}

// SaveState records checkpoint as the last one seen of origin.
func SaveState(dir, origin string, checkpoint []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return durable.WriteFile(statePath(dir, origin), checkpoint)
}

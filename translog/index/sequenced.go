package index

import (
	"slices"
	"unicode/utf8"

	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/record/receipt"
	"github.com/gatelog/gatelog/translog"
)

// maxSequenced bounds how many entries handed over by Sequenced wait for
// a checkpoint to cover them (a few seconds' worth at the daemon's peak,
// a few KiB each). Past it (a follower that cannot write, say) further
// entries are not kept and CatchUp reads them from the log.
const maxSequenced = 1 << 13

// sequencedEntry is an entry this process appended, with the record its
// envelope holds.
type sequencedEntry struct {
	e   translog.Entry
	rec decision.Record
}

// Sequenced hands the index an entry this process appended, e as the
// log's Append returned it, with rec, the record whose signed envelope e
// holds (what the Recorder signed). CatchUp indexes it from these, without
// reading the entry back from the log or decoding its envelope again, once
// a checkpoint covers it: the index still holds only entries that are in
// the published log. Entries never handed over (appended by another
// daemon, before a restart, or past the bound on waiting rows) are read
// from the log as before. e must be an entry of the log CatchUp follows.
func (ix *Index) Sequenced(e translog.Entry, rec decision.Record) {
	if e.Index < 0 || len(e.Body) == 0 {
		return
	}
	ix.seqMu.Lock()
	defer ix.seqMu.Unlock()
	if e.Index < ix.seqFloor || len(ix.sequenced) >= maxSequenced {
		return
	}
	if ix.sequenced == nil {
		ix.sequenced = make(map[int64]sequencedEntry)
	}
	if fromRecordOK(rec) {
		// RowOf will not read the entry's bytes: do not hold them. An
		// entry waits here for the next checkpoint, a second or more,
		// and its envelope and body (~4 KB) were the largest part of the
		// daemon's live heap under load that nothing else still needed.
		e.Body, e.Envelope, e.SignedEntryTimestamp = nil, nil, nil
	}
	ix.sequenced[e.Index] = sequencedEntry{e: e, rec: rec}
}

// takeSequenced removes and returns the entry handed over for idx.
func (ix *Index) takeSequenced(idx int64) (sequencedEntry, bool) {
	ix.seqMu.Lock()
	defer ix.seqMu.Unlock()
	s, ok := ix.sequenced[idx]
	if ok {
		delete(ix.sequenced, idx)
	}
	return s, ok
}

// nextSequenced is the first index in [from, to) that was handed over,
// or to.
func (ix *Index) nextSequenced(from, to int64) int64 {
	ix.seqMu.Lock()
	defer ix.seqMu.Unlock()
	if len(ix.sequenced) == 0 {
		return to
	}
	for i := from; i < to; i++ {
		if _, ok := ix.sequenced[i]; ok {
			return i
		}
	}
	return to
}

// dropSequencedBelow forgets the entries handed over for indexes the index
// already holds (indexed from the log, or by another daemon sharing it).
func (ix *Index) dropSequencedBelow(next int64) {
	ix.seqMu.Lock()
	defer ix.seqMu.Unlock()
	ix.seqFloor = next
	for i := range ix.sequenced {
		if i < next {
			delete(ix.sequenced, i)
		}
	}
}

// RowOf is the Row that DecodeEntry gives for entry e, built from rec,
// the record whose signed envelope e holds, instead of from the envelope:
// for entries this process appended, whose record is still at hand. The
// envelope is the JSON encoding of rec, so decoding it gives rec back
// except where JSON cannot carry a Go string (invalid UTF-8, replaced by
// U+FFFD); for such a record, or one of no known kind, RowOf decodes the
// envelope as DecodeEntry does.
func RowOf(e translog.Entry, rec decision.Record) (Row, error) {
	if !fromRecordOK(rec) {
		return DecodeEntry(e.Index, e.UUID, e.IntegratedTime, e.Body, e.Envelope)
	}
	r := Row{LogIndex: e.Index, UUID: e.UUID, IntegratedTime: e.IntegratedTime, Kind: KindUnreadable, Reasons: []string{}}
	r, err := fromRecord(r, rec)
	// The row outlives the request that made rec: it shares none of it.
	r.Reasons, r.Alerts = slices.Clone(r.Reasons), slices.Clone(r.Alerts)
	return r, err
}

// fromRecordOK reports whether RowOf builds rec's row from rec alone,
// without the entry's envelope.
func fromRecordOK(rec decision.Record) bool {
	return receipt.PredicateTypeOf(rec.Kind) != "" && jsonExact(rec)
}

// jsonExact reports whether every string of rec that a Row holds comes
// back unchanged from JSON.
func jsonExact(rec decision.Record) bool {
	req := rec.Request
	res := req.Resource
	for _, s := range [...]string{
		rec.DecisionID, rec.Time, req.Subject.ID, req.Subject.Kind, rec.Caller.ID, req.Action,
		res.System, res.Kind, res.Name, res.Namespace, res.Environment, res.Repository, res.Ref,
		req.Source.Adapter, rec.Policy.SHA256, rec.Policy.Revision, rec.Policy.Entrypoint,
	} {
		if !utf8.ValidString(s) {
			return false
		}
	}
	for _, s := range rec.Reasons() {
		if !utf8.ValidString(s) {
			return false
		}
	}
	for _, a := range rec.Alerts() {
		if !utf8.ValidString(a.Code) || !utf8.ValidString(a.Severity) || !utf8.ValidString(a.Message) {
			return false
		}
	}
	return true
}

// Package envrecord is the stored form of one record of gatelog's
// envelope store: a version byte, the key, the integrated time, and (for
// a sequenced record) the SET, then the envelope, the signer's PEM and the
// leaf body deflated as one block. The envelope's bytes are kept exactly
// as signed.
package envrecord

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync"

	// Standard DEFLATE (what records always held), at about twice the
	// speed of compress/flate's BestSpeed on an envelope.
	"github.com/klauspost/compress/flate"
)

// Versions of the envelope store's binary records; each record starts
// with one. Records of versions 1 and 2 (written before the store became
// the log's sequencer, keyed by arrival) are still read; new ones are
// version 3, keyed by their log index.
const (
	recordPlain      = 1 // key, time, envelope, signer PEM
	recordCompressed = 2 // key, time, deflate(envelope, signer PEM)
	recordSequenced  = 3 // key, time, SET, deflate(envelope, signer PEM, body)
)

// maxRecordBody bounds what a compressed record may inflate to, so that a
// corrupt store cannot make a read allocate without limit.
const maxRecordBody = 64 << 20

// encodeRecord is the stored form of a record: a version byte, the key
// (length-prefixed, uvarint), the integrated time (varint) and then,
// deflated as one length-prefixed block, the envelope and the signer PEM
// (each length-prefixed). The envelope's bytes are kept exactly as signed
// (its hash is in the leaf), not re-encoded; deflating them roughly halves
// a decision's record (its payload is base64 JSON), so two fit in a page.
//
// A record with a SET (one the store sequenced) is version 3: the SET
// follows the time, and the deflated block ends with the leaf's body (the
// canonical Rekor entry), kept so that integration and reads of entries
// not yet in the tiles need not rebuild it.
func Encode(rec Record) []byte {
	return Frame(rec, Block(rec))
}

// recordBlock is the deflated part of rec's stored form: everything but
// the key, the time and the SET, so it can be made before the entry's
// index (and so its SET) is known.
func Block(rec Record) []byte {
	scratch := recordBuffers.Get().(*[]byte)
	defer recordBuffers.Put(scratch)
	body := (*scratch)[:0]
	body = appendBytes(body, rec.Envelope)
	body = appendBytes(body, rec.SignerPEM)
	if rec.SET != nil || rec.Body != nil {
		body = appendBytes(body, rec.Body)
	}
	*scratch = body
	// Spare capacity after the block lets FrameOver put the header in
	// front without a second allocation of the record.
	return deflateAppend(nil, body, headerRoom(rec))
}

// maxSETRoom is the SET length Block leaves room for: an ECDSA P-384 DER
// signature (P-256, the log key's usual kind, takes at most 72 bytes).
const maxSETRoom = 104

// headerRoom is the most Frame's header can take for rec with a SET of
// up to maxSETRoom bytes.
func headerRoom(rec Record) int {
	return 1 + 3*binary.MaxVarintLen64 + len(rec.Key) + maxSETRoom
}

// frameRecord is the stored form of rec given its recordBlock.
func Frame(rec Record, block []byte) []byte {
	b := make([]byte, 0, 1+3*binary.MaxVarintLen64+len(rec.Key)+len(rec.SET)+len(block))
	b = frameHeader(b, rec)
	return append(b, block...)
}

// frameHeader appends what precedes the block in rec's stored form.
func frameHeader(b []byte, rec Record) []byte {
	version := byte(recordCompressed)
	if rec.SET != nil {
		version = recordSequenced
	}
	b = append(b, version)
	b = appendBytes(b, []byte(rec.Key))
	b = binary.AppendVarint(b, rec.IntegratedTime)
	if rec.SET != nil {
		b = appendBytes(b, rec.SET)
	}
	return b
}

// FrameOver is Frame made in block's own memory, which Block leaves room
// for: the block is moved up by the header's length and the header written
// in front of it, so a sequenced record is one allocation, not two (the
// deflated block, then the frame copied from it). block must not be used
// after; when its spare capacity is too small (a SET longer than
// maxSETRoom), FrameOver is Frame.
func FrameOver(rec Record, block []byte) []byte {
	var head [256]byte
	if 1+3*binary.MaxVarintLen64+len(rec.Key)+len(rec.SET) > len(head) {
		return Frame(rec, block)
	}
	h := frameHeader(head[:0], rec)
	if cap(block)-len(block) < len(h) {
		return Frame(rec, block)
	}
	b := block[:len(block)+len(h)]
	copy(b[len(h):], block)
	copy(b, h)
	return b
}

// recordBuffers holds the scratch buffers encodeRecord gathers a record's
// fields in before deflating them.
var recordBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 8<<10); return &b }}

// decodeRecord parses what encodeRecord writes, and version 1 records;
// the slices it returns are copies, so they outlive the transaction raw
// was read in.
func Decode(raw []byte) (Record, error) {
	var rec Record
	if len(raw) == 0 || raw[0] < recordPlain || raw[0] > recordSequenced {
		return rec, errors.New("unknown record version")
	}
	r := fields{b: raw[1:]}
	key, err := r.bytes("key")
	if err != nil {
		return rec, err
	}
	t, w := binary.Varint(r.b)
	if w <= 0 {
		return rec, errors.New("integrated time: bad varint")
	}
	r.b = r.b[w:]
	if raw[0] == recordSequenced {
		if rec.SET, err = r.bytes("SET"); err != nil {
			return rec, err
		}
	}
	if raw[0] != recordPlain {
		block, err := r.next("body")
		if err != nil {
			return rec, err
		}
		if err := r.end("record"); err != nil {
			return rec, err
		}
		body, err := inflate(block)
		if err != nil {
			return rec, fmt.Errorf("body: %w", err)
		}
		// The inflated body is ours: its fields need no copies.
		r = fields{b: body, owned: true}
	}
	if rec.Envelope, err = r.bytes("envelope"); err != nil {
		return rec, err
	}
	if rec.SignerPEM, err = r.bytes("signer PEM"); err != nil {
		return rec, err
	}
	if raw[0] == recordSequenced {
		if rec.Body, err = r.bytes("body"); err != nil {
			return rec, err
		}
	}
	if err := r.end("record"); err != nil {
		return rec, err
	}
	rec.Key, rec.IntegratedTime = string(key), t
	return rec, nil
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// fields reads length-prefixed fields off the front of b. Unless owned,
// b is the transaction's memory, and fields that must outlive it are
// copied.
type fields struct {
	b     []byte
	owned bool
}

// next returns the next field as a slice of b.
func (f *fields) next(name string) ([]byte, error) {
	n, w := binary.Uvarint(f.b)
	if w <= 0 || n > uint64(len(f.b)-w) {
		return nil, fmt.Errorf("%s: bad length", name)
	}
	out := f.b[w : w+int(n) : w+int(n)]
	f.b = f.b[w+int(n):]
	return out, nil
}

// bytes returns the next field, copied unless b is owned.
func (f *fields) bytes(name string) ([]byte, error) {
	out, err := f.next(name)
	if err != nil || f.owned {
		return out, err
	}
	return bytes.Clone(out), nil
}

func (f *fields) end(what string) error {
	if len(f.b) != 0 {
		return fmt.Errorf("%d bytes after the %s", len(f.b), what)
	}
	return nil
}

// Record is one record of the envelope store. The JSON form is the
// store's first layout, still read.
type Record struct {
	Key            string `json:"key"`
	IntegratedTime int64  `json:"integrated_time"`
	Envelope       []byte `json:"envelope"`
	SignerPEM      []byte `json:"signer_pem"`
	// Body and SET are kept by the embedded log's sequencer.
	Body []byte `json:"-"`
	SET  []byte `json:"-"`
}

// Deflaters are kept, one per CPU at most (each holds its tables;
// compressing is CPU-bound, so more at once gain nothing): deflaters
// holds a slot per CPU, nil until its deflater is first made. Inflaters
// (43 KB) are pooled.
var (
	deflaters = func() chan *flate.Writer {
		c := make(chan *flate.Writer, runtime.GOMAXPROCS(0))
		for range cap(c) {
			c <- nil
		}
		return c
	}()
	inflaters = sync.Pool{New: func() any { return flate.NewReader(nil) }}
)

// deflateAppend appends b deflated, length-prefixed, to dst, leaving at
// least spare bytes of capacity after it.
func deflateAppend(dst, b []byte, spare int) []byte {
	scratch := recordBuffers.Get().(*[]byte)
	defer recordBuffers.Put(scratch)
	out := bytes.NewBuffer((*scratch)[:0])
	deflateTo(out, b)
	*scratch = out.Bytes()
	dst = slices.Grow(dst, binary.MaxVarintLen64+out.Len()+spare)
	return appendBytes(dst, out.Bytes())
}

func deflateTo(out *bytes.Buffer, b []byte) {
	w := <-deflaters
	defer func() { deflaters <- w }()
	if w == nil {
		w, _ = flate.NewWriter(out, flate.BestSpeed) // only fails for a bad level
	} else {
		w.Reset(out)
	}
	// Writes to a bytes.Buffer cannot fail.
	_, _ = w.Write(b)
	_ = w.Close()
}

func inflate(block []byte) ([]byte, error) {
	r := inflaters.Get().(io.ReadCloser)
	defer inflaters.Put(r)
	if err := r.(flate.Resetter).Reset(bytes.NewReader(block), nil); err != nil {
		return nil, err
	}
	// A record inflates to about one and a half times its block: start
	// there rather than grow from io.ReadAll's 512 bytes.
	out := make([]byte, 0, min(2*len(block)+512, maxRecordBody+1))
	for {
		if len(out) == cap(out) {
			out = append(out, 0)[:len(out)]
		}
		n, err := r.Read(out[len(out):cap(out)])
		out = out[:len(out)+n]
		if len(out) > maxRecordBody {
			return nil, fmt.Errorf("inflates beyond %d bytes", maxRecordBody)
		}
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

package translog

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
)

// Versions of the envelope store's binary records; each record starts
// with one. Records of version 1 are still read; new ones are version 2.
const (
	recordPlain      = 1 // key, time, envelope, signer PEM
	recordCompressed = 2 // key, time, deflate(envelope, signer PEM)
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
func encodeRecord(rec storedEntry) []byte {
	body := make([]byte, 0, 2*binary.MaxVarintLen64+len(rec.Envelope)+len(rec.SignerPEM))
	body = appendBytes(body, rec.Envelope)
	body = appendBytes(body, rec.SignerPEM)
	b := make([]byte, 0, 1+3*binary.MaxVarintLen64+len(rec.Key)+len(body)*2/3)
	b = append(b, recordCompressed)
	b = appendBytes(b, []byte(rec.Key))
	b = binary.AppendVarint(b, rec.IntegratedTime)
	return appendBytes(b, deflate(body))
}

// decodeRecord parses what encodeRecord writes, and version 1 records;
// the slices it returns are copies, so they outlive the transaction raw
// was read in.
func decodeRecord(raw []byte) (storedEntry, error) {
	var rec storedEntry
	if len(raw) == 0 || (raw[0] != recordPlain && raw[0] != recordCompressed) {
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
	if raw[0] == recordCompressed {
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

// Deflaters are kept, one per CPU at most (each holds 1.2 MB of tables;
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

func deflate(b []byte) []byte {
	var out bytes.Buffer
	out.Grow(len(b)*2/3 + 64)
	w := <-deflaters
	defer func() { deflaters <- w }()
	if w == nil {
		w, _ = flate.NewWriter(&out, flate.BestSpeed) // only fails for a bad level
	} else {
		w.Reset(&out)
	}
	// Writes to a bytes.Buffer cannot fail.
	_, _ = w.Write(b)
	_ = w.Close()
	return out.Bytes()
}

func inflate(block []byte) ([]byte, error) {
	r := inflaters.Get().(io.ReadCloser)
	defer inflaters.Put(r)
	if err := r.(flate.Resetter).Reset(bytes.NewReader(block), nil); err != nil {
		return nil, err
	}
	out, err := io.ReadAll(io.LimitReader(r, maxRecordBody+1))
	if err != nil {
		return nil, err
	}
	if len(out) > maxRecordBody {
		return nil, fmt.Errorf("inflates beyond %d bytes", maxRecordBody)
	}
	return out, nil
}

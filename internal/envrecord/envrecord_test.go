package envrecord

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"strings"
	"testing"
)

// FuzzDecode: stored records come off the disk, so any bytes must
// give a record or an error (never a panic), and what decodes re-encodes to
// the same record.
func FuzzDecode(f *testing.F) {
	f.Add(Encode(Record{Key: "k", IntegratedTime: -5, Envelope: []byte(`{"a":1}`), SignerPEM: []byte("pem")}))
	f.Add(Encode(Record{Key: "k", IntegratedTime: 9, Envelope: []byte(`{"a":1}`), SignerPEM: []byte("pem"), Body: []byte(`{"b":2}`), SET: []byte("set")}))
	f.Add(plainRecord(Record{Key: "k", IntegratedTime: 3, Envelope: []byte(`{"b":2}`), SignerPEM: []byte("pem")}))
	f.Add([]byte{recordCompressed})
	f.Add([]byte{recordPlain, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add([]byte{recordCompressed, 1, 'k', 2, 5, 0xff, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, raw []byte) {
		rec, err := Decode(raw)
		if err != nil {
			return
		}
		again, err := Decode(Encode(rec))
		if err != nil || !reflect.DeepEqual(again, rec) {
			t.Fatalf("round trip: %+v, %v; want %+v", again, err, rec)
		}
	})
}

// plainRecord is a record as version 1 wrote it: no compression.
func plainRecord(rec Record) []byte {
	b := []byte{recordPlain}
	b = appendBytes(b, []byte(rec.Key))
	b = binary.AppendVarint(b, rec.IntegratedTime)
	b = appendBytes(b, rec.Envelope)
	return appendBytes(b, rec.SignerPEM)
}

// Records written uncompressed (version 1) are still read next to the
// compressed ones written now, which are smaller for a real envelope.
func TestVersions(t *testing.T) {
	env := bytes.Repeat([]byte(`{"payloadType":"application/vnd.in-toto+json","payload":"eyJfdHlwZSI6Imh0dHBzOi8vaW4tdG90by5pby9TdGF0ZW1lbnQvdjEi"}`), 20)
	rec := Record{Key: "dec-1", IntegratedTime: 1700000000, Envelope: env, SignerPEM: []byte("-----BEGIN PUBLIC KEY-----\n...")}
	seq := rec
	seq.Body, seq.SET = []byte(`{"kind":"dsse"}`), []byte("set")
	for name, c := range map[string]struct {
		raw  []byte
		want Record
	}{"plain": {plainRecord(rec), rec}, "compressed": {Encode(rec), rec}, "sequenced": {Encode(seq), seq}} {
		got, err := Decode(c.raw)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %+v, %v", name, got, err)
		}
	}
	if c, p := len(Encode(rec)), len(plainRecord(rec)); c >= p/2 {
		t.Errorf("compressed record %d bytes, plain %d: compression is not working", c, p)
	}
	// A compressed block that inflates to garbage, or is not deflate at
	// all, is an error.
	bad := []byte{recordCompressed}
	bad = appendBytes(bad, []byte("k"))
	bad = binary.AppendVarint(bad, 1)
	bad = appendBytes(bad, []byte("not deflate"))
	if _, err := Decode(bad); err == nil {
		t.Error("a record whose body is not deflate decoded")
	}
}

// A record whose block inflates beyond maxRecordBody is refused, not read
// into memory without limit; one just within it decodes.
func TestDecodeBoundsTheInflatedBody(t *testing.T) {
	block := func(n int) []byte {
		var b []byte
		b = appendBytes(b, make([]byte, n-binary.MaxVarintLen64)) // the envelope field
		b = appendBytes(b, nil)                                   // the signer PEM
		return b
	}
	record := func(body []byte) []byte {
		raw := []byte{recordCompressed}
		raw = appendBytes(raw, []byte("k"))
		raw = binary.AppendVarint(raw, 1)
		return deflateAppend(raw, body, 0)
	}
	if _, err := Decode(record(block(maxRecordBody + 16))); err == nil || !strings.Contains(err.Error(), "inflates beyond") {
		t.Fatalf("a block beyond the bound: %v", err)
	}
	rec, err := Decode(record(block(maxRecordBody - 16)))
	if err != nil || len(rec.Envelope) != maxRecordBody-16-binary.MaxVarintLen64 {
		t.Fatalf("a block within the bound: %d bytes, %v", len(rec.Envelope), err)
	}
}

// FrameOver gives Frame's bytes, in the block's memory when Block left it
// room and in new memory when the SET is longer than that room.
func TestFrameOverIsFrame(t *testing.T) {
	base := Record{Key: "0190f5c2-7d2a-7c3e-9a4b-3f1e2d4c5b6a", IntegratedTime: 1765000000, Envelope: []byte(`{"payloadType":"x"}`), SignerPEM: []byte("pem"), Body: []byte("body")}
	for name, set := range map[string][]byte{
		"P-256 SET":           bytes.Repeat([]byte{0x30}, 71),
		"SET at the room":     bytes.Repeat([]byte{0x30}, maxSETRoom),
		"SET beyond the room": bytes.Repeat([]byte{0x30}, 3*maxSETRoom),
	} {
		rec := base
		rec.SET = set
		want := Frame(rec, Block(rec))
		block := Block(rec)
		got := FrameOver(rec, block)
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: FrameOver differs from Frame:\n got %x\nwant %x", name, got, want)
		}
		inPlace := &got[0] == &block[:1][0]
		if inPlace != (len(set) <= maxSETRoom) {
			t.Errorf("%s: framed in the block's memory %t", name, inPlace)
		}
		back, err := Decode(got)
		if err != nil || back.Key != rec.Key || !bytes.Equal(back.SET, set) || !bytes.Equal(back.Body, rec.Body) {
			t.Errorf("%s: decoded %+v, %v", name, back, err)
		}
	}
}

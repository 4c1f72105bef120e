package entry

import (
	"bytes"
	"strings"
	"testing"
)

// SETPayload's direct form is byte for byte what the canonicalizer makes
// of the same fields, at the edges of where it is used too.
func TestSETPayloadDirectIsCanonical(t *testing.T) {
	bodies := [][]byte{nil, {}, []byte("x"), []byte(`{"apiVersion":"0.0.1","kind":"dsse"}`), bytes.Repeat([]byte{0xff, 0x00, 0x7f}, 1000)}
	const edge = 1<<53 - 1
	for _, body := range bodies {
		for _, tm := range []int64{0, 1, -1, 1765000000, edge, -edge} {
			for _, idx := range []int64{0, 1, 255, 1 << 40, edge, -edge} {
				for _, id := range []string{"", "0123456789abcdef", strings.Repeat("ab", 32)} {
					got, err := SETPayload(body, tm, id, idx)
					if err != nil {
						t.Fatal(err)
					}
					want, err := setPayloadCanonicalized(body, tm, id, idx)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got, want) {
						t.Fatalf("body %q time %d index %d id %q:\n got %s\nwant %s", body, tm, idx, id, got, want)
					}
				}
			}
		}
	}
	// Outside the direct form's range the canonicalizer decides.
	for _, c := range []struct {
		tm, idx int64
		id      string
	}{{1 << 53, 0, "ab"}, {0, 1<<53 + 1, "ab"}, {0, 0, "AB"}, {0, 0, `a"b`}} {
		got, err := SETPayload([]byte("b"), c.tm, c.id, c.idx)
		want, werr := setPayloadCanonicalized([]byte("b"), c.tm, c.id, c.idx)
		if err != nil || werr != nil || !bytes.Equal(got, want) {
			t.Fatalf("%+v: %s (%v), want %s (%v)", c, got, err, want, werr)
		}
	}
}

// AppendSETPayload appends after what dst holds, in both forms, and
// leaves that prefix alone.
func TestAppendSETPayloadAppends(t *testing.T) {
	for _, id := range []string{"ab", "AB"} { // direct, canonicalized
		want, err := SETPayload([]byte("body"), 1765000000, id, 7)
		if err != nil {
			t.Fatal(err)
		}
		dst := append(make([]byte, 0, 4), "pre"...)
		got, err := AppendSETPayload(dst, []byte("body"), 1765000000, id, 7)
		if err != nil || string(got[:3]) != "pre" || !bytes.Equal(got[3:], want) {
			t.Errorf("id %q: %q (%v), want pre%s", id, got, err, want)
		}
	}
}

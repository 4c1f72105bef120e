package receipt

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"
)

// ownEnvelopes are envelopes in the signer's form and near misses.
var ownEnvelopes = []string{
	`{"payloadType":"application/vnd.in-toto+json","payload":"eyJhIjoxfQ==","signatures":[{"keyid":"","sig":"MEUCIQ+/"}]}`,
	`{"payloadType":"application/vnd.in-toto+json","payload":"","signatures":[{"keyid":"","sig":""}]}`,
	`{"payloadType":"application/vnd.in-toto+json","payload":"eyJhIjoxfQ==","signatures":[{"keyid":"k","sig":"MEUCIQ"}]}`,
	`{"payloadType":"application/vnd.in-toto+json","payload":"e\u0079J","signatures":[{"keyid":"","sig":"MEUCIQ"}]}`,
	`{"payloadType":"application/vnd.in-toto+json","payload":"a","signatures":[{"keyid":"","sig":"b"},{"keyid":"","sig":"c"}]}`,
	`{"payloadType":"application/vnd.in-toto+json","payload":"a","signatures":[{"keyid":"","sig":"b"}]} `,
	`{"payloadType":"application/vnd.in-toto+json","payload":"a","signatures":[{"keyid":"","sig":"b","signatures":[{"keyid":"","sig":"c"}]}`,
}

// Where parseOwnEnvelope reads an envelope, encoding/json reads the same.
func TestParseOwnEnvelopeIsJSON(t *testing.T) {
	read := 0
	for _, e := range ownEnvelopes {
		if parseOwnEnvelopeAgrees(t, []byte(e)) {
			read++
		}
	}
	if read != 2 {
		t.Errorf("the fast path read %d of the envelopes, want the first 2", read)
	}
	env, _ := envelopeJSON([]byte(strings.Repeat(`{"_type":"x"}`, 50)), []byte("signature bytes"))
	if !parseOwnEnvelopeAgrees(t, env) {
		t.Error("the fast path does not read what the signer writes")
	}
}

func parseOwnEnvelopeAgrees(t *testing.T, b []byte) bool {
	t.Helper()
	got, ok := parseOwnEnvelope(b)
	if !ok {
		return false
	}
	var want Envelope
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatalf("%s: fast path read %+v, encoding/json fails: %v", b, got, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n fast %+v\n json %+v", b, got, want)
	}
	return true
}

func FuzzParseOwnEnvelope(f *testing.F) {
	for _, e := range ownEnvelopes {
		f.Add([]byte(e))
	}
	f.Fuzz(func(t *testing.T, b []byte) { parseOwnEnvelopeAgrees(t, b) })
}

// paeDigest hashes exactly what securesystemslib's dsse.PAE encodes, for
// payloads whose lengths take one to several digits.
func TestPAEDigestIsPAE(t *testing.T) {
	for _, n := range []int{0, 1, 9, 10, 99, 100, 4096, 100003} {
		payload := bytes.Repeat([]byte{'x'}, n)
		if got, want := paeDigest(payload), sha256.Sum256(dsse.PAE(PayloadType, payload)); got != want {
			t.Errorf("%d bytes: paeDigest %x, sha256(dsse.PAE) %x", n, got, want)
		}
	}
}

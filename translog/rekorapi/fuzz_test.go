package rekorapi_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/gatelog/gatelog/translog/entry"
	"github.com/gatelog/gatelog/translog/rekorapi"
)

// The POST bodies of the Rekor API are the one place where anyone on the
// network hands the log arbitrary bytes. Whatever they send, the answer
// is a Rekor-shaped JSON reply with a client-error status (or 200 with
// entries that really are in the log), never a panic, a 5xx or an entry
// the log does not hold.
//
// Run one for longer with, e.g.
//   go test -run '^$' -fuzz FuzzRetrieveBody -fuzztime 20s ./translog/rekorapi/

// fuzzLog is a small real log whose entries are all covered by a
// checkpoint, so that reads never wait.
func fuzzLog(f *testing.F) (*testLog, http.Handler) {
	tl := openLog(f, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := tl.log.InclusionProof(ctx, int64(len(tl.entries)-1), true); err != nil {
		f.Fatal(err)
	}
	return tl, rekorapi.Handler(tl.log, rekorapi.Options{Access: rekorapi.PublicRecords})
}

func post(h http.Handler, path string, body []byte) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body)))
	return rec
}

// checkError: a refused body gets a client error shaped like Rekor's.
func checkError(t *testing.T, rec *httptest.ResponseRecorder, body []byte) {
	t.Helper()
	switch rec.Code {
	case http.StatusBadRequest, http.StatusNotFound, http.StatusUnprocessableEntity:
	default:
		t.Fatalf("body %q: status %d: %s", body, rec.Code, rec.Body)
	}
	var e struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Code != rec.Code || e.Message == "" {
		t.Fatalf("body %q: error reply %q is not {code,message}", body, rec.Body)
	}
}

func FuzzRetrieveBody(f *testing.F) {
	tl, h := fuzzLog(f)
	known := map[string]int64{}
	for _, e := range tl.entries {
		known[e.UUID] = e.Index
	}
	seed := func(v any) {
		raw, err := json.Marshal(v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	one, two := int64(1), int64(99)
	seed(rekorapi.SearchLogQuery{EntryUUIDs: []string{tl.entries[0].UUID, tl.entries[1].UUID[16:]}})
	seed(rekorapi.SearchLogQuery{LogIndexes: []*int64{&one, &two}})
	seed(map[string]any{"entries": []any{map[string]any{"kind": "dsse", "apiVersion": "0.0.1",
		"spec": map[string]any{"proposedContent": map[string]any{"envelope": string(tl.envelopes[2]), "verifiers": [][]byte{tl.signerPEM}}}}}})
	body, _ := entry.DSSEBody(tl.envelopes[0], tl.signerPEM)
	var canonical map[string]any
	_ = json.Unmarshal(body, &canonical)
	seed(map[string]any{"entries": []any{canonical}})
	f.Add([]byte(`{"logIndexes":[-1]}`))
	f.Add([]byte(`{"logIndexes":[null, 9223372036854775807]}`))
	f.Add([]byte(`{"entryUUIDs":["zz", "` + fmt.Sprintf("%016x", 1) + hex.EncodeToString(make([]byte, 32)) + `"]}`))
	f.Add([]byte(`{"entries":[{"kind":"dsse","apiVersion":"0.0.1","spec":{"envelopeHash":{"algorithm":"sha256","value":"00"},"payloadHash":{},"signatures":[{"signature":"!","verifier":"AA=="}]}}]}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"entryUUIDs":[1]}`))
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, body []byte) {
		rec := post(h, "/api/v1/log/entries/retrieve", body)
		if rec.Code != http.StatusOK {
			checkError(t, rec, body)
			return
		}
		var out []map[string]rekorapi.LogEntryAnon
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("body %q: 200 with %q: %v", body, rec.Body, err)
		}
		for _, m := range out {
			for uuid, e := range m {
				idx, ok := known[uuid]
				if !ok || idx != e.LogIndex {
					t.Fatalf("body %q: answered entry %s at %d, which the log does not hold there", body, uuid, e.LogIndex)
				}
				leaf, err := base64.StdEncoding.DecodeString(e.Body)
				if err != nil || entry.UUID(tl.log.TreeID(), entry.LeafHash(leaf)) != uuid {
					t.Fatalf("body %q: entry %s has a body that does not hash to its UUID", body, uuid)
				}
				if e.Verification == nil || e.Verification.InclusionProof == nil {
					t.Fatalf("body %q: entry %s without an inclusion proof", body, uuid)
				}
			}
		}
	})
}

func FuzzIndexRetrieveBody(f *testing.F) {
	tl, h := fuzzLog(f)
	var uuids []string
	for _, e := range tl.entries {
		uuids = append(uuids, e.UUID)
	}
	sub := statement("decision-0")
	var st struct {
		Subject []struct {
			Digest map[string]string `json:"digest"`
		} `json:"subject"`
	}
	_ = json.Unmarshal(sub, &st)
	f.Add([]byte(`{"hash":"sha256:` + st.Subject[0].Digest["sha256"] + `"}`))
	f.Add([]byte(`{"hash":"` + hex.EncodeToString(make([]byte, 32)) + `"}`))
	f.Add([]byte(`{"hash":"sha1:00"}`))
	f.Add([]byte(`{"publicKey":{"format":"x509","content":"AA=="}}`))
	f.Add([]byte(`{"email":"a@example.com"}`))
	f.Add([]byte(`{"hash":"sha256:../../../../etc/passwd"}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))

	f.Fuzz(func(t *testing.T, body []byte) {
		rec := post(h, "/api/v1/index/retrieve", body)
		if rec.Code != http.StatusOK {
			checkError(t, rec, body)
			return
		}
		var out []string
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("body %q: 200 with %q: %v", body, rec.Body, err)
		}
		for _, u := range out {
			if !slices.Contains(uuids, u) {
				t.Fatalf("body %q: answered UUID %s, which the log does not hold", body, u)
			}
		}
	})
}

package main_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/gatelog/gatelog/internal/e2e"
	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/translog/rekorapi"
	"github.com/gatelog/gatelog/translog/verify"
)

// entryRead is one way the Rekor API serves an entry.
type entryRead struct{ method, path, body string }

func entryReads(rc decision.Receipt) []entryRead {
	return []entryRead{
		{http.MethodGet, "/api/v1/log/entries/" + rc.UUID, ""},
		{http.MethodGet, "/api/v1/log/entries?logIndex=" + itoa(rc.LogIndex), ""},
		{http.MethodPost, "/api/v1/log/entries/retrieve", `{"entryUUIDs":["` + rc.UUID + `"]}`},
	}
}

// readEntry sends rd with the bearer credential (none if empty) and
// returns the status, the raw answer and, on 200, the entry.
func readEntry(t *testing.T, d *e2e.Daemon, rd entryRead, bearer, uuid string) (int, http.Header, []byte, rekorapi.LogEntryAnon) {
	t.Helper()
	req, err := http.NewRequest(rd.method, d.URL+rd.path, strings.NewReader(rd.body))
	if err != nil {
		t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, resp.Header, raw, rekorapi.LogEntryAnon{}
	}
	var les []rekorapi.LogEntry
	if rd.method == http.MethodGet {
		var le rekorapi.LogEntry
		err = json.Unmarshal(raw, &le)
		les = append(les, le)
	} else {
		err = json.Unmarshal(raw, &les)
	}
	if err != nil || len(les) != 1 {
		t.Fatalf("%s %s: want one entry: %v\n%s", rd.method, rd.path, err, raw)
	}
	e, ok := les[0][uuid]
	if !ok {
		t.Fatalf("%s %s: entry %s not in the answer\n%s", rd.method, rd.path, uuid, raw)
	}
	return resp.StatusCode, resp.Header, raw, e
}

// recordStrings are values of the signed record that say who asked for
// what from where: none may be in the public view.
func recordStrings(v e2e.Verified) []string {
	r := v.Record.Request
	out := []string{v.Record.DecisionID, r.Subject.ID, r.Context.SourceIP, r.Resource.Repository, r.Resource.Name}
	out = append(out, r.Subject.Groups...)
	out = append(out, v.Record.Decision.Reasons...)
	return out
}

// leaked lists which of secrets occur in raw or in any base64 inside it
// (the entry body, an attestation), decoded.
func leaked(raw []byte, e rekorapi.LogEntryAnon, secrets []string) []string {
	text := string(raw)
	if b, err := base64.StdEncoding.DecodeString(e.Body); err == nil {
		text += string(b)
	}
	if e.Attestation != nil {
		text += string(e.Attestation.Data)
		var env struct {
			Payload string `json:"payload"`
		}
		if json.Unmarshal(e.Attestation.Data, &env) == nil {
			p, _ := base64.StdEncoding.DecodeString(env.Payload)
			text += string(p)
		}
	}
	var out []string
	for _, s := range secrets {
		quoted, _ := json.Marshal(s) // as it appears inside JSON
		if s != "" && (strings.Contains(text, s) || strings.Contains(text, strings.Trim(string(quoted), `"`))) {
			out = append(out, s)
		}
	}
	return out
}

// TestRecordsPrivateByDefault is the privacy model on the real daemon with
// its defaults: the Rekor API serves anyone an entry's leaf, proof and SET
// and nothing of the record (no subject, no source IP, no decision ID); an
// API key with the read permission gets the signed envelope; a key without
// it gets 403 and a bad key 401, never a quiet public view; the receipt
// holder still verifies offline with the public keys alone.
func TestRecordsPrivateByDefault(t *testing.T) {
	bin := e2e.Build(t)
	d := e2e.Start(t, bin, nil)
	body, err := os.ReadFile(e2e.Path(t, "examples/requests/deploy-prod.json"))
	if err != nil {
		t.Fatal(err)
	}
	code, _, raw := d.Post(t, "/v1/decide?wait=checkpoint", body, http.Header{"Authorization": {"Bearer " + d.APIKey}})
	var rc decision.Receipt
	if err := json.Unmarshal(raw, &rc); err != nil || code != http.StatusOK {
		t.Fatalf("decide: %d %s", code, raw)
	}
	v := d.Verify(t, rc.DecisionID) // offline, from the receipt, with the two public keys
	secrets := recordStrings(v)
	if v.Record.Request.Context.SourceIP != "192.0.2.10" || v.Record.Request.Subject.ID == "" {
		t.Fatalf("the record lacks what this test looks for: %+v", v.Record.Request)
	}

	logKey, err := cryptoutils.UnmarshalPEMToPublicKey(mustRead(t, filepath.Join(d.Data, "keys", "log.pub")))
	if err != nil {
		t.Fatal(err)
	}
	keys := &logFixture{bin: bin, data: d.Data, server: d.URL}
	reader := keys.createKey(t, "auditor", "read")
	decider := keys.createKey(t, "ci", "decide")

	for _, rd := range entryReads(rc) {
		name := rd.method + " " + strings.SplitN(rd.path, "?", 2)[0]
		t.Run("anyone "+name, func(t *testing.T) {
			code, h, raw, e := readEntry(t, d, rd, "", rc.UUID)
			if code != http.StatusOK {
				t.Fatalf("status %d: %s", code, raw)
			}
			if e.Attestation != nil || bytes.Contains(raw, []byte(`"attestation"`)) {
				t.Errorf("the public view carries the envelope:\n%s", raw)
			}
			if l := leaked(raw, e, secrets); len(l) > 0 {
				t.Errorf("the public view shows record fields %q:\n%s", l, raw)
			}
			if e.LogIndex != rc.LogIndex || e.Verification == nil || e.Verification.InclusionProof == nil {
				t.Fatalf("the public view lacks the leaf's inclusion proof:\n%s", raw)
			}
			leaf, err := base64.StdEncoding.DecodeString(e.Body)
			if err != nil {
				t.Fatal(err)
			}
			if err := verify.SET(e.Verification.SignedEntryTimestamp, leaf, e.IntegratedTime, e.LogID, e.LogIndex, logKey); err != nil {
				t.Errorf("the public view's SET does not verify with the log key: %v", err)
			}
			if !strings.Contains(h.Get("Vary"), "Authorization") {
				t.Errorf("Vary %q", h.Get("Vary"))
			}
		})
		t.Run("reader "+name, func(t *testing.T) {
			code, _, raw, e := readEntry(t, d, rd, reader, rc.UUID)
			if code != http.StatusOK || e.Attestation == nil || !bytes.Equal(e.Attestation.Data, rc.Envelope) {
				t.Fatalf("a read key does not get the logged envelope: %d\n%s", code, raw)
			}
			if l := leaked(raw, e, secrets); len(l) != len(secrets) {
				t.Errorf("the full record shows only %q of %q", l, secrets)
			}
		})
		t.Run("decide-only key "+name, func(t *testing.T) {
			code, _, raw, _ := readEntry(t, d, rd, decider, rc.UUID)
			if code != http.StatusForbidden || !bytes.Contains(raw, []byte("lacks the read permission")) {
				t.Fatalf("status %d, want 403 naming the read permission: %s", code, raw)
			}
		})
		t.Run("bad key "+name, func(t *testing.T) {
			code, h, raw, _ := readEntry(t, d, rd, "glk_forged", rc.UUID)
			if code != http.StatusUnauthorized || h.Get("WWW-Authenticate") == "" {
				t.Fatalf("status %d, want 401 with WWW-Authenticate: %s", code, raw)
			}
			if l := leaked(raw, rekorapi.LogEntryAnon{}, secrets); len(l) > 0 {
				t.Errorf("a refusal shows record fields %q", l)
			}
		})
	}
}

// TestPublicRecordsOptIn: an operator who wants a fully public log sets
// GATELOG_PUBLIC_RECORDS (serve --public-records), and then anyone reads
// every record through the Rekor API.
func TestPublicRecordsOptIn(t *testing.T) {
	bin := e2e.Build(t)
	d := e2e.Start(t, bin, []string{"GATELOG_PUBLIC_RECORDS=true"})
	body, err := os.ReadFile(e2e.Path(t, "examples/requests/deploy-prod.json"))
	if err != nil {
		t.Fatal(err)
	}
	code, _, raw := d.Post(t, "/v1/decide?wait=checkpoint", body, http.Header{"Authorization": {"Bearer " + d.APIKey}})
	var rc decision.Receipt
	if err := json.Unmarshal(raw, &rc); err != nil || code != http.StatusOK {
		t.Fatalf("decide: %d %s", code, raw)
	}
	v := d.Verify(t, rc.DecisionID)
	for _, rd := range entryReads(rc) {
		code, _, raw, e := readEntry(t, d, rd, "", rc.UUID)
		if code != http.StatusOK || e.Attestation == nil || !bytes.Equal(e.Attestation.Data, rc.Envelope) {
			t.Errorf("%s %s without a credential: %d, want the envelope\n%s", rd.method, rd.path, code, raw)
			continue
		}
		if l := leaked(raw, e, recordStrings(v)); !strings.Contains(strings.Join(l, " "), "192.0.2.10") {
			t.Errorf("%s %s: the public record does not show the source IP", rd.method, rd.path)
		}
	}
	if !strings.Contains(d.Log(), "--public-records") {
		t.Errorf("the daemon did not warn that records are public:\n%s", d.Log())
	}
}

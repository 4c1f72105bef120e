package daemon_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/gatelog/gatelog/daemon"
	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/translog/verify"
)

func TestEventsAreSignedLoggedAndSearchable(t *testing.T) {
	d := startOps(t, t.TempDir(), nil)
	body := `{"type":"login","subject":{"id":"alice"},"resource":{"system":"jenkins","name":"ci.acme"},"source":{"adapter":"jenkins"},` +
		`"message":"interactive login to the Jenkins UI","details":{"ip":"10.0.0.7"},"time":"2026-11-25T03:00:00Z",` +
		`"alerts":[{"severity":"medium","code":"night_login","message":"login at 3am"}]}`
	code, raw := d.Post("/v1/events?wait=checkpoint", d.Key, []byte(body))
	if code != http.StatusOK {
		t.Fatalf("POST /v1/events: %d %s", code, raw)
	}
	rc := decodeReceipt(t, raw)
	res, err := verify.Receipt(rc, d.LogKey, d.SignerKey)
	if err != nil {
		t.Fatalf("event receipt does not verify: %v", err)
	}
	rec := res.Statement.Predicate
	if rec.Request.Action != "event.login" || rec.Request.Subject.ID != "alice" || rec.Request.Subject.AssertedBy == "" ||
		rec.Request.Context.Unverified["reported_time"] != "2026-11-25T03:00:00Z" || rec.Caller.ID == "" {
		t.Errorf("event record = %+v", rec)
	}
	sr := d.search("kind=event")
	if len(sr.Results) != 1 || sr.Results[0].LogIndex != rc.LogIndex || sr.Results[0].Outcome != "event" || sr.Results[0].Alerts[0].Code != "night_login" {
		t.Errorf("event search = %+v", sr.Results)
	}
	if got := d.search("outcome=allow"); len(got.Results) != 0 {
		t.Errorf("an event counted as an allow: %+v", got.Results)
	}

	for _, tc := range []struct {
		key, body string
		want      int
	}{
		{d.Key, `{"type":"","message":"x"}`, http.StatusBadRequest},
		{d.Key, `{"type":"login","colour":"red"}`, http.StatusBadRequest},
		{d.decideOnlyKey, `{"type":"login","subject":{"id":"bob"}}`, http.StatusForbidden},
		{d.readKey, `{"type":"login"}`, http.StatusForbidden},
		{"", `{"type":"login"}`, http.StatusUnauthorized},
		// A caller cannot raise the daemon's own alarms, nor flood the outbox.
		{d.Key, `{"type":"x","alerts":[{"severity":"critical","code":"gatelog.fail_closed","message":"forged"}]}`, http.StatusBadRequest},
		{d.Key, `{"type":"x","alerts":[{"severity":"critical","code":"GATELOG.deny_burst"}]}`, http.StatusBadRequest},
		{d.Key, `{"type":"x","alerts":[` + strings.Repeat(`{"severity":"high","code":"c"},`, 1300) + `{"severity":"high","code":"c"}]}`, http.StatusBadRequest},
		{d.Key, `{"type":"x","alerts":[{"severity":"apocalyptic","code":"c"}]}`, http.StatusBadRequest},
		{d.Key, `{"type":"x","alerts":[{"severity":"high","code":"` + strings.Repeat("c", 65) + `"}]}`, http.StatusBadRequest},
		{d.Key, `{"type":"x","alerts":[{"severity":"high","code":"a\u001b[2Kb"}]}`, http.StatusBadRequest},
	} {
		if code, raw := d.Post("/v1/events", tc.key, []byte(tc.body)); code != tc.want {
			t.Errorf("POST %s: %d %s, want %d", tc.body, code, raw, tc.want)
		}
	}
	// A caller without vouch reports events about itself.
	code, raw = d.Post("/v1/events", d.decideOnlyKey, []byte(`{"type":"config.change","message":"changed a pipeline"}`))
	if code != http.StatusOK {
		t.Fatalf("self-reported event: %d %s", code, raw)
	}
}

func FuzzParseEventRequest(f *testing.F) {
	f.Add([]byte(`{"type":"login","subject":{"id":"alice"},"message":"m","details":{"a":1},"time":"2026-11-25T03:00:00Z"}`))
	f.Add([]byte(`{"type":"x","alerts":[{"code":"c","severity":"high"}]}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		if _, err := daemon.ParseEventRequest(raw); err != nil && !errors.Is(err, decision.ErrBadRequest) {
			t.Fatalf("error %v does not wrap ErrBadRequest", err)
		}
	})
}

func decodeReceipt(t *testing.T, raw []byte) decision.Receipt {
	t.Helper()
	var rc decision.Receipt
	if err := json.Unmarshal(raw, &rc); err != nil {
		t.Fatalf("not a receipt: %v: %s", err, raw)
	}
	return rc
}

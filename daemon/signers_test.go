package daemon_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/gatelog/gatelog/daemon"
	"github.com/gatelog/gatelog/daemon/api"
	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/record/receipt"
	"github.com/gatelog/gatelog/translog/verify"
)

// Rotating the decision-signing key: the rotation is a log entry signed by
// the old key; after the restart new records carry the new key ID; the
// published key set verifies old and new receipts, each by its own key.
func TestSigningKeyRotationKeepsOldReceiptsVerifiable(t *testing.T) {
	dir := t.TempDir()
	d := startDaemon(t, dir)
	old := d.Decide(allowedDeploy)
	code, raw := d.Post("/v1/signing-keys", d.Key, []byte(`{}`))
	if code != http.StatusCreated {
		t.Fatalf("rotate: %d %s", code, raw)
	}
	var rot api.RotateSignerResponse
	if err := json.Unmarshal(raw, &rot); err != nil {
		t.Fatal(err)
	}
	if code, raw := d.Post("/v1/signing-keys", d.Key, []byte(`{}`)); code != http.StatusConflict {
		t.Errorf("second rotation before restart: %d %s", code, raw)
	}
	d.Stop()

	d = startDaemon(t, dir)
	fresh := d.Decide(allowedDeploy)
	resp, err := http.Get(d.HTTP.URL + "/v1/keys")
	if err != nil {
		t.Fatal(err)
	}
	var ks daemon.SigningKeys
	err = json.NewDecoder(resp.Body).Decode(&ks)
	resp.Body.Close()
	if err != nil || len(ks.Keys) != 2 || ks.Keys[0].ValidUntil.IsZero() || ks.Keys[1].ValidFrom.IsZero() || ks.Keys[1].KeyID != rot.Key.KeyID {
		t.Fatalf("key set: %+v %v", ks, err)
	}
	rotation := fetch(t, d, rot.Receipt.DecisionID)
	for name, rc := range map[string]decision.Receipt{"before": old, "rotation entry": rotation, "after": fresh} {
		st, err := receipt.ParseStatement(payload(t, rc))
		if err != nil {
			t.Fatal(err)
		}
		pub, err := ks.Select(st.Predicate.Daemon.KeyID, time.Unix(rc.IntegratedTime, 0))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := verify.Receipt(rc, d.LogKey, pub); err != nil {
			t.Errorf("%s receipt does not verify with its key from the set: %v", name, err)
		}
	}
	if _, err := verify.Receipt(fresh, d.LogKey, d.SignerKey); err == nil {
		t.Error("a new receipt verifies with the retired key")
	}
	st, _ := receipt.ParseStatement(payload(t, rotation))
	if st.Predicate.Request.Action != daemon.ActionSignerRotate || st.Predicate.Request.Resource.Attributes["public_key"] != rot.Key.PublicKey {
		t.Errorf("rotation entry: %+v", st.Predicate.Request)
	}
	// A key used outside its window is refused.
	if _, err := ks.Select(ks.Keys[0].KeyID, time.Now().Add(time.Hour)); err == nil {
		t.Error("retired key accepted for an entry logged after its retirement")
	}
}

func fetch(t *testing.T, d *testDaemon, id string) decision.Receipt {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, d.HTTP.URL+"/v1/decisions/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+d.Key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rc decision.Receipt
	if err := json.NewDecoder(resp.Body).Decode(&rc); err != nil {
		t.Fatal(err)
	}
	return rc
}

func payload(t *testing.T, rc decision.Receipt) []byte {
	t.Helper()
	var env struct{ Payload []byte }
	if err := json.Unmarshal(rc.Envelope, &env); err != nil {
		t.Fatal(err)
	}
	return env.Payload
}

func FuzzParseSigningKeys(f *testing.F) {
	f.Add([]byte(`{"keys":[{"key_id":"ab","public_key":"-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n","valid_from":"2026-01-01T00:00:00Z"}]}`))
	f.Add([]byte(`{"keys":[]}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		ks, err := daemon.ParseSigningKeys(raw)
		if err != nil {
			return
		}
		for _, k := range ks.Keys {
			_, _ = ks.Select(k.KeyID, time.Unix(0, 0))
		}
	})
}

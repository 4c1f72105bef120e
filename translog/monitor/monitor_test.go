package monitor_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/gatelog/gatelog/internal/logtest"
	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/record/receipt"
	"github.com/gatelog/gatelog/translog"
	"github.com/gatelog/gatelog/translog/monitor"
	"github.com/gatelog/gatelog/translog/rekorapi"
	"github.com/gatelog/gatelog/translog/verify"
)

const readerKey = "reader"

// readersOnly is the daemon's rule (daemon): no credential sees
// leaves, the reader key records, anything else is a 401.
func readersOnly(w http.ResponseWriter, r *http.Request) rekorapi.View {
	switch r.Header.Get("Authorization") {
	case "":
		return rekorapi.Leaf
	case "Bearer " + readerKey:
		return rekorapi.Full
	}
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = io.WriteString(w, `{"code":401,"message":"unauthenticated: unknown API key"}`)
	return rekorapi.Refused
}

// withholding accepts any credential and still serves only leaves: a log
// hiding its records from a reader it owes them to.
func withholding(http.ResponseWriter, *http.Request) rekorapi.View { return rekorapi.Leaf }

type fixture struct {
	logKey, signKey crypto.PublicKey
	servers         map[string]string // access rule name → URL
}

// newFixture is a real log of three signed entries, served (tiles and
// Rekor API) under each access rule.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	logKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	l, err := translog.Open(ctx, logtest.Files(t, translog.Config{Dir: t.TempDir(), Key: logKey, CheckpointInterval: 100 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close(context.Background()) })
	signKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sv, _ := signature.LoadECDSASignerVerifier(signKey, crypto.SHA256)
	signer, err := receipt.NewSigner(sv)
	if err != nil {
		t.Fatal(err)
	}
	pem, _ := cryptoutils.MarshalPublicKeyToPEM(signKey.Public())
	for i := range 3 {
		env, err := signer.Sign(decision.Record{DecisionID: fmt.Sprint(i), Request: decision.Request{Subject: decision.Subject{ID: "alice"}, Action: "deploy"}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Append(ctx, fmt.Sprint(i), env, pem); err != nil {
			t.Fatal(err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := l.InclusionProof(wctx, 2, true); err != nil {
		t.Fatal(err)
	}
	f := &fixture{logKey: logKey.Public(), signKey: signKey.Public(), servers: map[string]string{}}
	for name, access := range map[string]func(http.ResponseWriter, *http.Request) rekorapi.View{
		"private": readersOnly, "public records": rekorapi.PublicRecords, "withholding": withholding,
	} {
		mux := http.NewServeMux()
		mux.Handle("/", l.TilesHandler())
		mux.Handle("/api/v1/", rekorapi.Handler(l, rekorapi.Options{Access: access}))
		srv := httptest.NewServer(mux)
		t.Cleanup(srv.Close)
		f.servers[name] = srv.URL
	}
	return f
}

// TestMonitorRecordsPrivacy: without a read key the monitor still checks
// consistency, every leaf and that every entry names the signer key, and
// reports the envelopes it could not check, with neither an alarm nor a
// silent pass; with a read key (or public records) it checks them all; a
// refused key is an error to fix, not an alarm; a log that withholds
// records from a reader it accepted is an alarm.
func TestMonitorRecordsPrivacy(t *testing.T) {
	f := newFixture(t)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keys := func(ks ...verify.SigningKey) *verify.SigningKeys { return &verify.SigningKeys{Keys: ks} }
	key := func(pub crypto.PublicKey, from, until time.Time) verify.SigningKey {
		ks, err := verify.KeySet(pub)
		if err != nil {
			t.Fatal(err)
		}
		ks.Keys[0].ValidFrom, ks.Keys[0].ValidUntil = from, until
		return ks.Keys[0]
	}
	now := time.Now()
	signer := keys(key(f.signKey, time.Time{}, time.Time{}))
	// A rotation: the other key retired an hour ago, the signing key since.
	rotated := keys(key(other.Public(), now.Add(-48*time.Hour), now.Add(-time.Hour)), key(f.signKey, now.Add(-time.Hour), time.Time{}))
	// The signing key retired an hour before its entries were logged.
	retired := keys(key(f.signKey, now.Add(-48*time.Hour), now.Add(-time.Hour)), key(other.Public(), now.Add(-time.Hour), time.Time{}))
	for _, tc := range []struct {
		name, server, bearer string
		signer               *verify.SigningKeys
		want                 monitor.Envelopes
		describe             string
		alarm                string // want an alarm of this kind
		cause                error  // and its cause
		refused              int    // want this HTTP status, not an alarm
	}{
		{name: "no key", server: "private", signer: signer, want: monitor.Envelopes{Private: 3},
			describe: "3 envelopes not checked: records are private (give a read key); every entry names a signer key valid when it was logged"},
		{name: "no key, no signer key", server: "private", want: monitor.Envelopes{Private: 3},
			describe: "3 envelopes not checked: records are private (give a read key)"},
		{name: "read key", server: "private", bearer: readerKey, signer: signer, want: monitor.Envelopes{Checked: 3},
			describe: "3 envelope signatures OK"},
		{name: "public records", server: "public records", signer: signer, want: monitor.Envelopes{Checked: 3},
			describe: "3 envelope signatures OK"},
		{name: "bad key", server: "private", bearer: "forged", signer: signer, refused: 401},
		{name: "records withheld from a reader", server: "withholding", bearer: readerKey, signer: signer, alarm: monitor.BadEntry},
		{name: "no key, entries name another signer", server: "private", signer: keys(key(other.Public(), time.Time{}, time.Time{})), alarm: monitor.BadEntry, cause: verify.ErrUnknownKey},
		{name: "after a rotation, read key", server: "private", bearer: readerKey, signer: rotated, want: monitor.Envelopes{Checked: 3},
			describe: "3 envelope signatures OK"},
		{name: "after a rotation, no key", server: "private", signer: rotated, want: monitor.Envelopes{Private: 3},
			describe: "3 envelopes not checked: records are private (give a read key); every entry names a signer key valid when it was logged"},
		{name: "signed after the key was retired, read key", server: "private", bearer: readerKey, signer: retired, alarm: monitor.BadEntry, cause: verify.ErrKeyNotValid},
		{name: "signed after the key was retired, no key", server: "private", signer: retired, alarm: monitor.BadEntry, cause: verify.ErrKeyNotValid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			var opts []verify.Option
			if tc.signer != nil {
				opts = append(opts, verify.WithSigningKeys(*tc.signer))
			}
			v, err := verify.New(f.logKey, opts...)
			if err != nil {
				t.Fatal(err)
			}
			fl, err := monitor.New(monitor.Config{Server: f.servers[tc.server], Verifier: v, Bearer: tc.bearer})
			if err != nil {
				t.Fatal(err)
			}
			if err := fl.Start(ctx, nil); err != nil {
				t.Fatal(err)
			}
			rep, err := fl.Step(ctx)
			var al *monitor.Alarm
			var he *rekorapi.HTTPError
			switch {
			case tc.alarm != "":
				if !errors.As(err, &al) || al.Kind != tc.alarm {
					t.Fatalf("Step: %v, want a %s alarm", err, tc.alarm)
				}
				if tc.cause != nil && (!errors.Is(err, tc.cause) || !errors.Is(err, verify.ErrFailed)) {
					t.Fatalf("Step: %v, want an alarm caused by %v", err, tc.cause)
				}
				return
			case tc.refused != 0:
				if errors.As(err, &al) || !errors.As(err, &he) || he.StatusCode != tc.refused {
					t.Fatalf("Step: %v (%T), want a plain %d error, not an alarm", err, err, tc.refused)
				}
				return
			case err != nil:
				t.Fatalf("Step: %v", err)
			}
			if rep.Size != 3 || rep.NewEntries != 3 || rep.Envelopes != tc.want {
				t.Errorf("report: size %d, %d new, envelopes %+v; want 3, 3, %+v", rep.Size, rep.NewEntries, rep.Envelopes, tc.want)
			}
			if got := rep.Envelopes.Describe(tc.signer != nil); got != tc.describe {
				t.Errorf("described as %q, want %q", got, tc.describe)
			}
			// The cheap right-edge audit (gatelog log info) counts alike.
			raw, cp, err := fl.FetchCheckpoint(ctx)
			if err != nil {
				t.Fatal(err)
			}
			envs, err := fl.CheckLatest(ctx, raw, cp)
			if err != nil || envs != tc.want {
				t.Errorf("CheckLatest: %+v %v, want %+v", envs, err, tc.want)
			}
			if tc.want.Private > 0 && !strings.Contains(rep.Envelopes.Describe(false), "records are private") {
				t.Errorf("a private log's report does not say so")
			}
		})
	}
}

package sigbundle_test

import (
	"context"
	"crypto"
	"log"
	"os"
	"time"

	"github.com/gatelog/gatelog/translog/rekorapi"
	"github.com/gatelog/gatelog/translog/sigbundle"
)

// Write the Sigstore bundle of the decision at log index 0, and a trusted
// root for the log, for sigstore-go or cosign to verify offline. The
// bundle holds the record, so the client needs an API key with the read
// permission (unless the daemon runs with --public-records).
func Example() {
	ctx := context.Background()
	c, err := rekorapi.NewClient("http://127.0.0.1:8080", nil, rekorapi.WithBearer(os.Getenv("GATELOG_API_KEY")))
	if err != nil {
		log.Fatal(err)
	}
	b, err := sigbundle.Fetch(ctx, c, 0)
	if err != nil {
		log.Fatal(err)
	}
	raw, err := sigbundle.Marshal(b)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile("bundle.json", raw, 0o644); err != nil {
		log.Fatal(err)
	}

	var logKey crypto.PublicKey // the log's public key, from keys/log.pub
	tr, err := sigbundle.TrustedRoot(logKey, "http://127.0.0.1:8080", time.Unix(b.GetVerificationMaterial().GetTlogEntries()[0].GetIntegratedTime(), 0))
	if err != nil {
		log.Fatal(err)
	}
	if raw, err = sigbundle.Marshal(tr); err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile("trusted_root.json", raw, 0o644); err != nil {
		log.Fatal(err)
	}
}

package identity_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/gatelog/gatelog/engine/identity"
	"github.com/gatelog/gatelog/record/decision"
)

func writeFile(path string, b []byte) error { return os.WriteFile(path, b, 0o600) }

// An API key authenticates its holder; Bind makes the holder the verified
// subject of the request, whatever the payload said.
func Example() {
	dir, _ := os.MkdirTemp("", "identity")
	defer os.RemoveAll(dir)
	keys, _ := identity.OpenKeyStore(filepath.Join(dir, "apikeys.json"))
	now := time.Now()
	secret, _, _ := keys.Create("ci-jenkins", []string{identity.PermDecide}, 90*24*time.Hour, now)

	auth, _ := identity.NewAuthenticator(context.Background(), identity.Options{Keys: keys})
	caller, err := auth.Authenticate(context.Background(), identity.Credentials{Authorization: "Bearer " + secret})
	if err != nil {
		panic(err)
	}
	req := decision.Request{Action: "pipeline.trigger"}
	if err := identity.Bind(&req, caller, now); err != nil {
		panic(err)
	}
	fmt.Println(req.Subject.ID, req.Subject.Kind, req.Subject.Verified)
	// Output: apikey:ci-jenkins api_key true
}

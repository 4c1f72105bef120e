package callback_test

import (
	"fmt"
	"os"

	"github.com/gatelog/gatelog/plugins/github"
	"github.com/gatelog/gatelog/plugins/github/callback"
)

// The daemon queues the review for a delivery once its decision is logged;
// Run delivers it as the App's installation, retrying until GitHub takes it.
func Example() {
	dir, err := os.MkdirTemp("", "gatelog-callbacks-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	o, err := callback.Open(dir, callback.Options{AppID: 1012345, PrivateKey: appKeyPEM()})
	if err != nil {
		panic(err)
	}
	// Only the review endpoint of a run of the delivery's repository, on
	// the configured GitHub API, ever gets the installation token.
	if _, err := o.CheckURL("https://evil.example/repos/acme/shop/actions/runs/1/deployment_protection_rule", "acme/shop"); err != nil {
		fmt.Println(err)
	}
	u, err := o.CheckURL("https://api.github.com/repos/acme/shop/actions/runs/11843319027/deployment_protection_rule", "acme/shop")
	if err != nil {
		panic(err)
	}
	queued, err := o.Enqueue(callback.Job{
		ID: "8c6a2a70-c6e1-11f0-8f1f-3e1c4b7a9d21", URL: u, InstallationID: 52210437,
		Review: github.Review{EnvironmentName: "production", State: github.StateRejected, Comment: "gatelog: DENIED (decision 6f1c…, log index 7): freeze window"},
	})
	fmt.Println(queued, err, o.Depth())
	// The daemon then runs o.Run(ctx) until it shuts down; a review still
	// pending then is delivered after the next start.
	// Output:
	// invalid deployment review: deployment_callback_url "https://evil.example/repos/acme/shop/actions/runs/1/deployment_protection_rule" is not on the configured GitHub API https://api.github.com
	// true <nil> 1
}

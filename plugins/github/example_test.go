package github_test

import (
	"context"
	"fmt"
	"net/http"
	"os"

	"github.com/gatelog/gatelog/plugins/adapter"
	"github.com/gatelog/gatelog/plugins/github"
	"github.com/gatelog/gatelog/record/decision"
)

// The daemon's side of a deployment protection rule: check the delivery's
// signature, translate it, and render the review for the decision.
func Example() {
	ctx := context.Background()
	secret := []byte("webhook secret of the GitHub App")
	body, err := os.ReadFile("testdata/push-main-production.payload.json")
	if err != nil {
		panic(err)
	}
	signature := github.Sign(secret, body) // what GitHub sends as X-Hub-Signature-256
	if err := github.VerifySignature(secret, body, signature); err != nil {
		fmt.Println("401:", err)
		return
	}
	in := adapter.Native{Body: body, Headers: http.Header{"X-Github-Delivery": {"8c6a2a70-c6e1-11f0-8f1f-3e1c4b7a9d21"}}}
	a := github.New()
	req, err := a.Translate(ctx, in)
	if err != nil {
		panic(err)
	}
	fmt.Println(req.Subject.ID, req.Action, req.Resource.Repository, req.Resource.Environment, req.Resource.Attributes["workflow_run_id"])

	rc := &decision.Receipt{DecisionID: "6f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f", Allow: false, LogIndex: 7,
		Reasons: []string{"deploy to production requires group release-managers and MFA"}}
	resp, err := a.Render(ctx, in, adapter.Outcome{Receipt: rc})
	if err != nil {
		panic(err)
	}
	fmt.Printf("%d %s", resp.Status, resp.Body)
	// Output:
	// alice deploy acme/shop production 11843319027
	// 200 {"environment_name":"production","state":"rejected","comment":"gatelog: DENIED (decision 6f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f, log index 7): deploy to production requires group release-managers and MFA"}
}

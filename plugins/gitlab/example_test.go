package gitlab_test

import (
	"context"
	"fmt"
	"os"

	"github.com/gatelog/gatelog/plugins/adapter"
	"github.com/gatelog/gatelog/plugins/gitlab"
	"github.com/gatelog/gatelog/record/decision"
)

// The daemon's side of external pipeline validation: check the token,
// translate the pipeline, render the decision as 200 or 406.
func Example() {
	ctx := context.Background()
	if err := gitlab.VerifyToken([]byte("configured token"), "configured token"); err != nil {
		fmt.Println("406:", err)
		return
	}
	body, err := os.ReadFile("testdata/deploy-prod-main.payload.json")
	if err != nil {
		panic(err)
	}
	a := gitlab.New()
	// deploy_prod deploys to production by its name; main is protected.
	if err := a.Configure(ctx, map[string]string{gitlab.SettingInstanceRequires2FA: "true"}); err != nil {
		panic(err)
	}
	in := adapter.Native{Body: body}
	req, err := a.Translate(ctx, in)
	if err != nil {
		panic(err)
	}
	fmt.Println(req.Subject.ID, req.Subject.MFA, req.Action, req.Resource.Repository, req.Resource.Ref, req.Resource.Environment)
	fmt.Println(req.Resource.Attributes["gated_as"])

	rc := &decision.Receipt{DecisionID: "0b7e5d1c-3f2a-4e8b-9c6d-1a2b3c4d5e6f", LogIndex: 12,
		Reasons: []string{"deploy to production requires group release-managers and MFA"}}
	resp, err := a.Render(ctx, in, adapter.Outcome{Receipt: rc})
	if err != nil {
		panic(err)
	}
	fmt.Printf("%d %s", resp.Status, resp.Body)
	// Output:
	// alice true deploy acme/shop refs/heads/main production
	// deploy jobs on a protected ref: deploy_prod
	// 406 {"allow":false,"message":"gatelog: pipeline rejected (decision 0b7e5d1c-3f2a-4e8b-9c6d-1a2b3c4d5e6f, log index 12): deploy to production requires group release-managers and MFA","reasons":["deploy to production requires group release-managers and MFA"],"decision_id":"0b7e5d1c-3f2a-4e8b-9c6d-1a2b3c4d5e6f","log_index":12}
}

package triggersauth_test

import (
	"encoding/json"
	"fmt"

	"github.com/gatelog/gatelog/plugins/github"
	"github.com/gatelog/gatelog/plugins/tekton/triggersauth"
)

// An EventListener forwards a GitHub push signed with the webhook secret;
// the source whose secret verifies it is the caller, and the request handed
// on no longer carries the signature.
func ExampleVerifier_Verify() {
	secret := []byte("It's a Secret to Everybody")
	v, err := triggersauth.New([]triggersauth.Source{
		{Name: "github", Provider: triggersauth.GitHub, Secret: secret, Namespaces: []string{"ci"}},
	})
	if err != nil {
		panic(err)
	}
	body := `{"ref":"refs/heads/main","sender":{"login":"octocat"}}`
	ir, _ := json.Marshal(map[string]any{
		"body":    body,
		"header":  map[string][]string{"X-Github-Event": {"push"}, "X-Hub-Signature-256": {github.Sign(secret, []byte(body))}},
		"context": map[string]string{"trigger_id": "namespaces/ci/triggers/release"},
	})
	got, err := v.Verify(ir)
	fmt.Println(got.Source.Name, got.TriggerID, err)
	fmt.Println(string(got.Request))

	_, err = v.Verify([]byte(`{"body":"{}","header":{"X-Github-Event":["push"]},"context":{"trigger_id":"namespaces/ci/triggers/release"}}`))
	fmt.Println(err)
	// Output:
	// github namespaces/ci/triggers/release <nil>
	// {"body":"{\"ref\":\"refs/heads/main\",\"sender\":{\"login\":\"octocat\"}}","header":{"X-Github-Event":["push"]},"context":{"trigger_id":"namespaces/ci/triggers/release"}}
	// the InterceptorRequest's webhook is not verified: webhook signature rejected: missing X-Hub-Signature-256 header (sources tried: github)
}

package identitytest_test

import (
	"fmt"
	"time"

	"github.com/gatelog/gatelog/engine/identity/identitytest"
)

func Example() {
	iss, err := identitytest.NewIssuer()
	if err != nil {
		panic(err)
	}
	defer iss.Close()
	tok, err := iss.Token(iss.GitHubActions(time.Now(), "gatelog", "run-1"))
	if err != nil {
		panic(err)
	}
	fmt.Println(len(tok) > 0, iss.URL[:7])
	// Output: true http://
}

// A build's token, as the Jenkins oidc-provider plugin mints it with its
// default claim templates: sub is the job URL, no jti.
func ExampleNewJenkins() {
	j, err := identitytest.NewJenkins("gatelog-oidc-token")
	if err != nil {
		panic(err)
	}
	defer j.Close()
	tok, err := j.BuildToken(time.Now(), "gatelog", map[string]string{
		"JOB_URL": "https://jenkins.example.com/job/payments/job/deploy/", "BUILD_NUMBER": "142",
	})
	if err != nil {
		panic(err)
	}
	_, err = j.BuildToken(time.Now(), "gatelog", map[string]string{"BUILD_NUMBER": "142"})
	fmt.Println(len(tok) > 0, j.Issuer == j.RootURL+"oidc", err)
	// Output: true true apparently unsubstituted claims: ${JOB_URL}
}

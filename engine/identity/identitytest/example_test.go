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

// Command gatelog is the gatelog daemon and its command-line client.
//
//	gatelog serve                        run the daemon
//	gatelog decide --input req.json      ask for a decision (exit 0 allow, 2 deny, 1 error)
//	gatelog verify --receipt r.json ...  verify a receipt offline
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// exitDenied is the exit status of a decide that was answered with a deny.
const exitDenied = 2

func main() {
	reexecWithStackGODEBUG(os.Args)
	if err := newApp().Run(os.Args); err != nil {
		var ec cli.ExitCoder
		if errors.As(err, &ec) {
			if msg := err.Error(); msg != "" {
				fmt.Fprintln(os.Stderr, "gatelog:", msg)
			}
			os.Exit(ec.ExitCode())
		}
		fmt.Fprintln(os.Stderr, "gatelog:", err)
		os.Exit(1)
	}
}

// newApp is the whole command tree; the docs test parses every documented
// command line against it.
func newApp() *cli.App {
	return &cli.App{
		Name:    "gatelog",
		Usage:   "signed, transparency-logged policy decisions for CI/CD",
		Version: version,
		Commands: []*cli.Command{
			serveCommand(),
			decideCommand(),
			verifyCommand(),
			adapterCommand(),
			auditCommand(),
			indexCommand(),
			alertsCommand(),
			keysCommand(),
			policyCommand(),
			logCommand(),
			monitorCommand(),
		},
		ExitErrHandler: func(*cli.Context, error) {},
	}
}

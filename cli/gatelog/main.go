// Command gatelog is the gatelog daemon and its command-line client.
//
//	gatelog serve                        run the daemon
//	gatelog decide --input req.json      ask for a decision (exit 0 allow, 2 deny, 3 not verified, 1 error)
//	gatelog verify --receipt r.json ...  verify a receipt offline (exit 0 verified, 3 not, 1 error)
//
// Every command shares one exit-code table (exit.go) and every command that
// talks to a daemon one HTTP client and its flags (client.go).
package main

import (
	"os"

	"github.com/urfave/cli/v2"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	reexecWithStackGODEBUG(os.Args)
	os.Exit(report(os.Stderr, newApp().Run(os.Args)))
}

// newApp is the whole command tree; the docs test parses every documented
// command line against it.
func newApp() *cli.App {
	return &cli.App{
		Name:        "gatelog",
		Usage:       "signed, transparency-logged policy decisions for CI/CD",
		Version:     version,
		Description: exitCodesHelp + "\n\n" + connectionHelp,
		Commands:    commands(),
		// Errors are printed and mapped to exit codes once, by report.
		ExitErrHandler: func(*cli.Context, error) {},
	}
}

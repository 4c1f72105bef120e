//go:build auditor

package main

import "github.com/urfave/cli/v2"

// commands, in the auditor's build (go build -tags auditor, make
// auditor), are the clients and the offline verifiers only: no daemon, no
// adapters, no policy engine — the binary carries no OPA, and an auditor
// can read every line it runs (TestAuditorBuildHasNoPolicyEngine).
func commands() []*cli.Command {
	return []*cli.Command{
		decideCommand(),
		verifyCommand(),
		auditCommand(),
		indexCommand(),
		alertsCommand(),
		keysCommand(),
		logCommand(),
		monitorCommand(),
	}
}

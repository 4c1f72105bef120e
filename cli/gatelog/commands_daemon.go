//go:build !auditor

package main

import "github.com/urfave/cli/v2"

// commands is the whole command tree: the daemon, the adapters and the
// policy tools (which need the policy engine, OPA) beside the clients.
func commands() []*cli.Command {
	return []*cli.Command{
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
	}
}

//go:build !auditor

package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/gatelog/gatelog/daemon"
	"github.com/gatelog/gatelog/engine/alert"
)

// alertServeFlags are gatelog serve's flags for alerts and readiness.
func alertServeFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "alerts-config", Usage: "JSON file of alert sinks (stdout, webhook, slack, syslog); see docs/operators.md, Alerts", EnvVars: []string{"GATELOG_ALERTS_CONFIG"}},
		&cli.DurationFlag{Name: "max-checkpoint-age", Value: daemon.DefaultMaxCheckpointAge, Usage: "/readyz fails when the published checkpoint is older", EnvVars: []string{"GATELOG_MAX_CHECKPOINT_AGE"}},
	}
}

// alertsConfig reads --alerts-config (no file: no sinks; alerts are still
// kept in the outbox and streamed).
func alertsConfig(c *cli.Context) (alert.Config, error) {
	path := c.String("alerts-config")
	if path == "" {
		return alert.Config{}, nil
	}
	cfg, err := alert.LoadConfig(path)
	if err != nil {
		return cfg, fmt.Errorf("--alerts-config: %w", err)
	}
	return cfg, nil
}

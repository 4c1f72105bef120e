//go:build !auditor

package main

import (
	"github.com/urfave/cli/v2"

	"github.com/gatelog/gatelog/plugins/builtin"
	"github.com/gatelog/gatelog/plugins/webhook"
)

func webhookServeFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "webhooks-config", Usage: "JSON file of CI systems that call with a webhook secret: {\"github\": {app_id, webhook_secret_file, private_key_file, api_url}, \"gitlab\": {token_file, answer_within}, \"tekton_triggers\": {adapter, sources: [{name, provider, secret_file, namespaces}]}} (see docs/integrations.md)", EnvVars: []string{"GATELOG_WEBHOOKS_CONFIG"}},
	}
}

// webhooksConfig loads --webhooks-config (secrets from the files it names)
// into the hooks the daemon opens.
func webhooksConfig(c *cli.Context) ([]webhook.Opener, error) {
	f := c.String("webhooks-config")
	if f == "" {
		return nil, nil
	}
	w, err := builtin.LoadWebhooks(f)
	if err != nil {
		return nil, err
	}
	return w.Openers(), nil
}

//go:build !auditor

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"

	"github.com/urfave/cli/v2"

	"github.com/gatelog/gatelog/plugins/builtin"
	"github.com/gatelog/gatelog/plugins/host"
)

func adapterServeFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "adapter", Usage: "serve a built-in CI adapter at /v1/adapters/NAME (" + fmt.Sprint(builtin.Names()) + "); repeatable", EnvVars: []string{"GATELOG_ADAPTERS"}},
		&cli.StringFlag{Name: "adapters-config", Usage: "JSON file listing adapters: [{\"Name\",\"Builtin\"|\"Command\",\"SHA256\",\"Args\",\"Settings\"}]", EnvVars: []string{"GATELOG_ADAPTERS_CONFIG"}},
	}
}

// adaptersConfig is the built-ins named by --adapter plus the adapters in
// --adapters-config (third-party executables must name their sha256).
func adaptersConfig(c *cli.Context) ([]host.Config, error) {
	var out []host.Config
	for _, name := range c.StringSlice("adapter") {
		if !slices.Contains(builtin.Names(), name) {
			return nil, fmt.Errorf("--adapter %s: no such built-in adapter (have %v)", name, builtin.Names())
		}
		out = append(out, host.Config{Name: name, Builtin: name})
	}
	if f := c.String("adapters-config"); f != "" {
		raw, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("--adapters-config: %w", err)
		}
		var more []host.Config
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&more); err != nil {
			return nil, fmt.Errorf("--adapters-config %s: %w", f, err)
		}
		out = append(out, more...)
	}
	return out, nil
}

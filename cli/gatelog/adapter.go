//go:build !auditor

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/gatelog/gatelog/plugins/adapter"
	"github.com/gatelog/gatelog/plugins/builtin"
	"github.com/gatelog/gatelog/plugins/host"
)

func adapterCommand() *cli.Command {
	return &cli.Command{
		Name:  "adapter",
		Usage: "CI adapters: list the built-ins, checksum an executable, show a translation, serve one (run by the daemon)",
		Subcommands: []*cli.Command{
			{
				Name:  "list",
				Usage: "list the adapters built into this binary",
				Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"}},
				Action: func(c *cli.Context) error {
					type row struct {
						Name    string   `json:"name"`
						Version string   `json:"version"`
						Kinds   []string `json:"kinds"`
					}
					var rows []row
					for _, name := range builtin.Names() {
						a, err := builtin.New(name)
						if err != nil {
							return err
						}
						info, err := a.Info(c.Context)
						if err != nil {
							return fmt.Errorf("adapter %s: %w", name, err)
						}
						rows = append(rows, row{info.Name, info.Version, info.Kinds})
					}
					if c.Bool("json") {
						return printAdapterJSON(c.App.Writer, rows)
					}
					tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "NAME\tVERSION\tACCEPTS")
					for _, r := range rows {
						fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Name, r.Version, strings.Join(r.Kinds, "; "))
					}
					return tw.Flush()
				},
			},
			{
				Name:      "checksum",
				Usage:     "print the sha256 of an adapter executable, for the daemon config",
				ArgsUsage: "PATH",
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return cli.Exit("usage: gatelog adapter checksum PATH", 1)
					}
					sum, err := host.FileSHA256(c.Args().First())
					if err != nil {
						return err
					}
					fmt.Fprintln(c.App.Writer, sum)
					return nil
				},
			},
			{
				Name:      "translate",
				Usage:     "show the request a built-in adapter makes of a payload (what policies see as input)",
				ArgsUsage: "NAME",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "input", Aliases: []string{"i"}, Usage: "payload file, - for stdin", Value: "-"},
					&cli.StringSliceFlag{Name: "setting", Usage: "adapter setting KEY=VALUE (repeatable)"},
				},
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return cli.Exit("usage: gatelog adapter translate [--input payload.json] [--setting K=V] NAME (flags before NAME)", 1)
					}
					a, err := builtin.New(c.Args().First())
					if err != nil {
						return err
					}
					settings := map[string]string{}
					for _, kv := range c.StringSlice("setting") {
						k, v, ok := strings.Cut(kv, "=")
						if !ok {
							return fmt.Errorf("--setting %q: want KEY=VALUE", kv)
						}
						settings[k] = v
					}
					if err := a.Configure(c.Context, settings); err != nil {
						return err
					}
					body, err := readAdapterInput(c.App.Reader, c.String("input"))
					if err != nil {
						return err
					}
					req, err := a.Translate(c.Context, adapter.Native{Body: body})
					if err != nil {
						return err
					}
					return printAdapterJSON(c.App.Writer, req)
				},
			},
			{
				Name:      "serve",
				Usage:     "serve a built-in adapter over go-plugin; the daemon runs this, not people",
				ArgsUsage: "NAME",
				Hidden:    true,
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return cli.Exit("usage: gatelog adapter serve NAME", 1)
					}
					return builtin.Serve(c.Args().First())
				},
			},
		},
	}
}

func readAdapterInput(stdin io.Reader, path string) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(io.LimitReader(stdin, 16<<20))
	}
	return os.ReadFile(path)
}

func printAdapterJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

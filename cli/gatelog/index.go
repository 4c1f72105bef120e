package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gatelog/gatelog/daemon/api"
	"github.com/gatelog/gatelog/translog"
	"github.com/gatelog/gatelog/translog/index"
)

func indexCommand() *cli.Command {
	return &cli.Command{
		Name:  "index",
		Usage: "manage the audit index (derived from the log; safe to delete and rebuild)",
		Subcommands: []*cli.Command{{
			Name:  "rebuild",
			Usage: "recreate the audit index from the log alone: offline with --data (daemon stopped), or else ask the running daemon at --server",
			Flags: append([]cli.Flag{
				&cli.StringFlag{Name: "data", Usage: "data directory of a stopped daemon", EnvVars: []string{"GATELOG_DATA"}},
			}, clientFlags("admin API key")...),
			Action: indexRebuild,
		}},
	}
}

func indexRebuild(c *cli.Context) error {
	// --data rebuilds offline; without it the daemon at --server rebuilds.
	data := c.String("data")
	start := time.Now()
	if data == "" {
		cl, err := newClient(c, true)
		if err != nil {
			return err
		}
		// Rebuilding reads the whole log: no request timeout beyond connecting.
		resp, err := cl.request(c.Context, cl.stream, http.MethodPost, "/v1/audit/rebuild", nil, nil)
		if err != nil {
			return fmt.Errorf("index rebuild: %w", err)
		}
		defer resp.Body.Close()
		raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return fmt.Errorf("index rebuild: %w", err)
		}
		var out struct {
			Indexed int `json:"indexed"`
		}
		if err := json.Unmarshal(raw, &out); err != nil {
			return fmt.Errorf("index rebuild: %w", err)
		}
		fmt.Fprintf(c.App.Writer, "rebuilt the audit index: %d entries in %s\n", out.Indexed, time.Since(start).Round(time.Millisecond))
		return nil
	}
	logKey, err := readPublicKey(filepath.Join(data, "keys", "log.pub"))
	if err != nil {
		return cli.Exit(fmt.Sprintf("--data %s: log key: %v", data, err), 1)
	}
	rd, err := translog.OpenReader(filepath.Join(data, api.LogDir), logKey)
	if err != nil {
		return cli.Exit(fmt.Sprintf("--data %s: %v", data, err), 1)
	}
	defer rd.Close()
	n, err := index.Rebuild(c.Context, filepath.Join(data, api.IndexFile), rd, nil)
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	fmt.Fprintf(c.App.Writer, "rebuilt %s from the log: %d entries in %s\n", filepath.Join(data, api.IndexFile), n, time.Since(start).Round(time.Millisecond))
	return nil
}

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gatelog/gatelog/daemon"
	"github.com/gatelog/gatelog/translog"
	"github.com/gatelog/gatelog/translog/index"
)

func indexCommand() *cli.Command {
	return &cli.Command{
		Name:  "index",
		Usage: "manage the audit index (derived from the log; safe to delete and rebuild)",
		Subcommands: []*cli.Command{{
			Name:  "rebuild",
			Usage: "recreate the audit index from the log alone: offline with --data (daemon stopped), or ask a running daemon with --server",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "data", Usage: "data directory of a stopped daemon", EnvVars: []string{"GATELOG_DATA"}},
				&cli.StringFlag{Name: "server", Usage: "URL of a running daemon (needs an admin API key)"},
				&cli.StringFlag{Name: "api-key", Usage: "admin API key (prefer GATELOG_API_KEY or --api-key-file)", EnvVars: []string{"GATELOG_API_KEY"}},
				&cli.StringFlag{Name: "api-key-file", Usage: "file holding the API key"},
			},
			Action: indexRebuild,
		}},
	}
}

func indexRebuild(c *cli.Context) error {
	data, srv := c.String("data"), c.String("server")
	if (data == "") == (srv == "") {
		return cli.Exit("give --data DIR (daemon stopped) or --server URL (daemon running)", 1)
	}
	start := time.Now()
	if srv != "" {
		key, err := apiKey(c)
		if err != nil {
			return cli.Exit(err.Error(), 1)
		}
		req, err := http.NewRequestWithContext(c.Context, http.MethodPost, strings.TrimRight(srv, "/")+"/v1/audit/rebuild", bytes.NewReader(nil))
		if err != nil {
			return cli.Exit(err.Error(), 1)
		}
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return cli.Exit(fmt.Sprintf("index rebuild: %v", err), 1)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if resp.StatusCode != http.StatusOK {
			return cli.Exit(fmt.Sprintf("index rebuild: %s: %s", resp.Status, errorMessage(raw)), 1)
		}
		var out struct {
			Indexed int `json:"indexed"`
		}
		if err := json.Unmarshal(raw, &out); err != nil {
			return cli.Exit(fmt.Sprintf("index rebuild: %v", err), 1)
		}
		fmt.Fprintf(c.App.Writer, "rebuilt the audit index: %d entries in %s\n", out.Indexed, time.Since(start).Round(time.Millisecond))
		return nil
	}
	logKey, err := readPublicKey(filepath.Join(data, "keys", "log.pub"))
	if err != nil {
		return cli.Exit(fmt.Sprintf("--data %s: log key: %v", data, err), 1)
	}
	rd, err := translog.OpenReader(filepath.Join(data, daemon.LogDir), logKey)
	if err != nil {
		return cli.Exit(fmt.Sprintf("--data %s: %v", data, err), 1)
	}
	defer rd.Close()
	n, err := index.Rebuild(c.Context, filepath.Join(data, daemon.IndexFile), rd, nil)
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	fmt.Fprintf(c.App.Writer, "rebuilt %s from the log: %d entries in %s\n", filepath.Join(data, daemon.IndexFile), n, time.Since(start).Round(time.Millisecond))
	return nil
}

package main

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"
	"k8s.io/klog/v2"

	"github.com/gatelog/gatelog/engine/server"
	"github.com/gatelog/gatelog/policies"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "run the decision daemon",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "addr", Value: "127.0.0.1:8080", Usage: "listen address", EnvVars: []string{"GATELOG_ADDR"}},
			&cli.StringFlag{Name: "data", Value: "./gatelog-data", Usage: "data directory (keys, API keys, log)", EnvVars: []string{"GATELOG_DATA"}},
			&cli.StringFlag{Name: "policies", Usage: "policy directory (default: the bundled library)", EnvVars: []string{"GATELOG_POLICIES"}},
			&cli.StringFlag{Name: "log-host", Value: "gatelog.local", Usage: "host part of the log's origin line"},
			&cli.DurationFlag{Name: "checkpoint-interval", Value: 0, Usage: "how often to publish a checkpoint (default 1s)"},
		},
		Action: func(c *cli.Context) error {
			logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
			// Tessera logs through klog; send it to the same place.
			klog.SetSlogLogger(logger.With("component", "tessera"))
			var pol fs.FS = policies.FS()
			if dir := c.String("policies"); dir != "" {
				if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
					return fmt.Errorf("--policies %s: not a directory", dir)
				}
				pol = os.DirFS(dir)
			}
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			srv, err := server.Open(ctx, server.Config{
				DataDir: c.String("data"), Policies: pol, Host: c.String("log-host"),
				CheckpointInterval: c.Duration("checkpoint-interval"), Version: version, Logger: logger,
			})
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", c.String("addr"))
			if err != nil {
				_ = srv.Close(context.WithoutCancel(ctx))
				return err
			}
			return srv.Serve(ctx, ln)
		},
	}
}

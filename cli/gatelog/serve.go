//go:build !auditor

package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"k8s.io/klog/v2"

	"github.com/gatelog/gatelog/daemon"
	"github.com/gatelog/gatelog/translog"
	"github.com/gatelog/gatelog/translog/index"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "run the decision daemon",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "addr", Value: "127.0.0.1:8080", Usage: "listen address", EnvVars: []string{"GATELOG_ADDR"}},
			&cli.StringFlag{Name: "data", Value: "./gatelog-data", Usage: "data directory (keys, API keys, log)", EnvVars: []string{"GATELOG_DATA"}},
			&cli.StringFlag{Name: "policies", Usage: "policy directory (default: the bundled library)", EnvVars: []string{"GATELOG_POLICIES"}},
			&cli.StringFlag{Name: "log-host", Value: "gatelog.local", Usage: "host part of the log's origin line", EnvVars: []string{"GATELOG_LOG_HOST"}},
			&cli.DurationFlag{Name: "checkpoint-interval", Value: time.Second, Usage: "how often to publish a checkpoint", EnvVars: []string{"GATELOG_CHECKPOINT_INTERVAL"}},
			&cli.DurationFlag{Name: "append-timeout", Value: 10 * time.Second, Usage: "how long a decide waits for the log before it fails closed with 503", EnvVars: []string{"GATELOG_APPEND_TIMEOUT"}},
			&cli.StringFlag{Name: "identity-config", Usage: "JSON file of trusted OIDC issuers and mTLS clients (see docs/identity.md)", EnvVars: []string{"GATELOG_IDENTITY_CONFIG"}},
			&cli.StringFlag{Name: "tls-cert", Usage: "serve HTTPS with this certificate (PEM)", EnvVars: []string{"GATELOG_TLS_CERT"}},
			&cli.StringFlag{Name: "tls-key", Usage: "private key for --tls-cert (PEM, must be 0600)", EnvVars: []string{"GATELOG_TLS_KEY"}},
			&cli.StringSliceFlag{Name: "client-ca", Usage: "accept client certificates from this CA (PEM); repeatable; needs --tls-cert", EnvVars: []string{"GATELOG_CLIENT_CAS"}},
			&cli.Float64Flag{Name: "rate-limit", Value: daemon.DefaultRateLimit, Usage: "requests per second per caller (negative: no limit)", EnvVars: []string{"GATELOG_RATE_LIMIT"}},
			&cli.StringFlag{Name: "index", Usage: "audit index shared by several daemons: a PostgreSQL DSN postgres://… (default: DATA/index.db); never logged", EnvVars: []string{"GATELOG_INDEX"}},
			&cli.StringFlag{Name: "index-file", Usage: "read the --index DSN from this file (keeps it out of the process list)", EnvVars: []string{"GATELOG_INDEX_FILE"}},
			&cli.StringFlag{Name: "log", Usage: "keep the log in MySQL/MariaDB shared by several daemons: mysql://user:pass@tcp(host:3306)/db (default: DATA/log); every daemon needs the same keys/log.key; never logged", EnvVars: []string{"GATELOG_LOG"}},
			&cli.StringFlag{Name: "log-file", Usage: "read the --log DSN from this file", EnvVars: []string{"GATELOG_LOG_FILE"}},
			&cli.StringSliceFlag{Name: "witness-vkey", Usage: "trust this witness (its cosignature/v1 verifier key, from gatelog log witness-key): keep and serve at /witness/checkpoint the latest checkpoint it cosigned; repeatable", EnvVars: []string{"GATELOG_WITNESS_VKEYS"}},
			&cli.BoolFlag{Name: "public-records", Usage: "serve every decision record (subject, resource, source IP, reasons) to anyone through the Rekor API; without it only callers with the read permission see records, everyone else the leaves, proofs and SETs", EnvVars: []string{"GATELOG_PUBLIC_RECORDS"}},
			&cli.StringFlag{Name: "pprof", Usage: "serve Go profiles (net/http/pprof) on this separate address, e.g. 127.0.0.1:6060 (off by default; never expose it)", EnvVars: []string{"GATELOG_PPROF"}},
		}, append(append(append(policyServeFlags(), alertServeFlags()...), adapterServeFlags()...), webhookServeFlags()...)...),
		Action: func(c *cli.Context) error {
			// Everything the daemon writes under --data (keys, the log, the
			// audit index, the outbox) is its owner's alone, whatever umask
			// it was started with; libraries that create files 0644
			// (SQLite's index.db and its -wal/-shm) included.
			syscall.Umask(0o077)
			tuneGC()
			logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
			// Tessera logs through klog; send it to the same place.
			klog.SetSlogLogger(logger.With("component", "tessera"))
			pol, watch, err := servePolicy(c)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			idcfg, err := identityConfig(c)
			if err != nil {
				return err
			}
			alerts, err := alertsConfig(c)
			if err != nil {
				return err
			}
			adapters, err := adaptersConfig(c)
			if err != nil {
				return err
			}
			webhooks, err := webhooksConfig(c)
			if err != nil {
				return err
			}
			indexDSN, err := secretFlag(c, "index", "index-file")
			if err != nil {
				return err
			}
			if indexDSN != "" && !index.IsPostgresDSN(indexDSN) {
				return fmt.Errorf("--index: want a postgres:// DSN")
			}
			logDSN, err := secretFlag(c, "log", "log-file")
			if err != nil {
				return err
			}
			if logDSN != "" && !translog.IsMySQLDSN(logDSN) {
				return fmt.Errorf("--log: want a mysql:// DSN")
			}
			if c.Duration("append-timeout") < 0 {
				return fmt.Errorf("--append-timeout must not be negative")
			}
			if c.Bool("public-records") {
				logger.Warn("--public-records: every decision record is readable by anyone through the Rekor API")
			}
			srv, err := daemon.Open(ctx, daemon.Config{
				Index:         indexDSN,
				Log:           logDSN,
				Adapters:      adapters,
				Webhooks:      webhooks,
				WitnessKeys:   c.StringSlice("witness-vkey"),
				PublicRecords: c.Bool("public-records"),
				Alerts:        alerts, MaxCheckpointAge: c.Duration("max-checkpoint-age"),
				DataDir: c.String("data"), Policies: pol.FS, PolicyRevision: pol.Revision, Host: c.String("log-host"),
				Identity: idcfg, TLSCertFile: c.String("tls-cert"), TLSKeyFile: c.String("tls-key"), RateLimit: c.Float64("rate-limit"),
				CheckpointInterval: c.Duration("checkpoint-interval"), AppendTimeout: c.Duration("append-timeout"), Version: version, Logger: logger,
			})
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", c.String("addr"))
			if err != nil {
				_ = srv.Close(context.WithoutCancel(ctx))
				return err
			}
			if addr := c.String("pprof"); addr != "" {
				if err := servePprof(ctx, addr, logger); err != nil {
					_ = srv.Close(context.WithoutCancel(ctx))
					return err
				}
			}
			go func() {
				if err := srv.WatchPolicy(ctx, watch); err != nil {
					logger.Error("policy reloads are off", "err", err)
				}
			}()
			return srv.Serve(ctx, ln)
		},
	}
}

// servePprof serves the runtime profiles on their own listener, apart from
// the API, until ctx ends. Profiles reveal internals, so it is opt-in.
func servePprof(ctx context.Context, addr string, logger *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--pprof %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	go func() { _ = srv.Serve(ln) }()
	logger.Info("pprof listening", "addr", ln.Addr().String())
	return nil
}

// secretFlag is the value of flag name, or the first line of the file named
// by fileFlag. It is a secret (a DSN with a password): errors never show it.
func secretFlag(c *cli.Context, name, fileFlag string) (string, error) {
	v, f := c.String(name), c.String(fileFlag)
	if v != "" && f != "" {
		return "", fmt.Errorf("--%s and --%s are exclusive", name, fileFlag)
	}
	if f == "" {
		return strings.TrimSpace(v), nil
	}
	b, err := os.ReadFile(f)
	if err != nil {
		return "", fmt.Errorf("--%s: %w", fileFlag, err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	if line = strings.TrimSpace(line); line == "" {
		return "", fmt.Errorf("--%s: %s is empty", fileFlag, f)
	}
	return line, nil
}

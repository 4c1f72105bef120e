// Package daemon is the gatelog daemon: it owns the data directory, joins
// the policy engine, the signer and the transparency log, and serves the
// HTTP API. It is the only package that imports both engine and translog.
//
// The decide path fails closed: an allow is written to the wire only after
// its signed record is durably sequenced in the log; any failure on the
// way answers 503 and never an allow.
package daemon

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"golang.org/x/time/rate"

	"github.com/gatelog/gatelog/daemon/alerts"
	"github.com/gatelog/gatelog/daemon/api"
	"github.com/gatelog/gatelog/daemon/audit"
	"github.com/gatelog/gatelog/daemon/metrics"
	"github.com/gatelog/gatelog/engine"
	"github.com/gatelog/gatelog/engine/alert"
	"github.com/gatelog/gatelog/engine/identity"
	"github.com/gatelog/gatelog/plugins/host"
	"github.com/gatelog/gatelog/plugins/webhook"
	"github.com/gatelog/gatelog/record"
	"github.com/gatelog/gatelog/record/receipt"
	"github.com/gatelog/gatelog/translog"
	"github.com/gatelog/gatelog/translog/entry"
	"github.com/gatelog/gatelog/translog/witness"
)

// Config configures the daemon. DataDir and Policies are required.
type Config struct {
	// DataDir holds keys, the API key store and the log.
	DataDir string
	// Policies is the policy tree (a directory or the embedded library).
	Policies fs.FS
	// PolicyRevision is the bundle revision of Policies, if any.
	PolicyRevision string
	// Host names the log in its origin line "<host>/<tree id>".
	Host string
	// CheckpointInterval is how often the log publishes a checkpoint.
	CheckpointInterval time.Duration
	// AppendTimeout bounds how long a decide call waits for the log.
	AppendTimeout time.Duration
	// Version is the daemon version recorded in every decision.
	Version string
	Logger  *slog.Logger
	// Now is the clock; nil means time.Now. Tests pin it.
	Now func() time.Time

	// Alerts configures the alert sinks (alert.LoadConfig); every alert
	// goes through the durable outbox in DATA/outbox first.
	Alerts alert.Config
	// AlertStdout is where a "stdout" alert sink writes (default os.Stdout).
	AlertStdout io.Writer
	// MaxCheckpointAge makes /readyz fail when the published checkpoint
	// is older (default DefaultMaxCheckpointAge).
	MaxCheckpointAge time.Duration

	// Identity lists trusted OIDC issuers and mTLS clients (API keys are
	// always accepted); see identity.LoadConfig.
	Identity identity.Config
	// TLSCertFile and TLSKeyFile make Serve speak TLS; they are required
	// for mTLS clients. The key file must be 0600.
	TLSCertFile, TLSKeyFile string
	// RateLimit is each caller's average requests per second (0: the
	// default, negative: no limit), RateBurst its burst.
	RateLimit float64
	RateBurst int
	// AuthObserver, if set, is told every authentication outcome (metrics).
	AuthObserver identity.Observer

	// Adapters are the CI adapter endpoints, /v1/adapters/{name}.
	Adapters []host.Config
	// AdapterExecutable runs the built-in adapters (default: this binary).
	AdapterExecutable string
	// Webhooks open the CI systems that authenticate with a webhook secret
	// (GitHub deployment protection rules, GitLab pipeline validation,
	// Tekton Triggers): plugins/webhook, plugins/builtin.LoadWebhooks.
	Webhooks []webhook.Opener

	// Index is the audit index's PostgreSQL DSN (postgres://…), shared by
	// every daemon of a scale-out setup; empty means DATA/index.db. It is
	// a secret: never logged.
	Index string
	// Log, when set, keeps the transparency log in MySQL/MariaDB
	// (mysql://user:pass@tcp(host:port)/db) instead of DATA/log, shared by
	// every daemon that has the same log key. A secret: never logged.
	Log string
	// WitnessKeys are the C2SP cosignature/v1 verifier keys of trusted
	// witnesses (gatelog monitor --witness-key): the daemon keeps the
	// latest checkpoint they cosigned and serves it at /witness/checkpoint.
	WitnessKeys []string
	// PublicRecords serves every decision record to anyone through the
	// Rekor API (records.go); by default only read callers see them.
	PublicRecords bool
}

// Server is a running daemon's state.
type Server struct {
	cfg       Config
	log       *translog.Log
	keys      *identity.KeyStore
	signer    *receipt.Signer
	signerPEM []byte
	logger    *slog.Logger
	policies  *engine.Engine // hot reload swaps policies here (policy.go)
	policyMu  sync.Mutex
	door      *authState
	bodies    *bodyBudget // request bytes in flight (bodies.go)
	// refusals spaces out WARN lines about refused unauthenticated calls
	// (one a second): each is counted in gatelog_auth_total anyway, and a
	// flood of them must not become a flood of log lines.
	refusals *rate.Limiter
	signers  *signerRing
	// recorder is the one path into the log: decisions, events, admin
	// and policy records all go through it (record.Recorder).
	recorder *record.Recorder
	adapters *host.Host     // nil without adapters (adapters.go)
	webhooks *webhookState  // nil without webhooks (webhooks.go)
	witness  *witness.Store // nil without witness keys (witness.go)

	// Beside the decide path: audit.go, alerts.go, metrics.go.
	audit   *audit.Index
	alerts  *alerts.Service
	metrics *metrics.Metrics
}

// Paths inside the data directory (api says them for clients).
const (
	DecisionKeyFile  = api.DecisionKeyFile
	LogKeyFile       = api.LogKeyFile
	APIKeysFile      = api.APIKeysFile
	BootstrapKeyFile = api.BootstrapKeyFile
	LogDir           = api.LogDir
	SignersFile      = api.SignersFile
	IndexFile        = api.IndexFile
)

// Open prepares the data directory (creating keys and a bootstrap API key
// on first start), compiles the policies and opens the log.
func Open(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.DataDir == "" || cfg.Policies == nil {
		return nil, errors.New("server: DataDir and Policies are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.AppendTimeout == 0 {
		cfg.AppendTimeout = 10 * time.Second
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	decKey, err := loadOrCreateKey(filepath.Join(cfg.DataDir, DecisionKeyFile))
	if err != nil {
		return nil, fmt.Errorf("decision signing key: %w", err)
	}
	logKeyPath := filepath.Join(cfg.DataDir, LogKeyFile)
	if _, err := os.Stat(logKeyPath); errors.Is(err, os.ErrNotExist) && translog.Exists(filepath.Join(cfg.DataDir, LogDir)) {
		// A new key cannot continue a log signed with the lost one.
		return nil, fmt.Errorf("log key %s is missing, but %s holds a log signed with it: restore the key from a backup", logKeyPath, filepath.Join(cfg.DataDir, LogDir))
	}
	logKey, err := loadOrCreateKey(logKeyPath)
	if err != nil {
		return nil, fmt.Errorf("log key: %w", err)
	}
	keys, err := identity.OpenKeyStore(filepath.Join(cfg.DataDir, APIKeysFile))
	if err != nil {
		return nil, err
	}
	if err := bootstrap(keys, cfg); err != nil {
		return nil, err
	}
	door, err := openIdentity(ctx, cfg, keys)
	if err != nil {
		return nil, err
	}
	eng, err := engine.NewFromSource(ctx, engine.Source{FS: cfg.Policies, Revision: cfg.PolicyRevision})
	if err != nil {
		door.auth.Close()
		return nil, err
	}
	signer, signerPEM, ring, err := openSigners(ctx, cfg, decKey)
	if err != nil {
		door.auth.Close()
		return nil, err
	}
	lg, err := openLog(ctx, cfg, logKey)
	if errors.Is(err, translog.ErrWrongKey) {
		err = fmt.Errorf("log key %s: %w", logKeyPath, err)
	}
	if err != nil {
		door.auth.Close()
		return nil, err
	}
	s := &Server{cfg: cfg, policies: eng, log: lg, keys: keys, signer: signer, signerPEM: signerPEM, logger: cfg.Logger, door: door, signers: ring, bodies: newBodyBudget(), refusals: rate.NewLimiter(1, 1)}
	if err := s.openOperations(ctx); err != nil {
		_ = s.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	if s.recorder, err = record.New(record.Config{
		Log: lg, Signer: signer, SignerPEM: signerPEM, Timeout: cfg.AppendTimeout,
		Queue: s.queueAlerts, Observe: s.observeRecord, Now: cfg.Now, Version: cfg.Version,
	}); err != nil {
		_ = s.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	if s.adapters, err = s.openAdapters(ctx); err != nil {
		_ = s.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	if s.webhooks, err = openWebhooks(ctx, s); err != nil {
		_ = s.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	if s.witness, err = openWitness(cfg, lg.Origin(), logKey.Public()); err != nil {
		_ = s.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	// No decision is made under a policy the log does not name.
	if err := s.logStartPolicy(ctx); err != nil {
		_ = s.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("the start-up policy record could not be logged: %w", err)
	}
	return s, nil
}

func newSigner(k *ecdsa.PrivateKey) (*receipt.Signer, []byte, error) {
	sv, err := signature.LoadECDSASignerVerifier(k, crypto.SHA256)
	if err != nil {
		return nil, nil, err
	}
	s, err := receipt.NewSigner(sv)
	if err != nil {
		return nil, nil, err
	}
	pem, err := entry.PublicKeyPEM(k.Public())
	if err != nil {
		return nil, nil, err
	}
	return s, pem, nil
}

// bootstrap creates the first API key on an empty key store and writes its
// secret, once, to DATA/bootstrap-api-key (0600). Only its hash is kept.
func bootstrap(keys *identity.KeyStore, cfg Config) error {
	if keys.Len() > 0 {
		return nil
	}
	secret, _, err := keys.Create("bootstrap", []string{identity.PermDecide, identity.PermVouch, identity.PermAdmin, identity.PermRead}, 0, cfg.Now())
	if err != nil {
		return fmt.Errorf("create bootstrap API key: %w", err)
	}
	path := filepath.Join(cfg.DataDir, BootstrapKeyFile)
	if err := writeNew(path, []byte(secret+"\n"), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", BootstrapKeyFile, err)
	}
	cfg.Logger.Info("created bootstrap API key", "file", path)
	return nil
}

// Origin is the log's origin line.
func (s *Server) Origin() string { return s.log.Origin() }

// Serve answers HTTP on ln until ctx ends, then shuts down gracefully:
// in-flight requests (and so their appends) finish, and the log publishes
// a checkpoint covering every acknowledged entry before Serve returns.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	defer s.closeIdentity()
	defer s.closeAdapters()
	defer s.closeWebhooks()   //nolint:errcheck // nothing to report at shutdown
	defer s.closeOperations() //nolint:errcheck // the log is closed by then; nothing to report
	srv.RegisterOnShutdown(s.stopAlertStreams)
	if s.door.tls != nil {
		ln = tls.NewListener(ln, s.door.tls)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.logger.Info("gatelog listening", "addr", ln.Addr().String(), "origin", s.log.Origin())
	select {
	case err := <-errc:
		_ = s.log.Close(context.WithoutCancel(ctx))
		return err
	case <-ctx.Done():
	}
	s.logger.Info("shutting down: finishing in-flight decisions")
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	herr := srv.Shutdown(sctx)
	lerr := s.log.Close(sctx)
	return errors.Join(herr, lerr)
}

// Close stops the log without serving (for callers that used Handler).
func (s *Server) Close(ctx context.Context) error {
	return errors.Join(s.closeWebhooks(), s.closeAdapters(), s.closeOperations(), s.closeIdentity(), s.log.Close(ctx))
}

func (s *Server) closeAdapters() error {
	if s.adapters == nil {
		return nil
	}
	return s.adapters.Close()
}

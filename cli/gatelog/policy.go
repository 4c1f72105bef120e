//go:build !auditor

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gatelog/gatelog/daemon/api"
	"github.com/gatelog/gatelog/translog/records"

	"github.com/urfave/cli/v2"

	"github.com/gatelog/gatelog/engine"
	"github.com/gatelog/gatelog/policies"
	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/translog/rekorapi"
)

func policyCommand() *cli.Command {
	return &cli.Command{
		Name:  "policy",
		Usage: "write, test and roll out policies: test, eval, bench, build, replay",
		Subcommands: []*cli.Command{
			policyTestCommand(),
			policyEvalCommand(),
			policyBenchCommand(),
			policyBuildCommand(),
			policyReplayCommand(),
		},
	}
}

var bundleKeyFlag = &cli.StringFlag{
	Name:    "bundle-verification-key",
	Usage:   "ECDSA P-256 public key (PEM) a bundle's .signatures.json must verify with (ES256)",
	EnvVars: []string{"GATELOG_BUNDLE_VERIFICATION_KEY"},
}

// policyFromFlags loads the policy named by --policies or --bundle (the
// bundled library when neither is given) and applies --policy-data.
func policyFromFlags(c *cli.Context) (engine.Source, error) {
	src, err := loadPolicySource(c.String("policies"), c.String("bundle"), c.String(bundleKeyFlag.Name))
	if err != nil {
		return src, err
	}
	if files := c.StringSlice("policy-data"); len(files) > 0 {
		src, err = src.WithDataFiles(files)
		if err != nil {
			return src, fmt.Errorf("--policy-data: %w", err)
		}
	}
	return src, nil
}

// loadPolicySource resolves the policy flags: a directory, a bundle file,
// or (neither) the bundled library.
func loadPolicySource(dir, bundleFile, keyFile string) (engine.Source, error) {
	var v *engine.BundleVerification
	if keyFile != "" {
		var err error
		if v, err = engine.LoadBundleVerificationKey(keyFile); err != nil {
			return engine.Source{}, err
		}
	}
	switch {
	case dir != "" && bundleFile != "":
		return engine.Source{}, fmt.Errorf("give either a policy directory or a bundle, not both")
	case bundleFile != "":
		return engine.LoadBundleFile(bundleFile, v)
	case v != nil:
		return engine.Source{}, fmt.Errorf("--bundle-verification-key is given but no bundle to verify")
	case dir != "":
		return engine.LoadDir(dir)
	}
	return engine.Embedded(policies.FS()), nil
}

// loadPolicyArg treats a path as a directory or, if it is a file, a bundle.
func loadPolicyArg(arg, keyFile string) (engine.Source, error) {
	if arg == "" {
		return loadPolicySource("", "", keyFile)
	}
	fi, err := os.Stat(arg)
	if err != nil {
		return engine.Source{}, err
	}
	if fi.IsDir() {
		return loadPolicySource(arg, "", keyFile)
	}
	return loadPolicySource("", arg, keyFile)
}

// checkArgs allows at most max positional arguments and explains the
// usual mistake: urfave/cli stops reading flags at the first argument.
func checkArgs(c *cli.Context, max int) error {
	for _, a := range c.Args().Slice() {
		if strings.HasPrefix(a, "-") {
			return fmt.Errorf("flag %s after the argument: put flags before DIR", a)
		}
	}
	if c.NArg() > max {
		return fmt.Errorf("give at most %d directory or bundle, got %d", max, c.NArg())
	}
	return nil
}

func describePolicy(p decision.Policy) string {
	s := "sha256 " + p.SHA256
	if p.Revision != "" {
		s = "revision " + p.Revision + ", " + s
	}
	return s
}

func policyTestCommand() *cli.Command {
	return &cli.Command{
		Name:      "test",
		Usage:     "run the Rego tests of a policy directory or bundle (default: the bundled library); exit 0 pass, 2 a test failed (or none, or coverage below the threshold), 1 error",
		ArgsUsage: "[DIR|BUNDLE]",
		Flags: []cli.Flag{
			&cli.Float64Flag{Name: "coverage-threshold", Usage: "fail when the tests evaluate less than `PCT` percent of the policy lines (test files excluded)"},
			&cli.BoolFlag{Name: "coverage", Usage: "print the coverage of each policy file and the lines not covered"},
			bundleKeyFlag,
		},
		Action: func(c *cli.Context) error {
			if err := checkArgs(c, 1); err != nil {
				return cli.Exit("policy test: "+err.Error(), 1)
			}
			src, err := loadPolicyArg(c.Args().First(), c.String(bundleKeyFlag.Name))
			if err != nil {
				return cli.Exit("policy test: "+err.Error(), 1)
			}
			rep, err := engine.RunTests(c.Context, src.FS, engine.TestOptions{Coverage: true, Trace: true})
			if err != nil {
				return cli.Exit("policy test: "+err.Error(), 1)
			}
			w := c.App.Writer
			if _, err := rep.WriteTo(w); err != nil {
				return cli.Exit("policy test: "+err.Error(), 1)
			}
			total, files := rep.PolicyCoverage()
			if c.Bool("coverage") {
				for _, f := range files {
					fmt.Fprintf(w, "coverage %-28s %5.1f%%", f.File, f.Percent)
					if len(f.NotCovered) > 0 {
						var rows []string
						for _, r := range f.NotCovered {
							rows = append(rows, fmt.Sprintf("%d-%d", r.Start.Row, r.End.Row))
						}
						fmt.Fprintf(w, "  not covered: lines %s", strings.Join(rows, ", "))
					}
					fmt.Fprintln(w)
				}
			}
			fmt.Fprintf(w, "Coverage: %.1f%% of policy lines (%s)\n", total, src.Origin)
			if rep.Total() == 0 {
				return answerNo("policy test: no tests found (rules named test_* in *_test.rego)")
			}
			if !rep.OK() {
				return answerNo("")
			}
			if th := c.Float64("coverage-threshold"); th > 0 && total < th {
				return answerNo(fmt.Sprintf("policy test: coverage %.1f%% is below the threshold %.1f%%", total, th))
			}
			return nil
		},
	}
}

func policyEvalCommand() *cli.Command {
	return &cli.Command{
		Name:      "eval",
		Usage:     "evaluate a request against a policy without the daemon or the log; exit 0 allow, 2 deny, 1 error",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "input", Aliases: []string{"i"}, Required: true, Usage: "request JSON file (- for stdin)"},
			&cli.StringFlag{Name: "policies", Usage: "policy directory (default: the bundled library)"},
			&cli.StringFlag{Name: "bundle", Usage: "policy bundle (tar.gz)"},
			bundleKeyFlag,
			&cli.StringSliceFlag{Name: "policy-data", Usage: "data `FILE` (JSON/YAML) that replaces the policy's own data files, e.g. an organisation's configuration; repeatable"},
			&cli.BoolFlag{Name: "explain", Usage: "list the rules that fired"},
			&cli.BoolFlag{Name: "trace", Usage: "print OPA's full evaluation trace"},
			&cli.BoolFlag{Name: "json", Usage: "print the decision, policy and fired rules as JSON"},
		},
		Action: func(c *cli.Context) error {
			src, err := policyFromFlags(c)
			if err != nil {
				return cli.Exit("policy eval: "+err.Error(), 1)
			}
			raw, err := readInput(c.String("input"))
			if err != nil {
				return cli.Exit("policy eval: "+err.Error(), 1)
			}
			req, err := decision.ParseRequest(raw)
			if err != nil {
				return cli.Exit("policy eval: "+err.Error(), 1)
			}
			if req.Context.Time == "" {
				// The daemon always sets the decision time; do the same.
				req.Context.Time = time.Now().UTC().Format(time.RFC3339)
				fmt.Fprintf(c.App.ErrWriter, "note: the request has no context.time; using now (%s)\n", req.Context.Time)
			}
			eng, err := engine.NewFromSource(c.Context, src)
			if err != nil {
				return cli.Exit("policy eval: "+err.Error(), 1)
			}
			d, pol, ex := eng.Explain(c.Context, req)
			w := c.App.Writer
			if c.Bool("json") {
				out := struct {
					Decision decision.Decision  `json:"decision"`
					Policy   decision.Policy    `json:"policy"`
					Fired    []engine.FiredRule `json:"fired,omitempty"`
				}{d, pol, nil}
				if c.Bool("explain") {
					out.Fired = ex.Fired
				}
				b, _ := json.MarshalIndent(out, "", "  ")
				fmt.Fprintln(w, string(b))
			} else {
				outcome := "ALLOWED"
				if !d.Allow {
					outcome = "DENIED"
				}
				fmt.Fprintf(w, "%s  %s by %s\n", outcome, printable(req.Action), printable(req.Subject.ID))
				for _, r := range d.Reasons {
					fmt.Fprintf(w, "  reason: %s\n", printable(r))
				}
				for _, a := range d.Alerts {
					fmt.Fprintf(w, "  alert [%s] %s: %s\n", printable(a.Severity), printable(a.Code), printable(a.Message))
				}
				fmt.Fprintf(w, "  policy: %s (%s)\n", describePolicy(pol), src.Origin)
				if c.Bool("explain") {
					fmt.Fprintln(w, "rules that fired:")
					for _, f := range ex.Fired {
						fmt.Fprintf(w, "  %s\n", f)
					}
				}
			}
			if c.Bool("trace") {
				fmt.Fprint(w, ex.Trace)
			}
			if !d.Allow {
				return answerNo("")
			}
			return nil
		},
	}
}

func policyBuildCommand() *cli.Command {
	return &cli.Command{
		Name:      "build",
		Usage:     "build a (signed) OPA bundle from a policy directory, as `opa build` does",
		ArgsUsage: "DIR",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Value: "bundle.tar.gz", Usage: "bundle file to write"},
			&cli.StringFlag{Name: "signing-key", Usage: "ECDSA P-256 private key (PEM) to sign the bundle with (ES256)"},
			&cli.StringFlag{Name: "signing-key-id", Value: engine.DefaultBundleKeyID, Usage: "key ID recorded in the signature"},
			&cli.StringFlag{Name: "revision", Usage: "revision for the manifest (default: a timestamp)"},
		},
		Action: func(c *cli.Context) error {
			if err := checkArgs(c, 1); err != nil || c.NArg() != 1 {
				return cli.Exit("policy build: give the policy directory (flags go before it)", 1)
			}
			src, err := engine.LoadDir(c.Args().First())
			if err != nil {
				return cli.Exit("policy build: "+err.Error(), 1)
			}
			rev := c.String("revision")
			if rev == "" {
				rev = time.Now().UTC().Format("20060102T150405Z")
			}
			opts := engine.BuildOptions{Revision: rev, KeyID: c.String("signing-key-id")}
			if kf := c.String("signing-key"); kf != "" {
				if opts.SigningKeyPEM, err = os.ReadFile(kf); err != nil {
					return cli.Exit("policy build: --signing-key: "+err.Error(), 1)
				}
			}
			var buf bytes.Buffer
			if err := engine.BuildBundle(c.Context, &buf, src.FS, opts); err != nil {
				return cli.Exit("policy build: "+err.Error(), 1)
			}
			out := c.String("out")
			if err := writeFileAtomic(out, buf.Bytes()); err != nil {
				return cli.Exit("policy build: "+err.Error(), 1)
			}
			signed := "unsigned"
			if opts.SigningKeyPEM != nil {
				signed = "signed (ES256, key id " + opts.KeyID + ")"
			}
			fmt.Fprintf(c.App.Writer, "wrote %s: revision %s, %s\n", out, rev, signed)
			return nil
		},
	}
}

// writeFileAtomic writes data to a temporary file beside path and renames
// it, so a daemon watching or serving path never reads half a bundle.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, werr := io.Copy(f, bytes.NewReader(data))
	serr := f.Sync()
	cerr := f.Close()
	if werr != nil || serr != nil || cerr != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write %s: %v", path, firstErr(werr, serr, cerr))
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		os.Remove(f.Name())
		return err
	}
	return os.Rename(f.Name(), path)
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// policyServeFlags are the serve flags that choose where policies come
// from besides --policies, and how they are reloaded.
func policyServeFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "bundle", Usage: "policy bundle file (tar.gz); reloaded when it changes", EnvVars: []string{"GATELOG_BUNDLE"}},
		&cli.StringFlag{Name: "bundle-url", Usage: "policy bundle URL, polled with If-None-Match", EnvVars: []string{"GATELOG_BUNDLE_URL"}},
		&cli.DurationFlag{Name: "bundle-poll-interval", Value: 30 * time.Second, Usage: "how often to poll --bundle-url", EnvVars: []string{"GATELOG_BUNDLE_POLL_INTERVAL"}},
		bundleKeyFlag,
		&cli.StringSliceFlag{Name: "policy-data", Usage: "data `FILE` (JSON/YAML) that replaces the policy's own data files, e.g. an organisation's configuration for the bundled library; re-read on every reload (SIGHUP); repeatable", EnvVars: []string{"GATELOG_POLICY_DATA"}},
	}
}

func policyReplayCommand() *cli.Command {
	return &cli.Command{
		Name:      "replay",
		Usage:     "re-decide logged requests with a new policy and list the decisions that would change",
		ArgsUsage: " ",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "data", Usage: "read the log from this daemon data directory (running or stopped)"},
			&cli.Int64Flag{Name: "from", Usage: "first log index to replay"},
			&cli.Int64Flag{Name: "to", Value: -1, Usage: "last log index to replay (default: the end of the log)"},
			&cli.StringFlag{Name: "policies", Usage: "the new policy directory (default: the bundled library)"},
			&cli.StringFlag{Name: "bundle", Usage: "the new policy as a bundle (tar.gz)"},
			bundleKeyFlag,
			&cli.StringSliceFlag{Name: "policy-data", Usage: "data `FILE` that replaces the new policy's data files; repeatable"},
			&cli.BoolFlag{Name: "json", Usage: "print the changed decisions as JSON"},
			&cli.BoolFlag{Name: "fail-on-change", Usage: "exit 2 when any decision would change (gate a rollout in CI)"},
		}, append(keyFlags(), clientFlags("without --data: API key with the read permission, since replay needs the records")...)...),
		Action: func(c *cli.Context) error {
			src, err := policyFromFlags(c)
			if err != nil {
				return fmt.Errorf("policy replay: %w", err)
			}
			eng, err := engine.NewFromSource(c.Context, src)
			if err != nil {
				return fmt.Errorf("policy replay: %w", err)
			}
			from, to := c.Int64("from"), c.Int64("to")
			if to >= 0 {
				to++ // --to is inclusive; the readers take an end index
			} else {
				to = 0
			}
			if to > 0 && to <= from {
				return cli.Exit("policy replay: --to is before --from", 1)
			}
			recs, end, err := replaySource(c, from, to)
			if err != nil {
				return fmt.Errorf("policy replay: %w", err)
			}
			var changed []engine.Replayed
			replayed, skipped := 0, 0
			for lr, err := range recs {
				if err != nil {
					return fmt.Errorf("policy replay: %w", err)
				}
				if lr.Record.Kind != decision.KindDecision {
					// Events and administrative records (policy loads among
					// them) are not policy decisions: nothing to replay.
					skipped++
					continue
				}
				replayed++
				if r := eng.Replay(c.Context, lr.Index, lr.Record); r.Change() != "" {
					changed = append(changed, r)
				}
			}
			w := c.App.Writer
			if c.Bool("json") {
				type row struct {
					LogIndex   int64             `json:"log_index"`
					DecisionID string            `json:"decision_id"`
					Change     string            `json:"change"`
					Request    decision.Request  `json:"request"`
					Logged     decision.Decision `json:"logged"`
					LoggedBy   decision.Policy   `json:"logged_policy"`
					Now        decision.Decision `json:"now"`
				}
				rows := make([]row, 0, len(changed))
				for _, r := range changed {
					rows = append(rows, row{r.LogIndex, r.Logged.DecisionID, r.Change(), r.Logged.Request, r.Logged.Decision, r.Logged.Policy, r.Now})
				}
				b, _ := json.MarshalIndent(map[string]any{"replayed": replayed, "skipped_policy_updates": skipped, "policy": eng.Policy(), "changed": rows}, "", "  ")
				fmt.Fprintln(w, string(b))
			} else if end <= from {
				fmt.Fprintf(w, "nothing to replay: the log's latest checkpoint covers %d entries\n", end)
			} else {
				fmt.Fprintf(w, "replayed %d decisions (log indexes %d to %d; %d events and administrative records skipped) with %s (%s)\n",
					replayed, from, end-1, skipped, describePolicy(eng.Policy()), src.Origin)
				fmt.Fprintf(w, "%d would change\n", len(changed))
				for _, r := range changed {
					req := r.Logged.Request
					fmt.Fprintf(w, "  %-6d %-14s %s by %s on %s\n", r.LogIndex, r.Change(), printable(req.Action), printable(req.Subject.ID), printable(describeResource(req.Resource)))
					fmt.Fprintf(w, "         was: %s\n", printable(strings.Join(r.Logged.Decision.Reasons, "; ")))
					fmt.Fprintf(w, "         now: %s\n", printable(strings.Join(r.Now.Reasons, "; ")))
				}
			}
			if len(changed) > 0 && c.Bool("fail-on-change") {
				return answerNo("")
			}
			return nil
		},
	}
}

// replaySource opens the logged records from --data or else through the
// daemon at --server, every record checked with the pinned keys.
func replaySource(c *cli.Context, from, to int64) (iter.Seq2[records.Record, error], int64, error) {
	if data := c.String("data"); data != "" {
		logKey, signerKeys, err := api.DataDirKeys(data)
		if err != nil {
			return nil, 0, err
		}
		return records.Local(c.Context, filepath.Join(data, api.LogDir), logKey, signerKeys, from, to)
	}
	if c.String("log-key") == "" {
		return nil, 0, fmt.Errorf("give --data DIR (a daemon's data directory), or --server URL with --log-key (the log's public key) and --signer-keys")
	}
	v, err := pinnedVerifier(c, true)
	if err != nil {
		return nil, 0, err
	}
	cl, err := newClient(c, false)
	if err != nil {
		return nil, 0, err
	}
	client, err := rekorapi.NewClient(cl.URL(), cl.HTTPClient(), rekorapi.WithBearer(cl.key))
	if err != nil {
		return nil, 0, err
	}
	return records.Remote(c.Context, client, v, from, to)
}

func describeResource(r decision.Resource) string {
	var parts []string
	for _, p := range []string{r.System, r.Repository, r.Environment, r.Namespace, r.Name} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	if len(parts) == 0 {
		return "(no resource)"
	}
	return strings.Join(parts, " ")
}

package main

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gatelog/gatelog/daemon"
	"github.com/gatelog/gatelog/engine/identity"
	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/record/receipt"
)

// keysCommand administers API keys and the decision-signing key through
// the daemon's admin API, so every change is immediate and logged.
func keysCommand() *cli.Command {
	conn := []cli.Flag{
		&cli.StringFlag{Name: "server", Value: "http://127.0.0.1:8080", Usage: "daemon URL", EnvVars: []string{"GATELOG_SERVER"}},
		&cli.StringFlag{Name: "api-key", Usage: "admin API key (prefer GATELOG_API_KEY or --api-key-file)", EnvVars: []string{"GATELOG_API_KEY"}},
		&cli.StringFlag{Name: "api-key-file", Usage: "file holding the admin API key"},
		&cli.StringFlag{Name: "cacert", Usage: "PEM CA certificate to trust for an https daemon", EnvVars: []string{"GATELOG_CACERT"}},
		&cli.BoolFlag{Name: "json", Usage: "print JSON"},
	}
	return &cli.Command{
		Name:  "keys",
		Usage: "manage API keys and the decision-signing key (needs an admin API key)",
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "create an API key and print it (once)",
				ArgsUsage: " ",
				Flags: append([]cli.Flag{
					&cli.StringFlag{Name: "name", Required: true, Usage: "key name, e.g. ci-jenkins (two active keys per name)"},
					&cli.StringSliceFlag{Name: "perm", Aliases: []string{"role"}, Required: true, Usage: "permission: decide, vouch, admin, read (repeat for several)"},
					&cli.StringFlag{Name: "expires", Usage: "lifetime, e.g. 90d or 12h (default: never)"},
				}, conn...),
				Action: keysCreate,
			},
			{Name: "list", Usage: "list API keys: age, last use, expiry, permissions", ArgsUsage: " ", Flags: conn, Action: keysList},
			{Name: "revoke", Usage: "revoke API keys by ID, or every active key of a name, at once", ArgsUsage: "NAME|ID", Flags: conn, Action: keysRevoke},
			{
				Name:      "rotate-signer",
				Usage:     "make a new decision-signing key (logged, signed by the current key); it signs from the daemon's next start",
				ArgsUsage: " ",
				Flags: append([]cli.Flag{
					&cli.StringFlag{Name: "signer", Usage: "a KMS key URI (awskms://…, hashivault://…) instead of a new key file"},
				}, conn...),
				Action: keysRotateSigner,
			},
			{
				Name:      "signers",
				Usage:     "show the decision-signing keys and their validity windows (GET /v1/keys)",
				ArgsUsage: " ",
				Flags: append([]cli.Flag{
					&cli.StringFlag{Name: "out", Usage: "write the key set to this file, for gatelog verify --signer-keys"},
				}, conn...),
				Action: keysSigners,
			},
		},
	}
}

// adminClient talks to the daemon's admin API.
type adminClient struct {
	base, key string
	hc        *http.Client
}

func newAdminClient(c *cli.Context) (*adminClient, error) {
	key, err := apiKey(c)
	if err != nil {
		return nil, err
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	if f := c.String("cacert"); f != "" {
		raw, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("--cacert: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(raw) {
			return nil, fmt.Errorf("--cacert %s: no PEM certificate", f)
		}
		hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	}
	return &adminClient{base: strings.TrimRight(c.String("server"), "/"), key: key, hc: hc}, nil
}

// call sends body (if any) as JSON and decodes a 2xx reply into out.
func (a *adminClient) call(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+a.key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: %s", resp.Status, errorMessage(raw))
	}
	return json.Unmarshal(raw, out)
}

func printJSON(w io.Writer, v any) {
	b, _ := json.MarshalIndent(v, "", "  ")
	fmt.Fprintln(w, string(b))
}

func keysCreate(c *cli.Context) error {
	a, err := newAdminClient(c)
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	if _, err := identity.ParseTTL(c.String("expires")); err != nil {
		return cli.Exit(fmt.Sprintf("--expires: %v", err), 1)
	}
	var out daemon.CreateKeyResponse
	req := daemon.CreateKeyRequest{Name: c.String("name"), Permissions: c.StringSlice("perm"), ExpiresIn: c.String("expires")}
	if err := a.call(http.MethodPost, "/v1/apikeys", req, &out); err != nil {
		return cli.Exit("keys create: "+err.Error(), 1)
	}
	w := c.App.Writer
	if c.Bool("json") {
		printJSON(w, out)
		return nil
	}
	fmt.Fprintln(w, out.Key)
	fmt.Fprintf(os.Stderr, "created key %s (%s) with %s, %s; logged at index %d\n",
		out.Info.ID, out.Info.Name, strings.Join(out.Info.Permissions, ","), expiry(out.Info, time.Now()), out.Receipt.LogIndex)
	fmt.Fprintln(os.Stderr, "this is the only time the key is shown: store it now")
	return nil
}

func keysList(c *cli.Context) error {
	a, err := newAdminClient(c)
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	var out struct {
		Keys []identity.Info `json:"keys"`
	}
	if err := a.call(http.MethodGet, "/v1/apikeys", nil, &out); err != nil {
		return cli.Exit("keys list: "+err.Error(), 1)
	}
	if c.Bool("json") {
		printJSON(c.App.Writer, out)
		return nil
	}
	now := time.Now()
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tPERMISSIONS\tAGE\tLAST USED\tEXPIRES\tSTATUS")
	for _, k := range out.Keys {
		status := "active"
		switch {
		case k.Revoked:
			status = "revoked " + ago(now, k.RevokedAt)
		case !k.Expires.IsZero() && !now.Before(k.Expires):
			status = "expired"
		}
		last := "never"
		if !k.LastUsed.IsZero() {
			last = ago(now, k.LastUsed)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", printable(k.ID), printable(k.Name), printable(strings.Join(k.Permissions, ",")),
			age(now.Sub(k.Created)), last, expiry(k, now), status)
	}
	return tw.Flush()
}

func keysRevoke(c *cli.Context) error {
	if c.NArg() != 1 {
		return cli.Exit("keys revoke: give one key name or ID", 1)
	}
	a, err := newAdminClient(c)
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	var out daemon.RevokeKeyResponse
	if err := a.call(http.MethodDelete, "/v1/apikeys/"+url.PathEscape(c.Args().First()), nil, &out); err != nil {
		return cli.Exit("keys revoke: "+err.Error(), 1)
	}
	if c.Bool("json") {
		printJSON(c.App.Writer, out)
		return nil
	}
	for _, k := range out.Revoked {
		fmt.Fprintf(c.App.Writer, "revoked %s (%s); logged at index %d\n", printable(k.ID), printable(k.Name), out.Receipt.LogIndex)
	}
	return nil
}

func expiry(k identity.Info, now time.Time) string {
	if k.Expires.IsZero() {
		return "never"
	}
	if !now.Before(k.Expires) {
		return k.Expires.Format("2006-01-02")
	}
	return "in " + age(k.Expires.Sub(now))
}

func ago(now, t time.Time) string { return age(now.Sub(t)) + " ago" }

// age prints a duration the way people read it: 45s, 12m, 5h, 90d.
func age(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}

// identityConfig reads --identity-config and adds --client-ca files.
func identityConfig(c *cli.Context) (identity.Config, error) {
	var cfg identity.Config
	if f := c.String("identity-config"); f != "" {
		var err error
		if cfg, err = identity.LoadConfig(f); err != nil {
			return cfg, fmt.Errorf("--identity-config: %w", err)
		}
	}
	cfg.MTLS.ClientCAFiles = append(cfg.MTLS.ClientCAFiles, c.StringSlice("client-ca")...)
	return cfg, nil
}

func keysRotateSigner(c *cli.Context) error {
	a, err := newAdminClient(c)
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	var out daemon.RotateSignerResponse
	if err := a.call(http.MethodPost, "/v1/signing-keys", daemon.RotateSignerRequest{Signer: c.String("signer")}, &out); err != nil {
		return cli.Exit("keys rotate-signer: "+err.Error(), 1)
	}
	if c.Bool("json") {
		printJSON(c.App.Writer, out)
		return nil
	}
	fmt.Fprintf(c.App.Writer, "new decision-signing key %s; the rotation is logged at index %d, signed by the current key\n", out.Key.KeyID, out.Receipt.LogIndex)
	fmt.Fprintln(c.App.Writer, "restart the daemon to sign with it; receipts of either key verify with gatelog verify --signer-keys (gatelog keys signers --out keys.json)")
	return nil
}

func keysSigners(c *cli.Context) error {
	a, err := newAdminClient(c)
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	var ks daemon.SigningKeys
	if err := a.call(http.MethodGet, "/v1/keys", nil, &ks); err != nil {
		return cli.Exit("keys signers: "+err.Error(), 1)
	}
	if out := c.String("out"); out != "" {
		b, _ := json.MarshalIndent(ks, "", "  ")
		if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
			return cli.Exit(err.Error(), 1)
		}
	}
	if c.Bool("json") {
		printJSON(c.App.Writer, ks)
		return nil
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY ID\tVALID FROM\tVALID UNTIL")
	for _, k := range ks.Keys {
		from, until := "-", "in use"
		if !k.ValidFrom.IsZero() {
			from = k.ValidFrom.Format(time.RFC3339)
		}
		switch {
		case k.Pending:
			from, until = "next start", "-"
		case !k.ValidUntil.IsZero():
			until = k.ValidUntil.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", printable(k.KeyID), from, until)
	}
	return tw.Flush()
}

// signerKeys is where verify and audit --verify take the key that should
// have signed a receipt: --signer-key, or the key set of --signer-keys,
// read once for all the receipts of a run.
type signerKeys struct {
	one crypto.PublicKey   // --signer-key
	set daemon.SigningKeys // --signer-keys, when one is nil
}

func loadSignerKeys(c *cli.Context) (*signerKeys, error) {
	one, set := c.String("signer-key"), c.String("signer-keys")
	switch {
	case one != "" && set != "":
		return nil, fmt.Errorf("give --signer-key or --signer-keys, not both")
	case one != "":
		k, err := readPublicKey(one)
		if err != nil {
			return nil, fmt.Errorf("--signer-key: %v", err)
		}
		return &signerKeys{one: k}, nil
	case set == "":
		return nil, fmt.Errorf("give --signer-key or --signer-keys")
	}
	raw, err := os.ReadFile(set)
	if err != nil {
		return nil, fmt.Errorf("--signer-keys: %v", err)
	}
	ks, err := daemon.ParseSigningKeys(raw)
	if err != nil {
		return nil, fmt.Errorf("--signer-keys %s: %v", set, err)
	}
	return &signerKeys{set: ks}, nil
}

// For picks the key that should have signed rc: the --signer-key, or from
// the key set the key named by the record's daemon.key_id that was valid
// when the log integrated the entry (verify then checks the SET, so that
// time is the log's).
func (s *signerKeys) For(rc decision.Receipt) (crypto.PublicKey, error) {
	if s.one != nil {
		return s.one, nil
	}
	st, err := receipt.ReadStatement(rc.Envelope)
	if err != nil {
		return nil, fmt.Errorf("NOT VERIFIED: %v", err)
	}
	k, err := s.set.Select(st.Predicate.Daemon.KeyID, time.Unix(rc.IntegratedTime, 0))
	if err != nil {
		return nil, fmt.Errorf("NOT VERIFIED: signer key: %v", err)
	}
	return k, nil
}

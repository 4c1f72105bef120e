package main

import (
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

	"github.com/gatelog/gatelog/daemon/api"
	"github.com/gatelog/gatelog/engine/identity"
	"github.com/gatelog/gatelog/translog/verify"
)

// keysCommand administers API keys and the decision-signing key through
// the daemon's admin API, so every change is immediate and logged.
func keysCommand() *cli.Command {
	conn := append(clientFlags("admin API key"), &cli.BoolFlag{Name: "json", Usage: "print JSON"})
	return &cli.Command{
		Name:        "keys",
		Usage:       "manage API keys and the decision-signing key (needs an admin API key)",
		Description: connectionHelp,
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
				Usage:     "show the decision-signing keys and their validity windows (GET /v1/keys: public, no API key needed)",
				ArgsUsage: " ",
				Flags: append([]cli.Flag{
					&cli.StringFlag{Name: "out", Usage: "write the key set to this file, for gatelog verify --signer-keys"},
				}, conn...),
				Action: keysSigners,
			},
		},
	}
}

func printJSON(w io.Writer, v any) {
	b, _ := json.MarshalIndent(v, "", "  ")
	fmt.Fprintln(w, string(b))
}

func keysCreate(c *cli.Context) error {
	a, err := newClient(c, true)
	if err != nil {
		return err
	}
	if _, err := identity.ParseTTL(c.String("expires")); err != nil {
		return fmt.Errorf("--expires: %w", err)
	}
	var out api.CreateKeyResponse
	req := api.CreateKeyRequest{Name: c.String("name"), Permissions: c.StringSlice("perm"), ExpiresIn: c.String("expires")}
	if err := a.call(c.Context, http.MethodPost, "/v1/apikeys", req, &out); err != nil {
		return fmt.Errorf("keys create: %w", err)
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
	a, err := newClient(c, true)
	if err != nil {
		return err
	}
	var out struct {
		Keys []identity.Info `json:"keys"`
	}
	if err := a.call(c.Context, http.MethodGet, "/v1/apikeys", nil, &out); err != nil {
		return fmt.Errorf("keys list: %w", err)
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
		return fmt.Errorf("keys revoke: give one key name or ID")
	}
	a, err := newClient(c, true)
	if err != nil {
		return err
	}
	var out api.RevokeKeyResponse
	if err := a.call(c.Context, http.MethodDelete, "/v1/apikeys/"+url.PathEscape(c.Args().First()), nil, &out); err != nil {
		return fmt.Errorf("keys revoke: %w", err)
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
	a, err := newClient(c, true)
	if err != nil {
		return err
	}
	var out api.RotateSignerResponse
	if err := a.call(c.Context, http.MethodPost, "/v1/signing-keys", api.RotateSignerRequest{Signer: c.String("signer")}, &out); err != nil {
		return fmt.Errorf("keys rotate-signer: %w", err)
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
	a, err := newClient(c, false) // the key set is public
	if err != nil {
		return err
	}
	var ks verify.SigningKeys
	if err := a.call(c.Context, http.MethodGet, "/v1/keys", nil, &ks); err != nil {
		return fmt.Errorf("keys signers: %w", err)
	}
	if out := c.String("out"); out != "" {
		b, _ := json.MarshalIndent(ks, "", "  ")
		if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
			return err
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

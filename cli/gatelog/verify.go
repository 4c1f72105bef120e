package main

import (
	"bytes"
	"crypto"
	"encoding/json"
	"fmt"
	"os"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/urfave/cli/v2"

	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/translog/verify"
)

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "verify decision receipts offline with the log's and the daemon's public keys",
		ArgsUsage: "[more receipt files...]",
		Description: "Checks each receipt's envelope signature, its summary against the signed record, its entry UUID,\n" +
			"SET and inclusion proof up to a checkpoint signed by the log key. Receipts proven against the\n" +
			"same checkpoint share the check of its signature. Exit 0 when every receipt verifies, 1 otherwise.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "receipt", Usage: "receipt JSON written by gatelog decide --out (more can follow as arguments)"},
			&cli.StringFlag{Name: "log-key", Required: true, Usage: "the log's public key (PEM)"},
			&cli.StringFlag{Name: "signer-key", Usage: "the daemon's decision-signing public key (PEM)"},
			&cli.StringFlag{Name: "signer-keys", Usage: "the daemon's signing key set (GET /v1/keys, gatelog keys signers --out): the key is picked by the record's key ID and checked against its validity window"},
		},
		Action: func(c *cli.Context) error {
			files := c.Args().Slice()
			if r := c.String("receipt"); r != "" {
				files = append([]string{r}, files...)
			}
			if len(files) == 0 {
				return cli.Exit("give --receipt FILE, or receipt files as arguments", 1)
			}
			logKey, err := readPublicKey(c.String("log-key"))
			if err != nil {
				return cli.Exit(fmt.Sprintf("--log-key: %v", err), 1)
			}
			v, err := verify.New(logKey)
			if err != nil {
				return cli.Exit(fmt.Sprintf("--log-key: %v", err), 1)
			}
			keys, err := loadSignerKeys(c)
			if err != nil {
				return cli.Exit(err.Error(), 1)
			}
			if len(files) == 1 {
				return verifyOne(c, v, keys, files[0])
			}
			failed := 0
			for _, f := range files {
				if err := verifyOne(c, v, keys, f); err != nil {
					fmt.Fprintf(c.App.ErrWriter, "%s: %s\n", printable(f), printable(err.Error()))
					failed++
				}
			}
			fmt.Fprintf(c.App.Writer, "%d of %d receipts verified\n", len(files)-failed, len(files))
			if failed > 0 {
				return cli.Exit("", 1)
			}
			return nil
		},
	}
}

// verifyOne verifies the receipt in file and reports it on c's writer.
func verifyOne(c *cli.Context, v *verify.Verifier, keys *signerKeys, file string) error {
	rc, err := readReceipt(file)
	if err != nil {
		return cli.Exit(fmt.Sprintf("receipt: %v", err), 1)
	}
	signerKey, err := keys.For(rc)
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	res, err := v.Receipt(rc, signerKey)
	if err != nil {
		return cli.Exit("NOT VERIFIED: "+printable(err.Error()), 1)
	}
	rec := res.Statement.Predicate
	w := c.App.Writer
	fmt.Fprintf(w, "VERIFIED  %s %s: %s %s by %s\n", rec.Kind, printable(rec.DecisionID), recordOutcome(rec), printable(rec.Request.Action), printable(rec.Request.Subject.ID))
	fmt.Fprintf(w, "  signed by the daemon key, at %s\n", printable(rec.Time))
	if rec.Policy.SHA256 != "" {
		fmt.Fprintf(w, "  policy sha256 %s\n", printable(rec.Policy.SHA256))
	}
	fmt.Fprintf(w, "  in log %q at index %d of %d (inclusion proof and checkpoint signature OK, SET OK)\n",
		res.Checkpoint.Origin, rc.LogIndex, res.Checkpoint.Size)
	return nil
}

// recordOutcome says what a record is in one word: allow or deny for a
// policy decision; "reported" for an event a caller reported and
// "recorded" for an administrative record, neither of which the policy
// allowed or denied.
func recordOutcome(rec decision.Record) string {
	switch {
	case rec.Kind == decision.KindEvent:
		return "reported"
	case rec.Kind == decision.KindAdmin:
		return "recorded"
	case rec.Allowed():
		return "allow"
	}
	return "deny"
}

func readPublicKey(path string) (crypto.PublicKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return cryptoutils.UnmarshalPEMToPublicKey(raw)
}

// readReceipt decodes strictly: a renamed or unknown field is an error.
func readReceipt(path string) (decision.Receipt, error) {
	var rc decision.Receipt
	raw, err := os.ReadFile(path)
	if err != nil {
		return rc, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rc); err != nil {
		return rc, fmt.Errorf("not a gatelog receipt: %v", err)
	}
	if dec.More() {
		return rc, fmt.Errorf("not a gatelog receipt: trailing data")
	}
	return rc, nil
}

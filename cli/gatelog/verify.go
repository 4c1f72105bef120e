package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/translog/verify"
)

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "verify decision receipts offline with the log's and the daemon's public keys",
		ArgsUsage: "[more receipt files...]",
		Description: "Checks each receipt's envelope signature (with the daemon's key valid when the log integrated\n" +
			"it, from --signer-keys), its summary against the signed record, its entry UUID, SET and inclusion\n" +
			"proof up to a checkpoint signed by the log key. Receipts proven against the same checkpoint share\n" +
			"the check of its signature. Exit 0 when every receipt verifies, 3 when one does not, 1 on an error\n" +
			"(a file or key that cannot be read).",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "receipt", Usage: "receipt JSON written by gatelog decide --out (more can follow as arguments)"},
		}, keyFlags()...),
		Action: func(c *cli.Context) error {
			files := c.Args().Slice()
			if r := c.String("receipt"); r != "" {
				files = append([]string{r}, files...)
			}
			if len(files) == 0 {
				return fmt.Errorf("give --receipt FILE, or receipt files as arguments")
			}
			if c.String("log-key") == "" {
				return fmt.Errorf("give --log-key (and --signer-key or --signer-keys)")
			}
			v, err := pinnedVerifier(c, true)
			if err != nil {
				return err
			}
			if len(files) == 1 {
				return verifyOne(c, v, files[0])
			}
			var first error
			failed := 0
			for _, f := range files {
				if err := verifyOne(c, v, f); err != nil {
					fmt.Fprintf(c.App.ErrWriter, "%s: %s\n", printable(f), printable(err.Error()))
					failed++
					if first == nil || exitCode(err) == exitVerify {
						first = err
					}
				}
			}
			fmt.Fprintf(c.App.Writer, "%d of %d receipts verified\n", len(files)-failed, len(files))
			if failed > 0 {
				return &exitErr{code: exitCode(first), err: errors.New("")}
			}
			return nil
		},
	}
}

// verifyOne verifies the receipt in file and reports it on c's writer.
func verifyOne(c *cli.Context, v *verify.Verifier, file string) error {
	rc, err := readReceipt(file)
	if err != nil {
		return fmt.Errorf("receipt: %w", err)
	}
	res, err := v.Receipt(rc)
	if err != nil {
		return notVerifiedErr("", err)
	}
	rec := res.Statement.Predicate
	w := c.App.Writer
	fmt.Fprintf(w, "VERIFIED  %s %s: %s %s by %s\n", rec.Kind, printable(rec.DecisionID), recordOutcome(rec), printable(rec.Request.Action), printable(rec.Request.Subject.ID))
	fmt.Fprintf(w, "  signed by the daemon key %.16s…, at %s\n", printable(rec.Daemon.KeyID), printable(rec.Time))
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

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/translog/verify"
)

func decideCommand() *cli.Command {
	return &cli.Command{
		Name:      "decide",
		Usage:     "ask the daemon for a decision; exit 0 allowed, 2 denied, 3 not verified, 1 error",
		ArgsUsage: " ",
		Description: "The receipt is verified before the exit code is given: the envelope signature with the daemon's\n" +
			"signing key valid when it was logged, the SET, the inclusion proof to a checkpoint signed by the\n" +
			"log key, and that the signed record is a fresh answer to the request that was sent. Anything that\n" +
			"does not verify exits 3, whatever the answer said.\n\n" +
			"The keys: pin them (--log-key and --signer-keys, or GATELOG_LOG_KEY and GATELOG_SIGNER_KEYS) — what\n" +
			"a CI step should do. Without them the keys are pinned on first use, as ssh does: fetched once from\n" +
			"the daemon, their fingerprints printed, kept in --pin-file, and any later change is refused (exit 3).\n\n" +
			connectionHelp,
		Flags: append(append([]cli.Flag{
			&cli.StringFlag{Name: "input", Aliases: []string{"i"}, Required: true, Usage: "request JSON file (- for stdin)"},
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "write the receipt, with its inclusion proof, to this file"},
			&cli.BoolFlag{Name: "json", Usage: "print the receipt as JSON"},
			pinFileFlag,
		}, clientFlags("API key with the decide permission")...), keyFlags()...),
		Action: func(c *cli.Context) error {
			cl, err := newClient(c, true)
			if err != nil {
				return err
			}
			body, err := readInput(c.String("input"))
			if err != nil {
				return err
			}
			v, err := pinnedVerifier(c, true)
			if err != nil {
				return err
			}
			var pins *pinSession
			if v == nil {
				if v, pins, err = pinOnFirstUse(c, cl, c.App.ErrWriter, false); err != nil {
					return err
				}
			}
			sent := time.Now()
			raw, err := cl.do(c.Context, http.MethodPost, "/v1/decide?wait=checkpoint", body, 16<<20)
			if err != nil {
				return fmt.Errorf("decide: %w (denying)", err)
			}
			var rc decision.Receipt
			if err := json.Unmarshal(raw, &rc); err != nil {
				return notVerified(fmt.Errorf("decide: the reply is not a receipt: %w (denying)", err))
			}
			err = checkAnswer(v, rc, body, sent)
			if errors.Is(err, verify.ErrUnknownKey) && pins != nil {
				// A key not pinned yet: the daemon may have rotated.
				if v, err = pins.refresh(); err == nil {
					err = checkAnswer(v, rc, body, sent)
				}
			}
			if err != nil {
				return notVerifiedErr("decide (denying): ", err)
			}
			if out := c.String("out"); out != "" {
				pretty, _ := json.MarshalIndent(rc, "", "  ")
				if err := os.WriteFile(out, append(pretty, '\n'), 0o644); err != nil {
					return err
				}
			}
			if c.Bool("json") {
				pretty, _ := json.MarshalIndent(rc, "", "  ")
				fmt.Fprintln(c.App.Writer, string(pretty))
			} else {
				printReceipt(c.App.Writer, rc)
			}
			if !rc.Allow {
				return answerNo("")
			}
			return nil
		},
	}
}

func printReceipt(w io.Writer, rc decision.Receipt) {
	outcome := "ALLOWED"
	if !rc.Allow {
		outcome = "DENIED"
	}
	fmt.Fprintf(w, "%s  decision %s  log index %d\n", outcome, printable(rc.DecisionID), rc.LogIndex)
	for _, r := range rc.Reasons {
		fmt.Fprintf(w, "  reason: %s\n", printable(r))
	}
	for _, a := range rc.Alerts {
		fmt.Fprintf(w, "  alert [%s] %s: %s\n", printable(a.Severity), printable(a.Code), printable(a.Message))
	}
}

func readInput(name string) ([]byte, error) {
	if name == "-" {
		return io.ReadAll(io.LimitReader(os.Stdin, decision.MaxRequestBytes+1))
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("--input: %v", err)
	}
	return b, nil
}

// maxAnswerAge bounds how long before the request a verified record may
// have been made: an old allow replayed by whatever answers is refused.
const maxAnswerAge = 2 * time.Minute

// checkAnswer verifies rc offline and that the signed record answers the
// request that was sent (same action and resource, decided after it was
// sent, allowing for clock skew). Failures are *verify.CheckError.
func checkAnswer(v *verify.Verifier, rc decision.Receipt, sentBody []byte, sent time.Time) error {
	res, err := v.Receipt(rc)
	if err != nil {
		return err
	}
	rec := res.Statement.Predicate
	sentReq, err := decision.ParseRequest(sentBody)
	if err != nil {
		return fmt.Errorf("the request sent: %w", err)
	}
	if rec.Request.Action != sentReq.Action || !reflect.DeepEqual(rec.Request.Resource, sentReq.Resource) {
		return &verify.CheckError{Check: verify.CheckAnswer, Detail: fmt.Sprintf("the signed record answers another request (action %q on %s)", rec.Request.Action, rec.Request.Resource.Name)}
	}
	at, err := time.Parse(time.RFC3339Nano, rec.Time)
	if err != nil {
		return &verify.CheckError{Check: verify.CheckAnswer, Detail: fmt.Sprintf("the signed record's time %q", rec.Time), Err: err}
	}
	if at.Before(sent.Add(-maxAnswerAge)) {
		return &verify.CheckError{Check: verify.CheckAnswer, Detail: fmt.Sprintf("the signed record was made at %s, before this request was sent: an old answer", rec.Time)}
	}
	return nil
}

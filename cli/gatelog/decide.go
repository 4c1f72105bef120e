package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/translog/verify"
)

func decideCommand() *cli.Command {
	return &cli.Command{
		Name:      "decide",
		Usage:     "ask the daemon for a decision; exit 0 = allowed, 2 = denied, 1 = error",
		ArgsUsage: " ",
		Description: "With the daemon's public keys pinned (--log-key and --signer-key or --signer-keys, or their\n" +
			"environment variables) the receipt is verified before the exit code is given: the envelope\n" +
			"signature, the SET, the inclusion proof to a checkpoint signed by the log key, and that the\n" +
			"signed record is a fresh answer to the request that was sent. Anything that does not verify\n" +
			"exits 1. Without pinned keys the answer is taken on trust, and a warning says so.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "server", Value: "http://127.0.0.1:8080", Usage: "daemon URL", EnvVars: []string{"GATELOG_SERVER"}},
			&cli.StringFlag{Name: "input", Aliases: []string{"i"}, Required: true, Usage: "request JSON file (- for stdin)"},
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "write the receipt, with its inclusion proof, to this file"},
			&cli.StringFlag{Name: "api-key", Usage: "API key (prefer GATELOG_API_KEY or --api-key-file)", EnvVars: []string{"GATELOG_API_KEY"}},
			&cli.StringFlag{Name: "api-key-file", Usage: "file holding the API key"},
			&cli.DurationFlag{Name: "timeout", Value: 30 * time.Second, Usage: "give up after this long"},
			&cli.BoolFlag{Name: "json", Usage: "print the receipt as JSON"},
			&cli.StringFlag{Name: "log-key", Usage: "pin the log's public key (PEM): verify the receipt before exiting 0", EnvVars: []string{"GATELOG_LOG_KEY"}},
			&cli.StringFlag{Name: "signer-key", Usage: "pin the daemon's decision-signing public key (PEM)", EnvVars: []string{"GATELOG_SIGNER_KEY"}},
			&cli.StringFlag{Name: "signer-keys", Usage: "pin the daemon's signing key set (gatelog keys signers --out)", EnvVars: []string{"GATELOG_SIGNER_KEYS"}},
		},
		Action: func(c *cli.Context) error {
			key, err := apiKey(c)
			if err != nil {
				return cli.Exit(err.Error(), 1)
			}
			body, err := readInput(c.String("input"))
			if err != nil {
				return cli.Exit(err.Error(), 1)
			}
			pinned, err := pinnedVerifier(c)
			if err != nil {
				return cli.Exit(err.Error(), 1)
			}
			url := strings.TrimRight(c.String("server"), "/") + "/v1/decide"
			if c.String("out") != "" || pinned != nil {
				url += "?wait=checkpoint"
			}
			sent := time.Now()
			req, err := http.NewRequestWithContext(c.Context, http.MethodPost, url, bytes.NewReader(body))
			if err != nil {
				return cli.Exit(err.Error(), 1)
			}
			req.Header.Set("Authorization", "Bearer "+key)
			req.Header.Set("Content-Type", "application/json")
			hc := &http.Client{Timeout: c.Duration("timeout")}
			resp, err := hc.Do(req)
			if err != nil {
				return cli.Exit(fmt.Sprintf("decide: %v (denying)", err), 1)
			}
			defer resp.Body.Close()
			raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
			if err != nil {
				return cli.Exit(fmt.Sprintf("decide: reading reply: %v (denying)", err), 1)
			}
			if resp.StatusCode != http.StatusOK {
				return cli.Exit(fmt.Sprintf("decide: %s: %s (denying)", resp.Status, errorMessage(raw)), 1)
			}
			var rc decision.Receipt
			if err := json.Unmarshal(raw, &rc); err != nil {
				return cli.Exit(fmt.Sprintf("decide: reply is not a receipt: %v (denying)", err), 1)
			}
			if pinned != nil {
				if err := pinned.check(rc, body, sent); err != nil {
					return cli.Exit(fmt.Sprintf("decide: NOT VERIFIED: %s (denying)", printable(err.Error())), 1)
				}
			} else {
				fmt.Fprintln(c.App.ErrWriter, "warning: the answer is not verified; pin the daemon's keys (--log-key and --signer-key, or GATELOG_LOG_KEY and GATELOG_SIGNER_KEY)")
			}
			if out := c.String("out"); out != "" {
				if rc.InclusionProof == nil {
					return cli.Exit("decide: the daemon sent no inclusion proof in time; fetch it later with GET /v1/decisions/"+rc.DecisionID, 1)
				}
				pretty, _ := json.MarshalIndent(rc, "", "  ")
				if err := os.WriteFile(out, append(pretty, '\n'), 0o644); err != nil {
					return cli.Exit(err.Error(), 1)
				}
			}
			if c.Bool("json") {
				pretty, _ := json.MarshalIndent(rc, "", "  ")
				fmt.Fprintln(c.App.Writer, string(pretty))
			} else {
				printReceipt(c.App.Writer, rc)
			}
			if !rc.Allow {
				return cli.Exit("", exitDenied)
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

func apiKey(c *cli.Context) (string, error) {
	if f := c.String("api-key-file"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("--api-key-file: %v", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	if k := strings.TrimSpace(c.String("api-key")); k != "" {
		return k, nil
	}
	return "", fmt.Errorf("no API key: set GATELOG_API_KEY or pass --api-key-file")
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

func errorMessage(raw []byte) string {
	var e struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(raw, &e) == nil && e.Message != "" {
		return e.Message
	}
	return strings.TrimSpace(string(raw))
}

// pinnedKeys verifies a daemon's answer with the keys a CI step pinned.
type pinnedKeys struct {
	v    *verify.Verifier
	keys *signerKeys
}

// pinnedVerifier reads the pinned keys, nil when none are given.
func pinnedVerifier(c *cli.Context) (*pinnedKeys, error) {
	if c.String("log-key") == "" {
		if c.String("signer-key") != "" || c.String("signer-keys") != "" {
			return nil, fmt.Errorf("--signer-key/--signer-keys need --log-key: both keys are pinned together")
		}
		return nil, nil
	}
	logKey, err := readPublicKey(c.String("log-key"))
	if err != nil {
		return nil, fmt.Errorf("--log-key: %w", err)
	}
	v, err := verify.New(logKey)
	if err != nil {
		return nil, fmt.Errorf("--log-key: %w", err)
	}
	keys, err := loadSignerKeys(c)
	if err != nil {
		return nil, err
	}
	return &pinnedKeys{v: v, keys: keys}, nil
}

// maxAnswerAge bounds how long before the request a verified record may
// have been made: an old allow replayed by whatever answers is refused.
const maxAnswerAge = 2 * time.Minute

// check verifies rc offline and that the signed record answers the request
// that was sent (same action and resource, decided after it was sent,
// allowing for clock skew).
func (p *pinnedKeys) check(rc decision.Receipt, sentBody []byte, sent time.Time) error {
	key, err := p.keys.For(rc)
	if err != nil {
		return err
	}
	res, err := p.v.Receipt(rc, key)
	if err != nil {
		return err
	}
	rec := res.Statement.Predicate
	sentReq, err := decision.ParseRequest(sentBody)
	if err != nil {
		return fmt.Errorf("the request sent: %w", err)
	}
	if rec.Request.Action != sentReq.Action || !reflect.DeepEqual(rec.Request.Resource, sentReq.Resource) {
		return fmt.Errorf("the signed record answers another request (action %q on %s)", rec.Request.Action, rec.Request.Resource.Name)
	}
	at, err := time.Parse(time.RFC3339Nano, rec.Time)
	if err != nil {
		return fmt.Errorf("the signed record's time %q: %w", rec.Time, err)
	}
	if at.Before(sent.Add(-maxAnswerAge)) {
		return fmt.Errorf("the signed record was made at %s, before this request was sent: an old answer", rec.Time)
	}
	return nil
}

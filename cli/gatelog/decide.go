package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gatelog/gatelog/engine/decision"
)

func decideCommand() *cli.Command {
	return &cli.Command{
		Name:      "decide",
		Usage:     "ask the daemon for a decision; exit 0 = allowed, 2 = denied, 1 = error",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "server", Value: "http://127.0.0.1:8080", Usage: "daemon URL", EnvVars: []string{"GATELOG_SERVER"}},
			&cli.StringFlag{Name: "input", Aliases: []string{"i"}, Required: true, Usage: "request JSON file (- for stdin)"},
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "write the receipt, with its inclusion proof, to this file"},
			&cli.StringFlag{Name: "api-key", Usage: "API key (prefer GATELOG_API_KEY or --api-key-file)", EnvVars: []string{"GATELOG_API_KEY"}},
			&cli.StringFlag{Name: "api-key-file", Usage: "file holding the API key"},
			&cli.DurationFlag{Name: "timeout", Value: 30 * time.Second, Usage: "give up after this long"},
			&cli.BoolFlag{Name: "json", Usage: "print the receipt as JSON"},
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
			url := strings.TrimRight(c.String("server"), "/") + "/v1/decide"
			if c.String("out") != "" {
				url += "?wait=checkpoint"
			}
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
	fmt.Fprintf(w, "%s  decision %s  log index %d\n", outcome, rc.DecisionID, rc.LogIndex)
	for _, r := range rc.Reasons {
		fmt.Fprintf(w, "  reason: %s\n", r)
	}
	for _, a := range rc.Alerts {
		fmt.Fprintf(w, "  alert [%s] %s: %s\n", a.Severity, a.Code, a.Message)
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

package main

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/gatelog/gatelog/translog/verify"
	"github.com/gatelog/gatelog/translog/witness"
)

// witnessKeyCommand is gatelog log witness-key: a new witness key for
// gatelog monitor --witness-key and gatelog serve --witness-vkey.
func witnessKeyCommand() *cli.Command {
	return &cli.Command{
		Name:  "witness-key",
		Usage: "make a witness key: the private key goes to --out (0600), the verifier key (for serve --witness-vkey) to standard output",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "name", Required: true, Usage: "the witness's name, e.g. witness.example.com"},
			&cli.StringFlag{Name: "out", Required: true, Usage: "file for the private key (must not exist)"},
		},
		Action: func(c *cli.Context) error {
			skey, vkey, err := witness.GenerateKey(c.String("name"))
			if err != nil {
				return cli.Exit(fmt.Sprintf("--name: %v", err), 1)
			}
			f, err := os.OpenFile(c.String("out"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return cli.Exit(err.Error(), 1)
			}
			if _, err := fmt.Fprintln(f, skey); err != nil {
				f.Close()
				return cli.Exit(err.Error(), 1)
			}
			if err := f.Close(); err != nil {
				return cli.Exit(err.Error(), 1)
			}
			fmt.Fprintln(c.App.Writer, vkey)
			return nil
		},
	}
}

// cosignAndSend cosigns a checkpoint the monitor found consistent and
// posts it to the daemon, which keeps it if it trusts this witness.
func cosignAndSend(c *cli.Context, cl *client, cs *witness.Cosigner, origin string, logKey crypto.PublicKey, checkpoint []byte) error {
	lv, err := verify.CheckpointVerifier(origin, logKey)
	if err != nil {
		return err
	}
	cosigned, err := cs.Cosign(checkpoint, lv)
	if err != nil {
		return err
	}
	resp, err := cl.request(c.Context, cl.hc, http.MethodPost, witness.CheckpointPath, bytes.NewReader(cosigned), http.Header{"Content-Type": {"text/plain"}})
	var he *HTTPError
	if errors.As(err, &he) {
		return fmt.Errorf("the daemon refused the cosigned checkpoint: %w", err)
	}
	if err != nil {
		return fmt.Errorf("send cosigned checkpoint: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	fmt.Fprintf(c.App.Writer, "  cosigned as %s: %s\n", cs.Name(), printable(strings.TrimSpace(string(msg))))
	return nil
}

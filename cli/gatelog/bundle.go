package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/urfave/cli/v2"
	"google.golang.org/protobuf/proto"

	"github.com/gatelog/gatelog/record/receipt"
	"github.com/gatelog/gatelog/translog/rekorapi"
	"github.com/gatelog/gatelog/translog/sigbundle"
)

// bundleCommands are gatelog log bundle and gatelog log trusted-root: a
// decision as a Sigstore bundle, and the log as a Sigstore trusted root
// (package translog/sigbundle).
func bundleCommands() []*cli.Command {
	common := func(more ...cli.Flag) []cli.Flag {
		return append(append([]cli.Flag{
			&cli.StringFlag{Name: "out", Usage: "write to this file instead of standard output"},
		}, readClientFlags()...), more...)
	}
	return []*cli.Command{
		{
			Name:  "bundle",
			Usage: "write the Sigstore bundle (v0.3) of the decision at a log index, for sigstore-go or cosign (the bundle holds the record: needs a read key unless records are public)",
			Flags: common(&cli.Int64Flag{Name: "index", Required: true, Usage: "log index"},
				&cli.StringFlag{Name: "subject-out", Usage: "also write the blob the attestation's subject is the digest of (the RFC 8785 canonical JSON of predicate.request), for cosign verify-blob-attestation with its claims checked"}),
			Action: logBundle,
		},
		{
			Name:  "trusted-root",
			Usage: "write a Sigstore trusted root naming this log and its key",
			Flags: common(
				&cli.StringFlag{Name: "log-key", Required: true, Usage: "the log's public key (PEM)", EnvVars: []string{"GATELOG_LOG_KEY"}},
				&cli.StringFlag{Name: "signer-key", Usage: "the daemon's decision-signing public key (PEM): print the key hint bundles carry for it"},
				&cli.TimestampFlag{Name: "valid-from", Layout: time.RFC3339, Usage: "when the log key became valid (default: the integrated time of the log's first entry)"}),
			Action: logTrustedRoot,
		},
	}
}

func writeOut(c *cli.Context, m proto.Message) error {
	raw, err := sigbundle.Marshal(m)
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	raw = append(raw, '\n')
	if p := c.String("out"); p != "" {
		if err := os.WriteFile(p, raw, 0o644); err != nil {
			return cli.Exit(err.Error(), 1)
		}
		return nil
	}
	_, err = c.App.Writer.Write(raw)
	return err
}

func rekorClient(c *cli.Context) (*rekorapi.Client, error) {
	cl, err := newClient(c, false)
	if err != nil {
		return nil, err
	}
	rc, err := rekorapi.NewClient(cl.URL(), cl.HTTPClient(), rekorapi.WithBearer(cl.key))
	if err != nil {
		return nil, fmt.Errorf("--server: %w", err)
	}
	return rc, nil
}

func logBundle(c *cli.Context) error {
	rc, err := rekorClient(c)
	if err != nil {
		return err
	}
	b, err := sigbundle.Fetch(c.Context, rc, c.Int64("index"))
	if err != nil {
		return fmt.Errorf("bundle of entry %d: %w", c.Int64("index"), err)
	}
	if p := c.String("subject-out"); p != "" {
		blob, err := subjectBlob(b.GetDsseEnvelope().GetPayload())
		if err != nil {
			return fmt.Errorf("bundle of entry %d: --subject-out: %w", c.Int64("index"), err)
		}
		if err := os.WriteFile(p, blob, 0o644); err != nil {
			return err
		}
	}
	return writeOut(c, b)
}

// subjectBlob is the blob an attestation's subject digest is over: the
// canonical JSON of the statement's predicate.request, checked against the
// subject's sha256 so what is written is what cosign will compare.
func subjectBlob(payload []byte) ([]byte, error) {
	var st struct {
		Subject []struct {
			Digest map[string]string `json:"digest"`
		} `json:"subject"`
		Predicate struct {
			Request json.RawMessage `json:"request"`
		} `json:"predicate"`
	}
	if err := json.Unmarshal(payload, &st); err != nil {
		return nil, fmt.Errorf("the statement: %w", err)
	}
	if len(st.Subject) != 1 || len(st.Predicate.Request) == 0 {
		return nil, fmt.Errorf("the statement has %d subjects and request %q; want one subject and a request", len(st.Subject), st.Predicate.Request)
	}
	blob, err := receipt.CanonicalJSON(st.Predicate.Request)
	if err != nil {
		return nil, fmt.Errorf("canonical request: %w", err)
	}
	if got, want := sha256Hex(blob), st.Subject[0].Digest["sha256"]; got != want {
		return nil, fmt.Errorf("the canonical request hashes to %s, the subject says %s", got, want)
	}
	return blob, nil
}

func logTrustedRoot(c *cli.Context) error {
	logKey, err := readPublicKey(c.String("log-key"))
	if err != nil {
		return cli.Exit(fmt.Sprintf("--log-key: %v", err), 1)
	}
	if c.IsSet("signer-key") {
		signerKey, err := readPublicKey(c.String("signer-key"))
		if err != nil {
			return cli.Exit(fmt.Sprintf("--signer-key: %v", err), 1)
		}
		hint, err := sigbundle.KeyID(signerKey)
		if err != nil {
			return cli.Exit(fmt.Sprintf("--signer-key: %v", err), 1)
		}
		fmt.Fprintf(c.App.ErrWriter, "decision key hint %s: a trusted root holds no signing keys; give %s to the verifier as a trusted public key\n", hint, c.String("signer-key"))
	}
	var from time.Time
	if t := c.Timestamp("valid-from"); t != nil {
		from = *t
	} else if from, err = firstIntegratedTime(c.Context, c); err != nil {
		return err
	}
	tr, err := sigbundle.TrustedRoot(logKey, c.String("server"), from)
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	return writeOut(c, tr)
}

// firstIntegratedTime is when the log's first entry was integrated, the
// earliest time its key must be valid; an empty log starts now.
func firstIntegratedTime(ctx context.Context, c *cli.Context) (time.Time, error) {
	rc, err := rekorClient(c)
	if err != nil {
		return time.Time{}, err
	}
	li, err := rc.LogInfo(ctx)
	if err != nil {
		return time.Time{}, cli.Exit(fmt.Sprintf("log info: %v (or give --valid-from)", err), 1)
	}
	if li.TreeSize == 0 {
		return time.Now().Truncate(time.Second), nil
	}
	_, e, err := rc.EntryByIndex(ctx, 0)
	if err != nil {
		return time.Time{}, cli.Exit(fmt.Sprintf("entry 0: %v (or give --valid-from)", err), 1)
	}
	return time.Unix(e.IntegratedTime, 0), nil
}

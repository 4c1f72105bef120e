package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gatelog/gatelog/translog/monitor"
	"github.com/gatelog/gatelog/translog/witness"
)

func monitorCommand() *cli.Command {
	return &cli.Command{
		Name:  "monitor",
		Usage: "follow a log: every checkpoint must extend the last, every entry must hash into the tree; exit 3 on an alarm",
		Description: "With --signer-keys (the daemon's key set: gatelog keys signers --out) every new entry must name the\n" +
			"signing key valid when it was logged (its SET proves when), so a key rotation never alarms and an entry\n" +
			"signed by a retired key always does; with a read key (or public records) every envelope's signature is\n" +
			"verified too.\n\n" + connectionHelp,
		Flags: append(auditorFlags(),
			&cli.DurationFlag{Name: "interval", Value: 10 * time.Second, Usage: "how often to look for a new checkpoint"},
			&cli.BoolFlag{Name: "once", Usage: "check the latest checkpoint once and exit"},
			&cli.BoolFlag{Name: "from-start", Usage: "re-hash the whole log instead of starting from the last checkpoint saved"},
			&cli.StringFlag{Name: "witness-key", Usage: "witness private key file (gatelog log witness-key): cosign every checkpoint found consistent (C2SP tlog-cosignature) and give it to the daemon"}),
		Action: func(c *cli.Context) error {
			a, err := newAuditor(c)
			if err != nil {
				return err
			}
			ctx := c.Context
			w := c.App.Writer
			var cosigner *witness.Cosigner
			if p := c.String("witness-key"); p != "" {
				skey, err := os.ReadFile(p)
				if err != nil {
					return fmt.Errorf("--witness-key: %w", err)
				}
				if cosigner, err = witness.NewCosigner(string(skey)); err != nil {
					return fmt.Errorf("--witness-key: %w", err)
				}
			}
			// The first checkpoint only names the origin, to find the state.
			_, cp, err := a.follower.FetchCheckpoint(ctx)
			if err != nil {
				return auditFail(c.App.ErrWriter, err)
			}
			var trusted []byte
			if !c.Bool("from-start") {
				if trusted, err = monitor.LoadState(a.stateDir, cp.Origin); err != nil {
					return fmt.Errorf("state: %w", err)
				}
			}
			if err := a.follower.Start(ctx, trusted); err != nil {
				return auditFail(c.App.ErrWriter, err)
			}
			if trusted != nil {
				tc, _ := a.v.Checkpoint(trusted)
				fmt.Fprintf(w, "following %s from the saved checkpoint of size %d\n", cp.Origin, tc.Size)
			} else {
				fmt.Fprintf(w, "following %s from the empty tree (re-hashing every entry)\n", cp.Origin)
			}
			for {
				rep, err := a.follower.Step(ctx)
				if again, rerr := a.refreshPins(err); rerr != nil {
					return notVerified(rerr)
				} else if again {
					rep, err = a.follower.Step(ctx)
				}
				var al *monitor.Alarm
				switch {
				case errors.As(err, &al):
					return auditFail(c.App.ErrWriter, err)
				case err != nil && c.Bool("once"):
					return err
				case err != nil:
					fmt.Fprintf(c.App.ErrWriter, "%s  cannot check the log now: %s\n", time.Now().UTC().Format(time.RFC3339), printable(err.Error()))
				default:
					if err := monitor.SaveState(a.stateDir, cp.Origin, rep.Checkpoint); err != nil {
						return fmt.Errorf("state: %w", err)
					}
					fmt.Fprintf(w, "%s  OK  size %d root %x: consistent, %d new entries re-hashed into the root, %s\n",
						time.Now().UTC().Format(time.RFC3339), rep.Size, rep.Root, rep.NewEntries, rep.Envelopes.Describe(a.follower.SigningKeys()))
					if cosigner != nil {
						if err := cosignAndSend(c, a.client, cosigner, cp.Origin, a.logKey, rep.Checkpoint); err != nil && c.Bool("once") {
							return err
						} else if err != nil {
							fmt.Fprintf(c.App.ErrWriter, "%s  cannot cosign: %v\n", time.Now().UTC().Format(time.RFC3339), err)
						}
					}
				}
				if c.Bool("once") {
					return nil
				}
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(c.Duration("interval")):
				}
			}
		},
	}
}

//go:build !auditor

package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/gatelog/gatelog/daemon"
	"github.com/gatelog/gatelog/engine"
	"github.com/gatelog/gatelog/policies"
)

// servePolicy loads the daemon's first policy from --policies, --bundle or
// --bundle-url (the bundled library if none) and says how to reload it:
// on SIGHUP, on file changes, and by polling the bundle URL.
func servePolicy(c *cli.Context) (engine.Source, daemon.PolicyWatch, error) {
	dir, file, url := c.String("policies"), c.String("bundle"), c.String("bundle-url")
	n := 0
	for _, s := range []string{dir, file, url} {
		if s != "" {
			n++
		}
	}
	if n > 1 {
		return engine.Source{}, daemon.PolicyWatch{}, fmt.Errorf("give one of --policies, --bundle and --bundle-url")
	}
	var w daemon.PolicyWatch
	if kf := c.String(bundleKeyFlag.Name); kf != "" {
		if file == "" && url == "" {
			return engine.Source{}, w, fmt.Errorf("--%s is given but no --bundle or --bundle-url", bundleKeyFlag.Name)
		}
		v, err := engine.LoadBundleVerificationKey(kf)
		if err != nil {
			return engine.Source{}, w, fmt.Errorf("--%s: %w", bundleKeyFlag.Name, err)
		}
		w.Verification = v
	}
	var src engine.Source
	var err error
	switch {
	case dir != "":
		if src, err = engine.LoadDir(dir); err != nil {
			return src, w, fmt.Errorf("--policies %s: %w", dir, err)
		}
		w.Dir = dir
	case file != "":
		if src, err = engine.LoadBundleFile(file, w.Verification); err != nil {
			return src, w, fmt.Errorf("--bundle: %w", err)
		}
		w.BundleFile = file
	case url != "":
		f := &daemon.BundleFetcher{URL: url, Verification: w.Verification}
		if src, w.ETag, err = f.Fetch(c.Context); err != nil {
			return src, w, fmt.Errorf("--bundle-url: %w", err)
		}
		w.BundleURL, w.PollInterval = url, c.Duration("bundle-poll-interval")
	default:
		src = engine.Embedded(policies.FS())
		w.Embedded = src
	}
	if files := c.StringSlice("policy-data"); len(files) > 0 {
		if src, err = src.WithDataFiles(files); err != nil {
			return src, w, fmt.Errorf("--policy-data: %w", err)
		}
		w.DataFiles = files
	}
	// Caught from here on, so SIGHUP reloads instead of ending the daemon.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	w.Signals = hup
	return src, w, nil
}

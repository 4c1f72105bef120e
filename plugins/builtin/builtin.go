// Package builtin lists the adapters compiled into the gatelog binary and
// serves one of them as an adapter process (`gatelog adapter serve NAME`),
// which is how the daemon's host runs them: the same binary, a separate
// process per adapter. It also reads the webhooks config into the built-in
// webhook hooks (webhooks.go), which run in the daemon's own process.
package builtin

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/gatelog/gatelog/plugins/adapter"
	"github.com/gatelog/gatelog/plugins/github"
	"github.com/gatelog/gatelog/plugins/gitlab"
	"github.com/gatelog/gatelog/plugins/jenkins"
	"github.com/gatelog/gatelog/plugins/tekton"
)

// Names lists the built-in adapters, sorted.
func Names() []string { return []string{"github", "gitlab", "jenkins", "tekton"} }

// New returns a fresh, unconfigured built-in adapter.
func New(name string) (adapter.Adapter, error) {
	switch name {
	case "github":
		return github.New(), nil
	case "gitlab":
		return gitlab.New(), nil
	case "jenkins":
		return jenkins.New(), nil
	case "tekton":
		return tekton.New(), nil
	default:
		return nil, fmt.Errorf("no built-in adapter %q (have %s)", name, strings.Join(Names(), ", "))
	}
}

// ErrNotStartedByHost is returned by Serve when the process was not started
// by a gatelog daemon (the go-plugin handshake cookie is missing).
var ErrNotStartedByHost = errors.New("gatelog adapter serve is started by the gatelog daemon, not by hand: enable the adapter in the daemon config")

// Serve runs the named built-in adapter as an adapter process on stdin and
// stdout until the daemon goes away.
func Serve(name string) error {
	a, err := New(name)
	if err != nil {
		return err
	}
	if os.Getenv(adapter.Handshake.MagicCookieKey) != adapter.Handshake.MagicCookieValue {
		return ErrNotStartedByHost
	}
	adapter.Serve(a)
	return nil
}

package builtin_test

import (
	"errors"
	"testing"

	"github.com/gatelog/gatelog/plugins/adapter"
	"github.com/gatelog/gatelog/plugins/builtin"
)

func TestEveryBuiltinIsNamedAsListed(t *testing.T) {
	for _, name := range builtin.Names() {
		a, err := builtin.New(name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := a.Info(t.Context())
		if err != nil || info.Name != name {
			t.Errorf("New(%q).Info() = %+v, %v", name, info, err)
		}
	}
	if _, err := builtin.New("gitlab-ci"); err == nil {
		t.Error("New(unknown): no error")
	}
}

func TestServeRefusesWithoutHost(t *testing.T) {
	t.Setenv(adapter.Handshake.MagicCookieKey, "")
	if err := builtin.Serve("tekton"); !errors.Is(err, builtin.ErrNotStartedByHost) {
		t.Errorf("Serve = %v, want ErrNotStartedByHost", err)
	}
	if err := builtin.Serve("nope"); err == nil || errors.Is(err, builtin.ErrNotStartedByHost) {
		t.Errorf("Serve(unknown) = %v", err)
	}
}

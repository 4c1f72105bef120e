package main

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/gatelog/gatelog/translog/monitor"
	"github.com/gatelog/gatelog/translog/verify"
)

// TestExitCodeMapping: one place maps errors to the table, by type, however
// deeply the cause is wrapped.
func TestExitCodeMapping(t *testing.T) {
	check := &verify.CheckError{Check: verify.CheckSET, Detail: "does not verify"}
	for _, tc := range []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, exitOK},
		{"plain error", errors.New("open x: no such file"), exitError},
		{"urfave exit", cli.Exit("usage", 1), exitError},
		{"a failed check", check, exitVerify},
		{"a failed check, wrapped", fmt.Errorf("entry 3: %w", check), exitVerify},
		{"an alarm", &monitor.Alarm{Kind: monitor.Fork}, exitVerify},
		{"an alarm, wrapped", fmt.Errorf("step: %w", &monitor.Alarm{Kind: monitor.BadEntry, Err: check}), exitVerify},
		{"pinned keys changed", fmt.Errorf("decide: %w", ErrPinnedKeyChanged), exitVerify},
		{"denied", answerNo(""), exitNo},
		{"not verified, escaped", notVerifiedErr("", errors.New("\x1b[2K")), exitVerify},
		{"a daemon's error", &HTTPError{Status: "503", Code: 503, Message: "log unavailable"}, exitError},
	} {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("%s: exit %d, want %d", tc.name, got, tc.want)
		}
	}
}

// TestOneClientForEveryCommand: every command that talks to a daemon has
// the same connection flags, with the same environment variables.
func TestOneClientForEveryCommand(t *testing.T) {
	want := map[string][]string{}
	for _, f := range clientFlags("") {
		want[f.Names()[0]] = envVars(f)
	}
	var walk func(path string, cmds []*cli.Command)
	seen := 0
	walk = func(path string, cmds []*cli.Command) {
		for _, c := range cmds {
			name := path + " " + c.Name
			walk(name, c.Subcommands)
			got := map[string][]string{}
			for _, f := range c.Flags {
				got[f.Names()[0]] = envVars(f)
			}
			if _, ok := got["server"]; !ok || c.Name == "serve" {
				continue
			}
			seen++
			for flag, env := range want {
				if e, ok := got[flag]; !ok || !slices.Equal(e, env) {
					t.Errorf("%s: --%s %v, want it with %v like every client command", name, flag, e, env)
				}
			}
		}
	}
	walk("gatelog", newApp().Commands)
	if seen < 15 {
		t.Errorf("only %d client commands found", seen)
	}
}

func envVars(f cli.Flag) []string {
	if e, ok := f.(interface{ GetEnvVars() []string }); ok {
		return e.GetEnvVars()
	}
	return nil
}

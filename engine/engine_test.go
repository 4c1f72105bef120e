package engine_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/gatelog/gatelog/engine"
	"github.com/gatelog/gatelog/record/decision"
)

const basePolicy = `package gatelog

default decision := {"allow": false, "reasons": ["nothing allows this"]}

decision := {"allow": true, "reasons": ["triggers are open to all"]} if {
	input.action == "pipeline.trigger"
	input.subject.verified
}

decision := {"allow": false, "reasons": [sprintf("frozen: %s", [data.gatelog_config.freeze])]} if {
	input.action == "deploy"
}
`

func policyFS(rego string) fstest.MapFS {
	return fstest.MapFS{
		"decision.rego": {Data: []byte(rego)},
		"data.yaml":     {Data: []byte("gatelog_config:\n  freeze: winter\n")},
		"README.md":     {Data: []byte("not a policy file")},
	}
}

func TestDecide(t *testing.T) {
	ctx := context.Background()
	e, err := engine.New(ctx, policyFS(basePolicy))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		req    decision.Request
		allow  bool
		reason string
	}{
		{"allowed trigger", decision.Request{Action: "pipeline.trigger", Subject: decision.Subject{ID: "a", Verified: true}}, true, "open to all"},
		{"unverified trigger", decision.Request{Action: "pipeline.trigger", Subject: decision.Subject{ID: "a"}}, false, "nothing allows"},
		{"data is loaded", decision.Request{Action: "deploy"}, false, "frozen: winter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, pol := e.Decide(ctx, tt.req)
			if d.Allow != tt.allow || len(d.Reasons) == 0 || !strings.Contains(d.Reasons[0], tt.reason) {
				t.Errorf("got %+v, want allow=%v reason containing %q", d, tt.allow, tt.reason)
			}
			if pol.SHA256 == "" || pol.Entrypoint != engine.Entrypoint || pol.OPAVersion == "" {
				t.Errorf("policy identity incomplete: %+v", pol)
			}
		})
	}
}

func TestDecideFailsClosed(t *testing.T) {
	ctx := context.Background()
	cases := map[string]string{
		"undefined":     "package gatelog\n\ndecision := {\"allow\": true} if { false }\n",
		"allow missing": "package gatelog\n\ndecision := {\"reasons\": []}\n",
		"allow string":  "package gatelog\n\ndecision := {\"allow\": \"yes\"}\n",
		"not an object": "package gatelog\n\ndecision := true\n",
		"eval error":    "package gatelog\n\ndecision := {\"allow\": to_number(\"x\") > 0}\n",
	}
	for name, rego := range cases {
		t.Run(name, func(t *testing.T) {
			e, err := engine.New(ctx, policyFS(rego))
			if err != nil {
				t.Fatal(err)
			}
			d, _ := e.Decide(ctx, decision.Request{Action: "deploy"})
			if d.Allow || len(d.Reasons) == 0 {
				t.Errorf("want a deny with a reason, got %+v", d)
			}
		})
	}
}

func TestNewRejectsBrokenPolicy(t *testing.T) {
	_, err := engine.New(context.Background(), policyFS("package gatelog\n\ndecision := {"))
	if err == nil {
		t.Fatal("a policy that does not parse was accepted")
	}
	_, err = engine.New(context.Background(), fstest.MapFS{"x.txt": {Data: []byte("x")}})
	if err == nil || !strings.Contains(err.Error(), "no .rego") {
		t.Fatalf("want a 'no .rego files' error, got %v", err)
	}
}

func TestDigestNamesTheFiles(t *testing.T) {
	a, _ := engine.Digest(policyFS(basePolicy))
	b, _ := engine.Digest(policyFS(basePolicy + "\n# comment\n"))
	fs := policyFS(basePolicy)
	fs["README.md"] = &fstest.MapFile{Data: []byte("changed")}
	c, _ := engine.Digest(fs)
	if a == b {
		t.Error("digest did not change when a policy file changed")
	}
	if a != c {
		t.Error("digest changed when a non-policy file changed")
	}
}

// A broken policy pushed while decisions run never interrupts them, and a
// good one is swapped in whole.
func TestReloadIsAtomic(t *testing.T) {
	ctx := context.Background()
	e, err := engine.New(ctx, policyFS(basePolicy))
	if err != nil {
		t.Fatal(err)
	}
	before := e.Policy()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan string, 1)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				d, _ := e.Decide(ctx, decision.Request{Action: "pipeline.trigger", Subject: decision.Subject{ID: "a", Verified: true}})
				if !d.Allow {
					select {
					case errs <- fmt.Sprint(d.Reasons):
					default:
					}
				}
			}
		}()
	}
	for range 20 {
		if _, _, err := e.Reload(ctx, policyFS("package gatelog\n\ndecision := {")); err == nil {
			t.Error("broken policy was swapped in")
		}
	}
	close(stop)
	wg.Wait()
	select {
	case r := <-errs:
		t.Fatalf("a decision failed during reload: %s", r)
	default:
	}
	if e.Policy() != before {
		t.Fatal("policy identity changed after failed reloads")
	}
	old, cur, err := e.Reload(ctx, policyFS(strings.Replace(basePolicy, "open to all", "open", 1)))
	if err != nil || old != before || cur == before || e.Policy() != cur {
		t.Fatalf("good reload: old=%v cur=%v err=%v", old, cur, err)
	}
}

func ExampleEngine_Decide() {
	ctx := context.Background()
	e, err := engine.New(ctx, policyFS(basePolicy))
	if err != nil {
		panic(err)
	}
	d, _ := e.Decide(ctx, decision.Request{Action: "deploy"})
	fmt.Println(d.Allow, d.Reasons)
	// Output: false [frozen: winter]
}

// An error names what kind of failure it is and keeps its cause: a policy
// directory that is not there is both ErrPolicy and fs.ErrNotExist.
func TestPolicyErrorsKeepTheirCause(t *testing.T) {
	_, err := engine.NewFromSource(context.Background(), engine.Source{FS: os.DirFS(filepath.Join(t.TempDir(), "missing"))})
	if !errors.Is(err, engine.ErrPolicy) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("policies from a missing directory: %v; want errors.Is ErrPolicy and fs.ErrNotExist", err)
	}
}

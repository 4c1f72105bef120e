package adapter_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/hashicorp/go-plugin"

	"github.com/gatelog/gatelog/plugins/adapter"
	"github.com/gatelog/gatelog/record/decision"
)

// echo is a minimal adapter for exercising the wire.
type echo struct{}

func (echo) Info(context.Context) (adapter.Info, error) {
	return adapter.Info{Name: "echo", Version: "1", Kinds: []string{"text"},
		Unavailable: &adapter.Response{Status: 503, Headers: http.Header{"Retry-After": {"5"}}, Body: []byte("down")}}, nil
}

func (echo) Configure(_ context.Context, s map[string]string) error {
	if s["mode"] != "" && s["mode"] != "strict" {
		return fmt.Errorf("%w: mode %q: want strict", adapter.ErrBadSettings, s["mode"])
	}
	return nil
}

func (echo) Translate(_ context.Context, in adapter.Native) (decision.Request, error) {
	switch string(in.Body) {
	case "":
		return decision.Request{}, adapter.BadPayload("empty body")
	case "no-action":
		return decision.Request{Subject: decision.Subject{ID: "a"}}, nil
	case "boom":
		return decision.Request{}, errors.New("boom")
	}
	return decision.Request{Subject: decision.Subject{ID: string(in.Body)}, Action: in.Headers.Get("X-Action"),
		Resource: decision.Resource{Attributes: map[string]any{"n": 1.5}}}, nil
}

func (echo) Render(_ context.Context, in adapter.Native, out adapter.Outcome) (adapter.Response, error) {
	body := fmt.Sprintf("allowed=%v reasons=%s", out.Allowed(), strings.Join(out.Reasons(), ","))
	if out.Failure != nil {
		body += " kind=" + out.Failure.Kind.String()
	}
	return adapter.Response{Status: 200, Headers: http.Header{"X-Body": {string(in.Body)}}, Body: []byte(body)}, nil
}

func grpcClient(t *testing.T) *adapter.Client {
	t.Helper()
	client, _ := plugin.TestPluginGRPCConn(t, false, adapter.PluginSet(echo{}))
	t.Cleanup(func() { client.Close() })
	raw, err := client.Dispense(adapter.PluginName)
	if err != nil {
		t.Fatal(err)
	}
	return raw.(*adapter.Client)
}

func TestWireRoundTrip(t *testing.T) {
	c := grpcClient(t)
	ctx := t.Context()
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	info, err := c.Info(ctx)
	if err != nil || info.Name != "echo" || info.Unavailable == nil || info.Unavailable.Status != 503 || info.Unavailable.Headers.Get("Retry-After") != "5" {
		t.Fatalf("Info = %+v, %v", info, err)
	}
	if err := c.Configure(ctx, map[string]string{"mode": "loose"}); !errors.Is(err, adapter.ErrBadSettings) || strings.Count(err.Error(), "bad adapter settings") != 1 {
		t.Errorf("Configure = %v, want one ErrBadSettings", err)
	}
	req, err := c.Translate(ctx, adapter.Native{Body: []byte("alice"), Headers: http.Header{"X-Action": {"deploy"}}})
	if err != nil || req.Subject.ID != "alice" || req.Action != "deploy" || req.Resource.Attributes["n"] != 1.5 {
		t.Errorf("Translate = %+v, %v", req, err)
	}
	_, err = c.Translate(ctx, adapter.Native{})
	if !errors.Is(err, adapter.ErrBadPayload) || !errors.Is(err, decision.ErrBadRequest) || !strings.HasSuffix(err.Error(), ": empty body") || strings.Count(err.Error(), "payload rejected") != 1 {
		t.Errorf("Translate(empty) = %v", err)
	}
	if _, err := c.Translate(ctx, adapter.Native{Body: []byte("no-action")}); !errors.Is(err, adapter.ErrInvalidRequest) {
		t.Errorf("Translate(no-action) = %v, want ErrInvalidRequest", err)
	}
	if _, err := c.Translate(ctx, adapter.Native{Body: []byte("boom")}); err == nil || errors.Is(err, adapter.ErrBadPayload) {
		t.Errorf("Translate(boom) = %v, want an internal error", err)
	}
	resp, err := c.Render(ctx, adapter.Native{Body: []byte("p")}, adapter.Outcome{Receipt: &decision.Receipt{Allow: true, Reasons: []string{"ok"}}})
	if err != nil || string(resp.Body) != "allowed=true reasons=ok" || resp.Headers.Get("X-Body") != "p" {
		t.Errorf("Render(allow) = %+v, %v", resp, err)
	}
	resp, err = c.Render(ctx, adapter.Native{}, adapter.Outcome{Failure: &adapter.Failure{Kind: adapter.Unauthenticated, Message: "expired"}})
	if err != nil || string(resp.Body) != "allowed=false reasons=expired kind=unauthenticated" {
		t.Errorf("Render(failure) = %q, %v", resp.Body, err)
	}
	if _, err := c.Render(ctx, adapter.Native{}, adapter.Outcome{}); err == nil {
		t.Error("Render with neither receipt nor failure: no error")
	}
}

func TestValidateRequest(t *testing.T) {
	ok := decision.Request{Action: "deploy", Subject: decision.Subject{ID: "a"}}
	for _, tc := range []struct {
		mutate func(*decision.Request)
		want   string
	}{
		{func(*decision.Request) {}, ""},
		{func(r *decision.Request) { r.Action = " " }, `"action" is required`},
		{func(r *decision.Request) { r.Subject.ID = "" }, `"subject.id" is required`},
		{func(r *decision.Request) { r.Subject.Verified = true }, `"subject.verified" is set by the daemon only`},
		{func(r *decision.Request) { r.Subject.AssertedBy = "x" }, `"subject.asserted_by"`},
		{func(r *decision.Request) { r.Context.Time = "yesterday" }, `"context.time"`},
	} {
		r := ok
		tc.mutate(&r)
		err := adapter.ValidateRequest(r)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("ValidateRequest(%+v) = %v", r, err)
		case tc.want != "" && (!errors.Is(err, adapter.ErrInvalidRequest) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("ValidateRequest(%+v) = %v, want ErrInvalidRequest containing %s", r, err, tc.want)
		}
	}
}

func TestFailureOf(t *testing.T) {
	for _, tc := range []struct {
		err  error
		kind adapter.FailureKind
		msg  string
	}{
		{&adapter.Failure{Kind: adapter.Unauthenticated, Message: "token expired"}, adapter.Unauthenticated, "token expired"},
		{fmt.Errorf("identity: %w", &adapter.Failure{Kind: adapter.Unavailable, Message: "x"}), adapter.Unavailable, "x"},
		{fmt.Errorf("%w: field \"action\" is required", decision.ErrBadRequest), adapter.BadRequest, `bad request: field "action" is required`},
		{context.DeadlineExceeded, adapter.Unavailable, "gatelog did not answer in time"},
		{errors.New("dial tcp 10.0.0.5:3306: refused"), adapter.Internal, "gatelog could not decide"},
		{nil, adapter.Internal, "gatelog could not decide"},
	} {
		f := adapter.FailureOf(tc.err)
		if f.Kind != tc.kind || f.Message != tc.msg {
			t.Errorf("FailureOf(%v) = %v, want %v %q", tc.err, f, tc.kind, tc.msg)
		}
	}
}

// The daemon returns a *Failure from anywhere on the request path to choose
// what the CI system is told; other errors are not shown verbatim.
func ExampleFailureOf() {
	err := fmt.Errorf("authenticate: %w", &adapter.Failure{Kind: adapter.Unauthenticated, Message: "the OIDC token has expired"})
	f := adapter.FailureOf(err)
	fmt.Println(f.Kind, f.Kind.HTTPStatus(), f.Message)

	f = adapter.FailureOf(errors.New("append decision: disk full"))
	fmt.Println(f.Kind, f.Kind.HTTPStatus(), f.Message)
	// Output:
	// unauthenticated 401 the OIDC token has expired
	// internal 500 gatelog could not decide
}

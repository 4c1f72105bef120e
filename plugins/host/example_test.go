package host_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"

	"github.com/gatelog/gatelog/plugins/host"
	"github.com/gatelog/gatelog/record/decision"
)

// How the daemon serves POST /v1/adapters/{name}: translate, decide, render,
// and fall back to the native 503 when the adapter cannot answer.
func ExampleHost() {
	h, err := host.New([]host.Config{
		{Name: "tekton", Builtin: "tekton", Settings: map[string]string{"namespace_environments": "payments=production"}},
		{Name: "acme-ci", Command: "/usr/libexec/gatelog/acme-ci-adapter", SHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
	}, host.Options{Logger: slog.Default()})
	if err != nil {
		panic(err)
	}
	defer h.Close()
	if err := h.Start(context.Background()); err != nil {
		slog.Warn("some adapters did not start; their endpoints fail closed", "error", err)
	}

	decide := func(ctx context.Context, req decision.Request) (*decision.Receipt, error) {
		// identity (replaces req.Subject), engine, receipt, translog.
		return &decision.Receipt{Allow: false, Reasons: []string{"example"}}, nil
	}
	handler := func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		body, _ := io.ReadAll(http.MaxBytesReader(w, r.Body, 3<<20))
		req, err := h.Translate(r.Context(), name, body, r.Header)
		var receipt *decision.Receipt
		if err == nil {
			receipt, err = decide(r.Context(), req)
		}
		resp, rerr := h.Render(r.Context(), name, body, r.Header, receipt, err)
		if rerr != nil {
			resp = h.Fallback(name, rerr)
		}
		for k, v := range resp.Headers {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.Status)
		w.Write(resp.Body)
	}
	http.HandleFunc("POST /v1/adapters/{name}", handler)
}

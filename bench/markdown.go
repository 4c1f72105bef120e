package bench

import (
	"fmt"
	"io"
	"strings"
)

// WriteMarkdown writes every section of a results file as the Markdown
// tables bench/README.md quotes (docs/performance.md quotes a summary), so
// those tables are regenerated from results.json rather than copied by hand
// (`gatelog-bench report`).
func WriteMarkdown(w io.Writer, r *Report) {
	m := r.Machine
	fmt.Fprintf(w, "Machine: %d cores (%s), %d MB, %s, %s; %.0f %% of the CPU busy with other work just before the run; written %s.\n",
		m.Cores, m.CPU, m.MemoryMB, m.OS, m.Go, 100*m.BusyBefore, r.Generated)
	if m.Note != "" {
		fmt.Fprintf(w, "\n**Note:** %s.\n", m.Note)
	}
	if c := r.Compare; c != nil {
		fmt.Fprintf(w, "\n**gatelog vs OPA** — %d runs of %s after %s warm-up, medians; requests: %s\n\n",
			c.Runs, c.Duration, c.Warmup, strings.Join(c.Requests, ", "))
		fmt.Fprintln(w, "| clients | opa req/s | p50 ms | p99 ms | p99.9 ms | CPU µs/req | gatelog req/s | p50 ms | p99 ms | p99.9 ms | CPU µs/req | ratio |")
		fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
		errs := 0
		for _, l := range c.Levels {
			fmt.Fprintf(w, "| %d | %.0f | %.2f | %.2f | %.2f | %.0f | %.0f | %.2f | %.2f | %.2f | %.0f | **%.2f** |\n",
				l.Clients, l.OPA.RPS, l.OPA.P50Ms, l.OPA.P99Ms, l.OPA.P999Ms, l.OPA.CPUUsPerReq,
				l.Gatelog.RPS, l.Gatelog.P50Ms, l.Gatelog.P99Ms, l.Gatelog.P999Ms, l.Gatelog.CPUUsPerReq, l.Ratio)
			errs += l.OPA.Errors + l.Gatelog.Errors
		}
		fmt.Fprintln(w)
		if h := c.HalfPeak; h != nil {
			fmt.Fprintf(w, "gatelog paced at half its peak (%.0f of %.0f req/s, %d clients, open loop): p50 %.1f ms, **p99 %.1f ms**, p99.9 %.1f ms, %.0f µs CPU per decision. ",
				h.PeakRPS/2, h.PeakRPS, h.Clients, h.P50Ms, h.P99Ms, h.P999Ms, h.CPUUsPerReq)
			errs += h.Errors
			if o := h.OPA; o != nil {
				fmt.Fprintf(w, "OPA paced at the same rate: p50 %.1f ms, p99 %.1f ms, p99.9 %.1f ms. ", o.P50Ms, o.P99Ms, o.P999Ms)
				errs += o.Errors
			}
		}
		fmt.Fprintf(w, "Errors (non-200 answers) at all levels: %d.\n", errs)
	}
	if p := r.Profile; p != nil {
		fmt.Fprintf(w, "\n**Where gatelog's CPU goes** at %d clients: %.0f req/s during the profile, %.1f CPU-seconds sampled in %.0f s, **%.0f µs of CPU per decision**. Shares overlap where one part calls another.\n\n",
			p.Clients, p.RPS, p.CPUSeconds, p.Seconds, p.CPUUsPerReq["total"])
		fmt.Fprintln(w, "| part | share of CPU | µs per decision |")
		fmt.Fprintln(w, "|---|---:|---:|")
		for _, part := range ProfileParts {
			fmt.Fprintf(w, "| %s | %.1f %% | %.0f |\n", part.Part, p.Shares[part.Part], p.CPUUsPerReq[part.Part])
		}
	}
	if pc := r.Policy; pc != nil {
		fmt.Fprintf(w, "\n**The policy library alone** — each request decided in process on the daemon's evaluation path (`gatelog policy bench`, %s per request): **%.0f µs and %.0f allocations per decision** on average", pc.Duration, pc.MeanUs, pc.MeanAllocs)
		if p := r.Profile; p != nil {
			fmt.Fprintf(w, ", next to the %.0f µs of CPU per decision the daemon's profile gives policy evaluation", p.CPUUsPerReq["policy evaluation (OPA topdown)"])
		}
		fmt.Fprint(w, ".")
		if pc.Note != "" {
			fmt.Fprintf(w, " This measurement was %s.", pc.Note)
		}
		fmt.Fprint(w, "\n\n| request | allow | µs per decision | allocs per decision | kB per decision |\n|---|---|---:|---:|---:|\n")
		for _, q := range pc.Requests {
			fmt.Fprintf(w, "| %s | %v | %.0f | %.0f | %.1f |\n", q.Request, q.Allow, q.Us, q.Allocs, q.KB)
		}
	}
	if len(r.Append) > 0 {
		batching := "with the same batching (not recorded)"
		if a := r.Append[0]; a.BatchMaxSize > 0 {
			batching = fmt.Sprintf("both batch %d entries / %s", a.BatchMaxSize, a.BatchMaxAge)
		}
		fmt.Fprintf(w, "\n**Append path alone** — %s per side; %s and await the durable index\n\n", r.Append[0].Duration, batching)
		fmt.Fprintln(w, "| appenders | raw Tessera /s | p50 ms | p99 ms | translog.Append /s | p50 ms | p99 ms | overhead (Tessera/translog) |")
		fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|---:|")
		for _, a := range r.Append {
			fmt.Fprintf(w, "| %d | %.0f | %.2f | %.2f | %.0f | %.2f | %.2f | %.2f× |\n", a.Clients,
				a.Tessera.PerSec, a.Tessera.P50Ms, a.Tessera.P99Ms, a.Translog.PerSec, a.Translog.P50Ms, a.Translog.P99Ms, a.Overhead)
		}
		if d := r.Append[0].TesseraDefaults; d.Appends > 0 {
			fmt.Fprintln(w, "\nRaw Tessera at its own default batching (256 entries / 250 ms):")
			fmt.Fprintln(w, "\n| appenders | raw Tessera, defaults /s | p50 ms | p99 ms |")
			fmt.Fprintln(w, "|---:|---:|---:|---:|")
			for _, a := range r.Append {
				fmt.Fprintf(w, "| %d | %.0f | %.2f | %.2f |\n", a.Clients, a.TesseraDefaults.PerSec, a.TesseraDefaults.P50Ms, a.TesseraDefaults.P99Ms)
			}
		}
	}
	if so := r.ScaleOut; so != nil {
		fmt.Fprintf(w, "\n**Scale-out** — the log in MariaDB (Tessera's MySQL driver), %d clients in total, %s: one daemon %.0f req/s (p50 %.2f ms, p99 %.2f ms); two daemons sharing the log %.0f req/s (%.0f + %.0f; p50 %.2f ms, p99 %.2f ms).\n",
			so.Clients, so.Duration, so.One.RPS, so.One.P50Ms, so.One.P99Ms, so.Two.RPS, so.Each[0].RPS, so.Each[1].RPS, so.Two.P50Ms, so.Two.P99Ms)
	}
	if s := r.Startup; s != nil {
		fmt.Fprintf(w, "\n**Start-up** (medians of 5): compiling the bundled policies %.0f ms, hot reload (compile + swap) %.0f ms; a fresh daemon answers `/readyz` after %.0f ms and its first decision after %.0f ms.\n",
			s.CompileMs, s.ReloadMs, s.FreshReadyMs, s.FreshFirstDecisionMs)
	}
	if g := r.Growth; g != nil && len(g.Points) > 0 {
		fmt.Fprintf(w, "\n**Growth** — the log filled by %d in-process appenders between points, then a daemon started on it and driven by %d clients\n\n", g.Fill, g.Clients)
		fmt.Fprintln(w, "| entries | fill/s | ready ms | 1st decision ms | index catch-up s | proof ms | verify µs | search p50 ms | search p99 ms | decide/s | RSS MB | anon MB | RSS at rest MB | disk B/entry | of which partial tiles | files/entry |")
		fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
		for _, p := range g.Points {
			fmt.Fprintf(w, "| %d | %.0f | %.0f | %.0f | %.1f | %.2f | %.0f | %.2f | %.2f | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.4f |\n",
				p.Entries, p.FillPerSec, p.ReadyMs, p.FirstDecisionMs, p.IndexCatchUpS, p.ProofMs, p.VerifyUs,
				p.SearchP50Ms, p.SearchP99Ms, p.AppendPerSec, p.RSSMB, p.AnonMB, p.RestRSSMB, p.DiskBytesPerEntry, p.PartialBytesPerEntry, p.FilesPerEntry)
		}
	}
}

// Markers around the generated tables in a Markdown file.
const (
	BeginResults = "<!-- results: generated by gatelog-bench report from results.json; do not edit -->"
	EndResults   = "<!-- end of results -->"
)

// UpdateMarkdown replaces the text between BeginResults and EndResults in
// doc with the tables for r.
func UpdateMarkdown(doc []byte, r *Report) ([]byte, error) {
	s := string(doc)
	i := strings.Index(s, BeginResults)
	j := strings.Index(s, EndResults)
	if i < 0 || j < i {
		return nil, fmt.Errorf("no %q ... %q block", BeginResults, EndResults)
	}
	var b strings.Builder
	b.WriteString(s[:i+len(BeginResults)])
	b.WriteString("\n\n")
	WriteMarkdown(&b, r)
	b.WriteString("\n")
	b.WriteString(s[j:])
	return []byte(b.String()), nil
}

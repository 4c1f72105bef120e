// Package bench measures gatelog's decide path side by side with OPA's own
// server: a closed-loop HTTP load generator (Run) drives a Target with N
// clients for a fixed time after a warm-up and reports throughput and latency.
//
// The harness in bench/cmd/gatelog-bench starts both servers (StartGatelog,
// StartOPA), runs every concurrency level, and writes results.json (Report).
package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Target is one HTTP endpoint under load: every request POSTs one of
// Bodies (round robin, each client starting at a different one) to URL.
type Target struct {
	Name   string
	URL    string
	Header http.Header
	Bodies [][]byte
}

// Options shape a load run.
type Options struct {
	// Clients is the number of concurrent closed-loop clients.
	Clients int
	// Warmup is run first; its requests are not counted.
	Warmup time.Duration
	// Duration is the measured window after the warm-up.
	Duration time.Duration
	// Rate, when positive, paces the clients to this many requests per
	// second in total (an open-loop schedule): latency then counts from
	// when a request was due, so a stalled server shows as queueing
	// instead of silently lowering the offered load.
	Rate float64
	// CPU, when set, reads the server's CPU time; it is sampled at both
	// ends of the measured window to report CPU per request.
	CPU func() (time.Duration, error)
}

// Stats is the outcome of one load run.
type Stats struct {
	Clients  int     `json:"clients"`
	Requests int     `json:"requests"`
	Errors   int     `json:"errors"`
	Seconds  float64 `json:"seconds"`
	RPS      float64 `json:"rps"`
	P50Ms    float64 `json:"p50_ms"`
	P99Ms    float64 `json:"p99_ms"`
	P999Ms   float64 `json:"p999_ms"`
	MaxMs    float64 `json:"max_ms"`
	// OfferedRPS is Options.Rate for paced runs.
	OfferedRPS float64 `json:"offered_rps,omitempty"`
	// CPUUsPerReq is the server's CPU time per measured request, in µs.
	CPUUsPerReq float64 `json:"cpu_us_per_req,omitempty"`
	// FirstError is the first failure seen, for the report.
	FirstError string `json:"first_error,omitempty"`
}

// Run drives t with opts.Clients closed-loop clients: each sends a request,
// waits for the whole reply, and sends the next. Only requests that start
// after the warm-up and finish inside the measured window count. A reply
// other than 200 is an error (counted, not retried). Run returns early
// with ctx's error if ctx ends.
func Run(ctx context.Context, t Target, opts Options) (Stats, error) {
	if opts.Clients < 1 || opts.Duration <= 0 || len(t.Bodies) == 0 {
		return Stats{}, errors.New("bench: need at least one client, a positive duration and a request body")
	}
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        opts.Clients,
		MaxIdleConnsPerHost: opts.Clients,
		MaxConnsPerHost:     opts.Clients,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 60 * time.Second}

	start := time.Now()
	measureFrom := start.Add(opts.Warmup)
	measureTo := measureFrom.Add(opts.Duration)
	rctx, cancel := context.WithDeadline(ctx, measureTo)
	defer cancel()

	type clientResult struct {
		lat      []time.Duration
		errors   int
		firstErr error
	}
	results := make([]clientResult, opts.Clients)
	var cpuFrom, cpuTo time.Duration
	var cpuErr error
	var wg sync.WaitGroup
	if opts.CPU != nil {
		wg.Go(func() {
			if !sleepUntil(rctx, measureFrom) {
				return
			}
			cpuFrom, cpuErr = opts.CPU()
			<-rctx.Done()
			if cpuErr == nil {
				cpuTo, cpuErr = opts.CPU()
			}
		})
	}
	var interval time.Duration
	if opts.Rate > 0 {
		interval = time.Duration(float64(time.Second) / opts.Rate)
	}
	for c := range opts.Clients {
		wg.Go(func() {
			r := &results[c]
			var buf bytes.Buffer
			for i := c; ; i++ {
				body := t.Bodies[i%len(t.Bodies)]
				sent := time.Now()
				if interval > 0 {
					// The k-th request of client c is due at
					// start + (k·clients + c)·interval.
					k := i - c
					due := start.Add(time.Duration(k*opts.Clients+c) * interval)
					if !sleepUntil(rctx, due) {
						return
					}
					sent = due
				}
				err := post(rctx, hc, t, body, &buf)
				done := time.Now()
				if rctx.Err() != nil {
					return
				}
				if sent.Before(measureFrom) || done.After(measureTo) {
					continue
				}
				if err != nil {
					r.errors++
					if r.firstErr == nil {
						r.firstErr = err
					}
					continue
				}
				r.lat = append(r.lat, done.Sub(sent))
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return Stats{}, err
	}
	var all []time.Duration
	s := Stats{Clients: opts.Clients, Seconds: opts.Duration.Seconds()}
	for _, r := range results {
		all = append(all, r.lat...)
		s.Errors += r.errors
		if r.firstErr != nil && s.FirstError == "" {
			s.FirstError = r.firstErr.Error()
		}
	}
	s.Requests = len(all)
	s.RPS = float64(s.Requests) / s.Seconds
	s.OfferedRPS = opts.Rate
	if opts.CPU != nil {
		if cpuErr != nil {
			return Stats{}, fmt.Errorf("reading server CPU time: %w", cpuErr)
		}
		if s.Requests > 0 {
			s.CPUUsPerReq = float64(cpuTo-cpuFrom) / float64(time.Microsecond) / float64(s.Requests)
		}
	}
	slices.Sort(all)
	s.P50Ms = ms(percentile(all, 0.50))
	s.P99Ms = ms(percentile(all, 0.99))
	s.P999Ms = ms(percentile(all, 0.999))
	if len(all) > 0 {
		s.MaxMs = ms(all[len(all)-1])
	}
	return s, nil
}

func post(ctx context.Context, hc *http.Client, t Target, body []byte, buf *bytes.Buffer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	for k, v := range t.Header {
		req.Header[k] = v
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	buf.Reset()
	if _, err := buf.ReadFrom(io.LimitReader(resp.Body, 16<<20)); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		msg := buf.Bytes()
		if len(msg) > 200 {
			msg = msg[:200]
		}
		return fmt.Errorf("%s: HTTP %d: %s", t.Name, resp.StatusCode, bytes.TrimSpace(msg))
	}
	return nil
}

// sleepUntil waits until t; false if ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// percentile is the nearest-rank percentile of sorted samples.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.999999) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

package bench_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/gatelog/gatelog/bench"
)

// Run drives any HTTP endpoint: here a stand-in decision server, with four
// closed-loop clients for a quarter of a second after a short warm-up.
func ExampleRun() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"result":{"allow":true}}`)
	}))
	defer srv.Close()
	st, err := bench.Run(context.Background(), bench.Target{
		Name:   "stand-in",
		URL:    srv.URL,
		Bodies: [][]byte{[]byte(`{"input":{"action":"deploy"}}`)},
	}, bench.Options{Clients: 4, Warmup: 50 * time.Millisecond, Duration: 250 * time.Millisecond})
	if err != nil {
		panic(err)
	}
	fmt.Println("answered:", st.Requests > 0, "errors:", st.Errors, "p50 <= p99:", st.P50Ms <= st.P99Ms)
	// Output: answered: true errors: 0 p50 <= p99: true
}

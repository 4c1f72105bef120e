package daemon

import (
	"errors"
	"fmt"
	"io"
	"net/http"

	"golang.org/x/sync/semaphore"

	"github.com/gatelog/gatelog/plugins/webhook"
)

// maxBodiesInFlight bounds the request bytes all handlers together hold in
// memory while reading bodies, so many slow or large uploads cannot take
// the daemon's memory (and with it the gate: GitLab runs pipelines while
// gatelog is down). A body reserves its cap, or its Content-Length when
// that is smaller, before the first byte is read; when the budget is spent
// the request is refused at once with 503 instead of waiting.
const maxBodiesInFlight = 64 << 20

// errBodyTooLarge and errBusy are bodyBudget.read's refusals.
var (
	errBodyTooLarge = webhook.ErrBodyTooLarge
	errBusy         = errors.New("too many request bodies in flight")
)

// bodyBudget is the daemon's shared reservation of body bytes.
type bodyBudget struct{ sem *semaphore.Weighted }

func newBodyBudget() *bodyBudget { return &bodyBudget{sem: semaphore.NewWeighted(maxBodiesInFlight)} }

// read reads r's body, at most limit bytes, within the budget. The
// returned release gives the reservation back; call it when the body is no
// longer needed (the handler's end). A body over limit wraps
// errBodyTooLarge; an exhausted budget is errBusy.
func (b *bodyBudget) read(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, func(), error) {
	if r.ContentLength > limit {
		return nil, func() {}, fmt.Errorf("%w: Content-Length %d is over %d bytes", errBodyTooLarge, r.ContentLength, limit)
	}
	n := limit
	if r.ContentLength >= 0 {
		n = r.ContentLength
	}
	if !b.sem.TryAcquire(n) {
		return nil, func() {}, errBusy
	}
	release := func() { b.sem.Release(n) }
	if r.ContentLength >= 0 {
		// The server's body reader stops at Content-Length: read it into
		// one slice of that size instead of growing one from 512 bytes.
		body := make([]byte, r.ContentLength)
		if _, err := io.ReadFull(r.Body, body); err != nil {
			release()
			return nil, func() {}, fmt.Errorf("reading body: %w", err)
		}
		return body, release, nil
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, n))
	if err != nil {
		release()
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, func() {}, fmt.Errorf("%w: over %d bytes", errBodyTooLarge, limit)
		}
		return nil, func() {}, fmt.Errorf("reading body: %w", err)
	}
	return body, release, nil
}

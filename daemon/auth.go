package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"github.com/gatelog/gatelog/engine/identity"
	"github.com/gatelog/gatelog/internal/secretfile"
	"github.com/gatelog/gatelog/record/decision"
)

// ReplayCacheFile keeps used OIDC token IDs across restarts.
const ReplayCacheFile = "replay-cache"

// Default per-caller rate limit.
const (
	DefaultRateLimit = 50.0 // requests per second, on average
	DefaultRateBurst = 100
)

// authState is the daemon's door: who may come in, how often, and over TLS.
type authState struct {
	auth     *identity.Authenticator
	limiter  *identity.Limiter
	counters *identity.Counters
	tls      *tls.Config
}

// openIdentity builds the authenticator (OIDC issuers, mTLS clients, API
// keys, replay cache), the rate limiter and the TLS configuration.
func openIdentity(ctx context.Context, cfg Config, keys *identity.KeyStore) (*authState, error) {
	st := &authState{counters: &identity.Counters{}}
	var obs identity.Observer = st.counters
	if cfg.AuthObserver != nil {
		obs = identity.Observers{st.counters, cfg.AuthObserver}
	}
	a, err := identity.NewAuthenticator(ctx, identity.Options{
		Keys: keys, Config: cfg.Identity, ReplayCachePath: filepath.Join(cfg.DataDir, ReplayCacheFile),
		Observer: obs, Now: cfg.Now,
	})
	if err != nil {
		return nil, err
	}
	st.auth = a
	rate, burst := cfg.RateLimit, cfg.RateBurst
	if rate == 0 {
		rate = DefaultRateLimit
	}
	if burst == 0 {
		burst = DefaultRateBurst
	}
	if rate > 0 {
		st.limiter = identity.NewLimiter(rate, burst)
	}
	switch {
	case cfg.TLSCertFile != "" && cfg.TLSKeyFile != "":
		if err := secretfile.CheckOwnerOnly(cfg.TLSKeyFile); err != nil {
			a.Close()
			return nil, fmt.Errorf("TLS key: %w", err)
		}
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			a.Close()
			return nil, fmt.Errorf("TLS certificate %s / key %s: %w", cfg.TLSCertFile, cfg.TLSKeyFile, err)
		}
		st.tls = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
		if pool := a.ClientCAs(); pool != nil {
			// Ask for a certificate (naming the accepted CAs) but check the
			// chain per request in identity, so a bad certificate gets a 401
			// with a reason and public endpoints stay reachable without one.
			st.tls.ClientAuth = tls.RequestClientCert
			st.tls.ClientCAs = pool
		}
	case cfg.TLSCertFile != "" || cfg.TLSKeyFile != "":
		a.Close()
		return nil, errors.New("TLS needs both a certificate and a key file")
	case a.ClientCAs() != nil:
		a.Close()
		return nil, errors.New("mTLS client CAs are configured but the daemon has no TLS certificate and key")
	}
	return st, nil
}

// TLSConfig is the listener's TLS configuration, nil when serving plain HTTP.
func (s *Server) TLSConfig() *tls.Config {
	if s.door.tls == nil {
		return nil
	}
	return s.door.tls.Clone()
}

// AuthCounts returns how many authentications ended how, keyed
// "kind/outcome" (e.g. "oidc/replayed", "api_key/ok", "none/missing").
func (s *Server) AuthCounts() map[string]uint64 { return s.door.counters.Snapshot() }

func (s *Server) closeIdentity() error {
	return errors.Join(s.door.auth.Close(), s.keys.Flush())
}

// errRateLimited: the caller is over its rate limit.
var errRateLimited = errors.New("over its rate limit")

// credential checks the credential a request carries — a bearer token
// (API key or OIDC) or a client certificate — and returns the caller.
// Errors wrap identity.ErrUnauthenticated for a bad credential; any other
// error means it could not be checked (fail closed).
func (d *authState) credential(r *http.Request) (identity.Caller, error) {
	cred := identity.Credentials{Authorization: r.Header.Get("Authorization")}
	if r.TLS != nil {
		cred.Certificates = r.TLS.PeerCertificates
	}
	return d.auth.Authenticate(r.Context(), cred)
}

// admit applies the per-caller rate limit to a caller authenticated as
// kind (an API key, a token, a webhook's secret), counting a refusal.
// Every entry point admits its callers here, however it authenticated
// them.
func (d *authState) admit(id, kind string, now time.Time) error {
	if d.limiter != nil && !d.limiter.Allow(id, now) {
		d.counters.ObserveAuth(kind, "rate_limited")
		return fmt.Errorf("caller %s is %w", id, errRateLimited)
	}
	return nil
}

// authenticate identifies the caller from its bearer token or client
// certificate and applies the per-caller rate limit. On failure it writes
// 401 (bad credential), 429 (too many requests) or 503 (a credential could
// not be checked: fail closed) and returns false. Nothing is logged.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (identity.Caller, bool) {
	c, ok := s.identify(w, r)
	if !ok {
		return identity.Caller{}, false
	}
	if err := s.door.admit(c.ID, c.Kind, s.cfg.Now()); err != nil {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, "%v", err)
		return identity.Caller{}, false
	}
	return c, true
}

// authorize authenticates the caller (authenticate) and checks it holds
// perm, or one of the alternatives: a caller without one gets 403 naming
// perm. It is how every handler lets a caller in.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, perm string, alternatives ...string) (identity.Caller, bool) {
	c, ok := s.authenticate(w, r)
	if !ok {
		return c, false
	}
	if c.Has(perm) {
		return c, true
	}
	for _, p := range alternatives {
		if c.Has(p) {
			return c, true
		}
	}
	writeError(w, http.StatusForbidden, "caller %s lacks the %s permission", c.ID, perm)
	return c, false
}

// identify is authenticate without the rate limit, for reads that cost no
// more with a credential than without one (records from the log, which
// anyone may read as leaves at any rate).
func (s *Server) identify(w http.ResponseWriter, r *http.Request) (identity.Caller, bool) {
	c, err := s.door.credential(r)
	switch {
	case errors.Is(err, identity.ErrUnauthenticated):
		w.Header().Set("WWW-Authenticate", `Bearer realm="gatelog", error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, "%v", err)
		return identity.Caller{}, false
	case err != nil:
		s.logger.Warn("credential could not be checked; refusing", "err", err)
		writeError(w, http.StatusServiceUnavailable, "%v", err)
		return identity.Caller{}, false
	}
	return c, true
}

// bindSubject replaces whatever the request claims about identity with what
// the daemon verified (identity.Bind), and makes the daemon's clock the
// decision time.
func (s *Server) bindSubject(req *decision.Request, caller identity.Caller) error {
	now := s.cfg.Now()
	if err := identity.Bind(req, caller, now); err != nil {
		return err
	}
	// A time in the payload is kept, but only as unverified context.
	if req.Context.Time != "" {
		if req.Context.Unverified == nil {
			req.Context.Unverified = map[string]any{}
		}
		req.Context.Unverified["requested_time"] = req.Context.Time
	}
	req.Context.Time = now.UTC().Format(time.RFC3339)
	return nil
}

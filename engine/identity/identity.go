package identity

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/gatelog/gatelog/record/decision"
)

// Permissions a caller may hold.
const (
	PermDecide = "decide" // ask for decisions about itself
	PermVouch  = "vouch"  // assert a subject on someone else's behalf
	PermAdmin  = "admin"  // manage API keys and signing keys (holds every permission)
	PermRead   = "read"   // read receipts
)

var validPerms = []string{PermDecide, PermVouch, PermAdmin, PermRead}

// Caller kinds, recorded as decision.Caller.Kind.
const (
	KindAPIKey = "api_key"
	KindOIDC   = "oidc"
	KindMTLS   = "mtls"
)

// Sentinel errors callers branch on.
var (
	// ErrUnauthenticated means no valid credential was presented (401).
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrForbidden means the caller lacks a permission or asserts what its
	// credential contradicts (403).
	ErrForbidden = errors.New("forbidden")
	// ErrUnavailable means a credential could not be checked right now (an
	// issuer's keys are unreachable, the replay cache cannot be written);
	// the request is refused, never let through (503).
	ErrUnavailable = errors.New("identity check unavailable")
)

// Reasons an authentication fails, as counted by an Observer.
const (
	ReasonMissing        = "missing"
	ReasonMalformed      = "malformed"
	ReasonInvalid        = "invalid"
	ReasonRevoked        = "revoked"
	ReasonExpired        = "expired"
	ReasonNotYetValid    = "not_yet_valid"
	ReasonTooOld         = "too_old"
	ReasonReplayed       = "replayed"
	ReasonWrongAudience  = "wrong_audience"
	ReasonWrongIssuer    = "wrong_issuer"
	ReasonBadSignature   = "bad_signature"
	ReasonBadAlgorithm   = "bad_algorithm"
	ReasonBadCertificate = "bad_certificate"
)

// AuthError is a refused credential: the kind of credential, a short
// reason code (for counters) and a message for the caller. It never holds
// the credential itself.
type AuthError struct {
	Kind, Reason, Message string
}

func (e *AuthError) Error() string { return "unauthenticated: " + e.Message }

// Unwrap makes every AuthError an ErrUnauthenticated.
func (e *AuthError) Unwrap() error { return ErrUnauthenticated }

func authError(kind, reason, format string, args ...any) error {
	return &AuthError{Kind: kind, Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// Caller is an authenticated caller.
type Caller struct {
	decision.Caller
	Permissions []string
	// Created is when the credential was issued (for OIDC, auth_time when
	// the token has one, else iat); Expires when it lapses.
	Created time.Time
	Expires time.Time
	// Subject is who the caller is when it asks about itself; Bind fills
	// in Verified and the token age.
	Subject decision.Subject
	// Resource holds resource fields the credential proves (a CI job's
	// repository, ref and deployment environment); Bind enforces them.
	Resource ResourceClaims
}

// ResourceClaims are resource fields taken from a verified credential.
type ResourceClaims struct {
	Repository  string
	Ref         string
	Environment string
	// Name is the resource's name (a Jenkins job's full name).
	Name string
	// Attributes are resource.attributes the credential proves (a Jenkins
	// build number). Unlike the fields above, a request that says
	// otherwise is not refused: the credential's value replaces it and the
	// request's is kept as context.unverified["payload_attributes"], since
	// a build number is description, not scope.
	Attributes map[string]string
}

// Has reports whether the caller holds perm (admin holds all).
func (c Caller) Has(perm string) bool {
	return slices.Contains(c.Permissions, perm) || slices.Contains(c.Permissions, PermAdmin)
}

// Bind replaces whatever req claims about identity with what the daemon
// verified: the caller itself, or — for a caller with the vouch permission
// — the subject it names, recorded as asserted by the caller. Resource
// fields the caller's credential proves are filled in, and a request that
// contradicts them is refused, so a CI job's token cannot ask about
// another repository, ref or environment.
func Bind(req *decision.Request, c Caller, now time.Time) error {
	if req.Subject.ID != "" || len(req.Subject.Groups) > 0 {
		if !c.Has(PermVouch) {
			return fmt.Errorf("%w: caller %s may not vouch for a subject (field \"subject\"): it needs the vouch permission", ErrForbidden, c.ID)
		}
		if req.Subject.ID == "" {
			return fmt.Errorf("%w: field \"subject.id\" is required when vouching", decision.ErrBadRequest)
		}
		req.Subject.Verified = true
		req.Subject.AssertedBy = c.ID
	} else {
		sub := c.Subject
		sub.Verified = true
		sub.AssertedBy = ""
		if !c.Created.IsZero() {
			sub.TokenAgeS = max(0, int64(now.Sub(c.Created).Seconds()))
		}
		if !c.Expires.IsZero() {
			sub.CredentialExpiresAt = c.Expires.UTC().Format(time.RFC3339)
		}
		req.Subject = sub
	}
	for _, f := range []struct {
		name     string
		field    *string
		verified string
	}{
		{"repository", &req.Resource.Repository, c.Resource.Repository},
		{"ref", &req.Resource.Ref, c.Resource.Ref},
		{"environment", &req.Resource.Environment, c.Resource.Environment},
		{"name", &req.Resource.Name, c.Resource.Name},
	} {
		switch {
		case f.verified == "":
		case *f.field == "":
			*f.field = f.verified
		case *f.field != f.verified:
			return fmt.Errorf("%w: field \"resource.%s\" is %q but the caller's verified token says %q", ErrForbidden, f.name, *f.field, f.verified)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(c.Resource.Attributes)) {
		v := c.Resource.Attributes[k]
		if claimed, ok := req.Resource.Attributes[k]; ok && fmt.Sprint(claimed) != v {
			if req.Context.Unverified == nil {
				req.Context.Unverified = map[string]any{}
			}
			payload, _ := req.Context.Unverified["payload_attributes"].(map[string]any)
			if payload == nil {
				payload = map[string]any{}
				req.Context.Unverified["payload_attributes"] = payload
			}
			payload[k] = claimed
		}
		if req.Resource.Attributes == nil {
			req.Resource.Attributes = map[string]any{}
		}
		req.Resource.Attributes[k] = v
	}
	return nil
}

// Credentials is what a request presents: its Authorization header and the
// TLS client certificate chain (leaf first), if any.
type Credentials struct {
	Authorization string
	Certificates  []*x509.Certificate
}

// Observer is told the outcome of every authentication: kind is the
// credential kind (api_key, oidc, mtls, or "none"), outcome "ok" or a
// Reason. Metrics hook in here.
type Observer interface {
	ObserveAuth(kind, outcome string)
}

// Authenticator checks every kind of credential the daemon accepts.
type Authenticator struct {
	keys     *KeyStore
	oidc     *oidcVerifier
	mtls     *mtlsVerifier
	observer Observer
	now      func() time.Time
}

// Options configures an Authenticator. Keys is required.
type Options struct {
	Keys   *KeyStore
	Config Config
	// ReplayCachePath is where used OIDC token IDs are kept across
	// restarts; required when Config has OIDC issuers.
	ReplayCachePath string
	// ReplayCacheSize bounds the replay cache (default 100000 tokens).
	ReplayCacheSize int
	Observer        Observer
	Now             func() time.Time
}

// NewAuthenticator loads everything the checks need (JWKS files, CA
// certificates, the replay cache) so that authentication reads no files.
// ctx bounds the background fetching of remote OIDC keys.
func NewAuthenticator(ctx context.Context, o Options) (*Authenticator, error) {
	if o.Keys == nil {
		return nil, errors.New("identity: Options.Keys is required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	a := &Authenticator{keys: o.Keys, observer: o.Observer, now: o.Now}
	if len(o.Config.OIDC) > 0 {
		if o.ReplayCachePath == "" {
			return nil, errors.New("identity: OIDC issuers need a replay cache path")
		}
		rc, err := OpenReplayCache(o.ReplayCachePath, o.ReplayCacheSize, o.Now())
		if err != nil {
			return nil, err
		}
		v, err := newOIDCVerifier(ctx, o.Config.OIDC, rc, o.Now)
		if err != nil {
			rc.Close()
			return nil, err
		}
		a.oidc = v
	}
	if len(o.Config.MTLS.Clients) > 0 && !o.Config.MTLS.enabled() {
		return nil, errors.New("identity: mtls.clients need client CA files (mtls.client_ca_files or --client-ca)")
	}
	if o.Config.MTLS.enabled() {
		v, err := newMTLSVerifier(o.Config.MTLS, o.Now)
		if err != nil {
			a.Close()
			return nil, err
		}
		a.mtls = v
	}
	return a, nil
}

// ClientCAs is the pool client certificates must chain to, or nil when no
// mTLS clients are configured.
func (a *Authenticator) ClientCAs() *x509.CertPool {
	if a.mtls == nil {
		return nil
	}
	return a.mtls.roots
}

// Close releases the replay cache.
func (a *Authenticator) Close() error {
	if a.oidc != nil {
		return a.oidc.replay.Close()
	}
	return nil
}

// Authenticate identifies the caller. A bearer token (API key or OIDC JWT)
// wins over a client certificate, but a certificate that is presented must
// verify either way. Errors wrap ErrUnauthenticated or ErrUnavailable.
func (a *Authenticator) Authenticate(ctx context.Context, cred Credentials) (Caller, error) {
	c, kind, err := a.authenticate(ctx, cred)
	outcome := "ok"
	if err != nil {
		outcome = "error"
		var ae *AuthError
		switch {
		case errors.As(err, &ae):
			outcome = ae.Reason
		case errors.Is(err, ErrUnavailable):
			outcome = "unavailable"
		}
	}
	if a.observer != nil {
		a.observer.ObserveAuth(kind, outcome)
	}
	return c, err
}

func (a *Authenticator) authenticate(ctx context.Context, cred Credentials) (Caller, string, error) {
	now := a.now()
	var certCaller Caller
	if len(cred.Certificates) > 0 {
		if a.mtls == nil {
			return Caller{}, KindMTLS, authError(KindMTLS, ReasonBadCertificate, "client certificates are not accepted: no client CA is configured")
		}
		c, err := a.mtls.authenticate(cred.Certificates)
		if err != nil {
			return Caller{}, KindMTLS, err
		}
		certCaller = c
	}
	h := strings.TrimSpace(cred.Authorization)
	if h == "" {
		if len(cred.Certificates) > 0 {
			return certCaller, KindMTLS, nil
		}
		return Caller{}, "none", authError("none", ReasonMissing, "missing credentials: send Authorization: Bearer <API key or OIDC token>, or a client certificate")
	}
	scheme, token, ok := strings.Cut(h, " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return Caller{}, "none", authError("none", ReasonMalformed, "missing credentials: send Authorization: Bearer <API key or OIDC token>")
	}
	switch {
	case strings.HasPrefix(token, tokenPrefix):
		c, err := a.keys.Authenticate(token, now)
		return c, KindAPIKey, err
	case strings.Count(token, ".") == 2:
		if a.oidc == nil {
			return Caller{}, KindOIDC, authError(KindOIDC, ReasonWrongIssuer, "OIDC tokens are not accepted: no trusted issuer is configured")
		}
		c, err := a.oidc.authenticate(ctx, token, now)
		return c, KindOIDC, err
	default:
		return Caller{}, "none", authError("none", ReasonMalformed, "not a gatelog API key (glk_…) or a JWT")
	}
}

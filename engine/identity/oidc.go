package identity

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/gatelog/gatelog/record/decision"
)

// discoveryRetry is how long a failed OIDC discovery is remembered before
// it is tried again; meanwhile that issuer's tokens are refused with 503.
const discoveryRetry = 5 * time.Second

// oidcVerifier checks JWTs from the configured issuers with go-oidc.
type oidcVerifier struct {
	issuers map[string]*trustedIssuer
	algs    []jose.SignatureAlgorithm
	replay  *ReplayCache
}

type trustedIssuer struct {
	cfg    IssuerConfig
	client *http.Client

	mu       sync.Mutex
	verifier *oidc.IDTokenVerifier
	lastErr  error
	lastTry  time.Time
}

func newOIDCVerifier(ctx context.Context, cfgs []IssuerConfig, replay *ReplayCache, now func() time.Time) (*oidcVerifier, error) {
	v := &oidcVerifier{issuers: map[string]*trustedIssuer{}, replay: replay}
	client := &http.Client{Timeout: 10 * time.Second}
	for _, cfg := range cfgs {
		if _, dup := v.issuers[cfg.Issuer]; dup {
			return nil, fmt.Errorf("identity: issuer %s is configured twice", cfg.Issuer)
		}
		ti := &trustedIssuer{cfg: cfg, client: client}
		occ := ti.oidcConfig()
		switch {
		case cfg.JWKSFile != "":
			keys, err := loadJWKS(cfg.JWKSFile)
			if err != nil {
				return nil, fmt.Errorf("identity: issuer %s: %w", cfg.Name, err)
			}
			ti.verifier = oidc.NewVerifier(cfg.Issuer, &oidc.StaticKeySet{PublicKeys: keys}, occ)
		case cfg.JWKSURL != "":
			ti.verifier = oidc.NewVerifier(cfg.Issuer, oidc.NewRemoteKeySet(oidc.ClientContext(context.WithoutCancel(ctx), client), cfg.JWKSURL), occ)
		}
		v.issuers[cfg.Issuer] = ti
		for _, a := range cfg.Algorithms {
			if !slices.Contains(v.algs, jose.SignatureAlgorithm(a)) {
				v.algs = append(v.algs, jose.SignatureAlgorithm(a))
			}
		}
	}
	return v, nil
}

// oidcConfig leaves expiry and audience to authenticate, which checks them
// with the configured skew and reports precise reasons; go-oidc checks
// the signature, the algorithm and the issuer.
func (ti *trustedIssuer) oidcConfig() *oidc.Config {
	return &oidc.Config{SupportedSigningAlgs: ti.cfg.Algorithms, SkipClientIDCheck: true, SkipExpiryCheck: true}
}

// loadJWKS reads a JSON Web Key Set of public keys.
func loadJWKS(path string) ([]crypto.PublicKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("jwks_file: %w", err)
	}
	keys, err := ParseJWKS(raw)
	if err != nil {
		return nil, fmt.Errorf("jwks_file %s: %w", path, err)
	}
	return keys, nil
}

// ParseJWKS decodes a JSON Web Key Set (RFC 7517) holding only public
// RSA, ECDSA or Ed25519 keys.
func ParseJWKS(raw []byte) ([]crypto.PublicKey, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("not a JSON Web Key Set: %v", err)
	}
	if len(set.Keys) == 0 {
		return nil, errors.New("the key set has no keys")
	}
	out := make([]crypto.PublicKey, 0, len(set.Keys))
	for i, k := range set.Keys {
		if !k.Valid() || !k.IsPublic() {
			return nil, fmt.Errorf("key %d (kid %q) is not a valid public key", i, k.KeyID)
		}
		if _, ok := k.Key.([]byte); ok {
			return nil, fmt.Errorf("key %d (kid %q) is symmetric; only public keys are accepted", i, k.KeyID)
		}
		out = append(out, k.Key)
	}
	return out, nil
}

// verifierFor returns the issuer's verifier, running OIDC discovery the
// first time (and again after a failure, at most every discoveryRetry).
func (ti *trustedIssuer) verifierFor(ctx context.Context, now time.Time) (*oidc.IDTokenVerifier, error) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	if ti.verifier != nil {
		return ti.verifier, nil
	}
	if ti.lastErr != nil && now.Sub(ti.lastTry) < discoveryRetry {
		return nil, ti.lastErr
	}
	dctx, cancel := context.WithTimeout(oidc.ClientContext(ctx, ti.client), ti.client.Timeout)
	defer cancel()
	p, err := oidc.NewProvider(dctx, ti.cfg.Issuer)
	ti.lastTry = now
	if err != nil {
		ti.lastErr = fmt.Errorf("%w: OIDC discovery for issuer %s failed: %w", ErrUnavailable, ti.cfg.Name, err)
		return nil, ti.lastErr
	}
	ti.verifier, ti.lastErr = p.Verifier(ti.oidcConfig()), nil
	return ti.verifier, nil
}

// tokenClaims are the registered claims every token is checked on.
type tokenClaims struct {
	JTI       string          `json:"jti"`
	NotBefore *numericDate    `json:"nbf"`
	AuthTime  *numericDate    `json:"auth_time"`
	AMR       []string        `json:"amr"`
	ACR       string          `json:"acr"`
	Audience  json.RawMessage `json:"aud"`
}

// numericDate is a JWT NumericDate (seconds, possibly fractional).
type numericDate float64

func (n numericDate) time() time.Time {
	sec, frac := math.Modf(float64(n))
	return time.Unix(int64(sec), int64(frac*1e9))
}

func (v *oidcVerifier) authenticate(ctx context.Context, raw string, now time.Time) (Caller, error) {
	tok, err := jwt.ParseSigned(raw, v.algs)
	if err != nil {
		if strings.Contains(err.Error(), "unexpected signature algorithm") {
			return Caller{}, authError(KindOIDC, ReasonBadAlgorithm, "token algorithm is not allowed (want one of %v): %v", v.algs, err)
		}
		return Caller{}, authError(KindOIDC, ReasonMalformed, "malformed token: %v", err)
	}
	var unverified struct {
		Issuer string `json:"iss"`
	}
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return Caller{}, authError(KindOIDC, ReasonMalformed, "malformed token claims: %v", err)
	}
	ti, ok := v.issuers[unverified.Issuer]
	if !ok {
		return Caller{}, authError(KindOIDC, ReasonWrongIssuer, "token issuer %q is not trusted", unverified.Issuer)
	}
	verifier, err := ti.verifierFor(ctx, now)
	if err != nil {
		return Caller{}, err
	}
	idt, err := verifier.Verify(ctx, raw)
	if err != nil {
		reason := ReasonBadSignature
		if strings.Contains(err.Error(), "malformed") {
			reason = ReasonMalformed
		}
		return Caller{}, authError(KindOIDC, reason, "token from issuer %s does not verify: %v", ti.cfg.Name, err)
	}
	cfg := ti.cfg
	if !slices.Contains(idt.Audience, cfg.Audience) {
		return Caller{}, authError(KindOIDC, ReasonWrongAudience, "token audience %q does not include %q", idt.Audience, cfg.Audience)
	}
	var tc tokenClaims
	if err := idt.Claims(&tc); err != nil {
		return Caller{}, authError(KindOIDC, ReasonMalformed, "token claims: %v", err)
	}
	skew := time.Duration(cfg.ClockSkew)
	switch {
	case idt.Expiry.IsZero():
		return Caller{}, authError(KindOIDC, ReasonMalformed, "token has no exp claim")
	case now.After(idt.Expiry.Add(skew)):
		return Caller{}, authError(KindOIDC, ReasonExpired, "token expired at %s", idt.Expiry.UTC().Format(time.RFC3339))
	case tc.NotBefore != nil && tc.NotBefore.time().After(now.Add(skew)):
		return Caller{}, authError(KindOIDC, ReasonNotYetValid, "token is not valid before %s", tc.NotBefore.time().UTC().Format(time.RFC3339))
	case idt.IssuedAt.IsZero():
		return Caller{}, authError(KindOIDC, ReasonMalformed, "token has no iat claim")
	case idt.IssuedAt.After(now.Add(skew)):
		return Caller{}, authError(KindOIDC, ReasonNotYetValid, "token is issued in the future (%s)", idt.IssuedAt.UTC().Format(time.RFC3339))
	case tc.JTI == "" && cfg.Replay == ReplayJTI:
		return Caller{}, authError(KindOIDC, ReasonMalformed, "token has no jti claim, which replay protection of issuer %s needs (replay %q)", cfg.Name, ReplayJTI)
	}
	authAt := idt.IssuedAt
	if tc.AuthTime != nil {
		if t := tc.AuthTime.time(); t.After(now.Add(skew)) {
			return Caller{}, authError(KindOIDC, ReasonNotYetValid, "token auth_time is in the future")
		} else if t.Before(authAt) {
			authAt = t
		}
	}
	maxAge := time.Duration(cfg.MaxTokenAge)
	if age := now.Sub(authAt); age > maxAge+skew {
		return Caller{}, authError(KindOIDC, ReasonTooOld, "token is %s old, more than the %s allowed for issuer %s", age.Truncate(time.Second), maxAge, cfg.Name)
	}
	var all map[string]any
	if err := idt.Claims(&all); err != nil {
		return Caller{}, authError(KindOIDC, ReasonMalformed, "token claims: %v", err)
	}
	c, err := mapClaims(cfg, all, tc)
	if err != nil {
		return Caller{}, err
	}
	c.Created, c.Expires = authAt, idt.Expiry
	if tc.AuthTime != nil {
		c.Subject.AuthTime = tc.AuthTime.time().UTC().Format(time.RFC3339)
	}
	// Remember the token until it can no longer be accepted anyway.
	forget := idt.Expiry
	if t := authAt.Add(maxAge); t.Before(forget) {
		forget = t
	}
	forget = forget.Add(skew)
	if id, what := replayID(cfg.Replay, raw, tc.JTI); id != "" {
		if err := v.replay.Use(cfg.Issuer, id, forget, now); err != nil {
			if errors.Is(err, ErrReplayed) {
				return Caller{}, authError(KindOIDC, ReasonReplayed, "token %s from issuer %s was already used", what, cfg.Name)
			}
			return Caller{}, err
		}
	}
	return c, nil
}

// replayID is the key under which a token is remembered as used, and how
// to name the token in an error ("" for ReplayMaxAge, which remembers
// nothing). A token hash covers the signed part only: the signature's
// encoding is not unique (an ECDSA signature (r, s) verifies as (r, n−s)
// too, and base64 has slack in its last character), so hashing it would
// let a replayed token pass as new. The token itself is never stored.
func replayID(mode, raw, jti string) (id, what string) {
	switch mode {
	case ReplayJTI:
		return jti, "with jti " + strconv.Quote(jti)
	case ReplayTokenHash:
		signed := raw[:strings.LastIndexByte(raw, '.')]
		sum := sha256.Sum256([]byte(signed))
		h := hex.EncodeToString(sum[:])
		return "token-sha256:" + h, "with signed-part SHA-256 " + h[:16] + "…"
	}
	return "", ""
}

// mapClaims turns verified claims into a caller, per issuer kind.
func mapClaims(cfg IssuerConfig, all map[string]any, tc tokenClaims) (Caller, error) {
	id := claimString(all, cfg.SubjectClaim)
	if id == "" {
		return Caller{}, authError(KindOIDC, ReasonMalformed, "token has no %q claim for the subject", cfg.SubjectClaim)
	}
	sub := decision.Subject{ID: id, Kind: cfg.SubjectKind, Issuer: cfg.Issuer, Claims: map[string]any{}}
	if g, ok := all[cfg.GroupsClaim].([]any); ok {
		for _, x := range g {
			if s, ok := x.(string); ok {
				sub.Groups = append(sub.Groups, s)
			}
		}
	}
	sub.MFA = slices.ContainsFunc(tc.AMR, func(m string) bool { return slices.Contains(cfg.MFAAMR, m) }) ||
		(tc.ACR != "" && slices.Contains(cfg.MFAACR, tc.ACR))
	if cfg.MFASetting != "" {
		sub.MFA = true
		sub.Claims["mfa_source"] = "setting:" + cfg.MFASetting
	}
	var res ResourceClaims
	copyClaims := slices.Clone(cfg.Claims)
	switch cfg.Kind {
	case IssuerGitHub:
		copyClaims = append(copyClaims, "repository", "repository_owner", "ref", "ref_type", "environment", "actor",
			"workflow", "job_workflow_ref", "runner_environment", "event_name", "sha", "run_id")
		res = ResourceClaims{Repository: claimString(all, "repository"), Ref: claimString(all, "ref"), Environment: claimString(all, "environment")}
	case IssuerGitLab:
		copyClaims = append(copyClaims, "project_path", "namespace_path", "ref", "ref_type", "ref_protected", "environment",
			"environment_protected", "deployment_tier", "user_login", "pipeline_source", "pipeline_id", "job_id", "sha")
		res = ResourceClaims{Repository: claimString(all, "project_path"), Environment: claimString(all, "environment")}
		if ref := claimString(all, "ref"); ref != "" {
			switch claimString(all, "ref_type") {
			case "branch":
				res.Ref = "refs/heads/" + ref
			case "tag":
				res.Ref = "refs/tags/" + ref
			}
		}
		if u := claimString(all, "user_login"); u != "" {
			sub.Claims["actor"] = u
		}
	case IssuerJenkins:
		copyClaims = append(copyClaims, "build_number", JenkinsJobNameClaim, JenkinsBranchClaim)
		res = jenkinsResource(cfg.Issuer, all)
	case IssuerKubernetes:
		if k, ok := all["kubernetes.io"].(map[string]any); ok {
			if ns, ok := k["namespace"].(string); ok {
				sub.Claims["namespace"] = ns
			}
			if sa, ok := k["serviceaccount"].(map[string]any); ok {
				if n, ok := sa["name"].(string); ok {
					sub.Claims["service_account"] = n
				}
			}
			if pod, ok := k["pod"].(map[string]any); ok {
				if n, ok := pod["name"].(string); ok {
					sub.Claims["pod"] = n
				}
			}
		}
	case IssuerGeneric:
		copyClaims = append(copyClaims, "email", "email_verified", "preferred_username", "name")
		if len(tc.AMR) > 0 {
			sub.Claims["amr"] = slices.Clone(tc.AMR)
		}
		if tc.ACR != "" {
			sub.Claims["acr"] = tc.ACR
		}
	}
	for _, name := range copyClaims {
		if v, ok := all[name]; ok {
			sub.Claims[name] = v
		}
	}
	var proven []string
	for name, v := range map[string]string{"repository": res.Repository, "ref": res.Ref, "environment": res.Environment, "name": res.Name} {
		if v != "" {
			proven = append(proven, name)
		}
	}
	for name := range res.Attributes {
		proven = append(proven, "attributes."+name)
	}
	if len(proven) > 0 {
		// Tells the policy which resource fields come from the token
		// rather than from the payload.
		slices.Sort(proven)
		sub.Claims["verified_resource_fields"] = proven
	}
	if len(sub.Claims) == 0 {
		sub.Claims = nil
	}
	return Caller{
		Caller:      decision.Caller{ID: "oidc:" + cfg.Name + ":" + id, Kind: KindOIDC},
		Permissions: slices.Clone(cfg.Permissions),
		Subject:     sub,
		Resource:    res,
	}, nil
}

// claimString returns a string, number or boolean claim as text.
func claimString(all map[string]any, name string) string {
	switch v := all[name].(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case bool:
		return fmt.Sprint(v)
	}
	return ""
}

// Claims of Jenkins oidc-provider tokens beyond the plugin's defaults (sub =
// ${JOB_URL}, build_number = ${BUILD_NUMBER}): an administrator adds them as
// build claim templates (job_name = ${JOB_NAME}; branch = ${BRANCH_NAME},
// which only multibranch jobs have).
const (
	JenkinsJobNameClaim = "job_name"
	JenkinsBranchClaim  = "branch"
)

// jenkinsResource is what a Jenkins build token proves about the resource:
// the job's full name (the job_name claim, else read from a sub that is the
// job's URL, the plugin's default), the branch of a multibranch job as a
// full ref, and the build number.
func jenkinsResource(issuer string, all map[string]any) ResourceClaims {
	var res ResourceClaims
	res.Name = claimString(all, JenkinsJobNameClaim)
	if res.Name == "" {
		res.Name = jenkinsJobFromURL(issuer, claimString(all, "sub"))
	}
	res.Ref = decision.NormalizeRef(claimString(all, JenkinsBranchClaim))
	if n := claimString(all, "build_number"); n != "" {
		res.Attributes = map[string]string{"build_number": n}
	}
	return res
}

// jenkinsJobFromURL reads a job's full name ("payments/deploy") from its
// URL ("https://jenkins.example.com/job/payments/job/deploy/"), or returns
// "" if u is not a job URL. Jenkins' root URL may have a path of its own
// ("https://ci.example.com/jenkins/"); the issuer, "<root URL>oidc" or
// "<root URL>oidc/job/<folder>…" for a folder's credentials, tells where
// it ends. Failing that, the trailing "/job/<name>" pairs make the name.
func jenkinsJobFromURL(issuer, u string) string {
	pu, err := url.Parse(u)
	if err != nil || (pu.Scheme != "https" && pu.Scheme != "http") || pu.Host == "" {
		return ""
	}
	segs := strings.Split(strings.Trim(pu.EscapedPath(), "/"), "/")
	rootKnown := false
	if root, ok := jenkinsRootPath(issuer); ok {
		if len(segs) < len(root) || !slices.Equal(segs[:len(root)], root) {
			return ""
		}
		segs, rootKnown = segs[len(root):], true
	}
	var names []string
	for i := len(segs) - 2; i >= 0 && segs[i] == "job"; i -= 2 {
		name, err := url.PathUnescape(segs[i+1])
		if err != nil || name == "" {
			return ""
		}
		names = append([]string{name}, names...)
	}
	if len(names) == 0 || rootKnown && 2*len(names) != len(segs) {
		return ""
	}
	return strings.Join(names, "/")
}

// jenkinsRootPath is the path segments of Jenkins' root URL, read from an
// issuer of the form "<root URL>oidc" followed by "/job/<folder>" pairs;
// ok is false for any other issuer (one an administrator chose).
func jenkinsRootPath(issuer string) (root []string, ok bool) {
	iu, err := url.Parse(issuer)
	if err != nil {
		return nil, false
	}
	segs := strings.Split(strings.Trim(iu.EscapedPath(), "/"), "/")
	for i, s := range segs {
		rest := segs[i+1:]
		if s != "oidc" || len(rest)%2 != 0 {
			continue
		}
		folders := true
		for j := 0; j < len(rest); j += 2 {
			folders = folders && rest[j] == "job" && rest[j+1] != ""
		}
		if folders {
			return segs[:i], true
		}
	}
	return nil, false
}

package identity

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Config is the identity configuration file: the OIDC issuers whose tokens
// are trusted and the mTLS clients whose certificates are.
//
//	{
//	  "oidc": [{"name": "github", "kind": "github",
//	            "issuer": "https://token.actions.githubusercontent.com",
//	            "audience": "gatelog", "permissions": ["decide"]}],
//	  "mtls": {"client_ca_files": ["clients-ca.pem"],
//	           "clients": [{"dns": "kube-apiserver.example", "permissions": ["decide", "vouch"]}]}
//	}
type Config struct {
	OIDC []IssuerConfig `json:"oidc,omitempty"`
	MTLS MTLSConfig     `json:"mtls,omitzero"`
}

// Issuer kinds: each maps its tokens' claims to a subject differently.
const (
	IssuerGitHub     = "github"     // GitHub Actions OIDC tokens
	IssuerGitLab     = "gitlab"     // GitLab CI id_tokens
	IssuerJenkins    = "jenkins"    // Jenkins oidc-provider plugin
	IssuerKubernetes = "kubernetes" // Kubernetes service account tokens
	IssuerGeneric    = "generic"    // a corporate IdP (groups, amr/acr, auth_time)
)

var issuerKinds = []string{IssuerGitHub, IssuerGitLab, IssuerJenkins, IssuerKubernetes, IssuerGeneric}

// IssuerConfig is one trusted OIDC issuer.
type IssuerConfig struct {
	// Name is short and appears in caller IDs: "oidc:<name>:<subject>".
	Name string `json:"name"`
	Kind string `json:"kind"`
	// Issuer must equal the tokens' iss claim exactly.
	Issuer string `json:"issuer"`
	// Keys come from JWKSFile (air-gapped), else JWKSURL, else OIDC
	// discovery at Issuer/.well-known/openid-configuration.
	JWKSFile string `json:"jwks_file,omitempty"`
	JWKSURL  string `json:"jwks_url,omitempty"`
	// Audience must be among the tokens' aud claim.
	Audience string `json:"audience"`
	// Algorithms allowed to sign tokens (default RS256, ES256); only
	// asymmetric algorithms are accepted.
	Algorithms []string `json:"algorithms,omitempty"`
	// MaxTokenAge bounds now − (auth_time, else iat) (default 1h).
	MaxTokenAge Duration `json:"max_token_age,omitzero"`
	// Replay says how a token is kept from being used twice; see the
	// Replay constants. Default ReplayJTI, except ReplayTokenHash for
	// kind jenkins, whose oidc-provider plugin sets no jti.
	Replay string `json:"replay,omitempty"`
	// ClockSkew is tolerated on exp, nbf and iat (default 30s).
	ClockSkew Duration `json:"clock_skew,omitzero"`
	// Permissions of every caller with a token from this issuer (default decide).
	Permissions []string `json:"permissions,omitempty"`
	// SubjectClaim names the claim that becomes subject.id (default sub).
	SubjectClaim string `json:"subject_claim,omitempty"`
	// SubjectKind is subject.kind (default service for CI kinds, user for generic).
	SubjectKind string `json:"subject_kind,omitempty"`
	// GroupsClaim names the claim that becomes subject.groups (default groups).
	GroupsClaim string `json:"groups_claim,omitempty"`
	// Claims are further claims copied into subject.claims.
	Claims []string `json:"claims,omitempty"`
	// MFAAMR and MFAACR: subject.mfa is true when amr holds one of MFAAMR
	// (default "mfa") or acr is one of MFAACR.
	MFAAMR []string `json:"mfa_amr,omitempty"`
	MFAACR []string `json:"mfa_acr,omitempty"`
	// MFASetting is the operator's statement that every token of this
	// issuer stands for a second-factor login, named by a short fact such
	// as "jenkins.security_realm_requires_2fa" (the Jenkins login that can
	// start these jobs is an SSO that enforces 2FA). Tokens of CI jobs carry
	// no amr or acr, so without it subject.mfa is false for them. It sets
	// subject.mfa and records subject.claims.mfa_source =
	// "setting:<MFASetting>", so the record says where the fact came from.
	MFASetting string `json:"mfa_setting,omitempty"`
}

// Replay protection modes (IssuerConfig.Replay). Every mode also bounds
// a token's age by max_token_age and its expiry.
const (
	// ReplayJTI: a token must carry a jti and each jti is accepted once.
	ReplayJTI = "jti"
	// ReplayTokenHash: each token is accepted once, remembered by the
	// SHA-256 of its signed part (header and claims), so it needs no jti.
	// For issuers that set no jti but mint a fresh token for every use,
	// such as the Jenkins oidc-provider plugin (one token per credential
	// binding).
	ReplayTokenHash = "token_hash"
	// ReplayMaxAge: a token may be used again until it is max_token_age
	// old; only allowed with a max_token_age of at most MaxReplayWindow.
	// For issuers whose tokens are reused by design and carry no jti.
	ReplayMaxAge = "max_age"
)

// MaxReplayWindow is the largest max_token_age allowed with ReplayMaxAge:
// that is how long a stolen token could be replayed.
const MaxReplayWindow = 5 * time.Minute

var replayModes = []string{ReplayJTI, ReplayTokenHash, ReplayMaxAge}

// MTLSConfig lists the CAs client certificates must chain to and what each
// client may do.
type MTLSConfig struct {
	ClientCAFiles []string     `json:"client_ca_files,omitempty"`
	Clients       []MTLSClient `json:"clients,omitempty"`
}

func (m MTLSConfig) enabled() bool { return len(m.ClientCAFiles) > 0 }

// MTLSClient gives permissions to client certificates it matches. Each
// field set must match (shell patterns as in path.Match, where * stops at
// a /): CN the subject
// common name, DNS and URI any SAN of that type. The first matching
// client wins; a verified certificate no client matches has no permissions.
type MTLSClient struct {
	CN          string   `json:"cn,omitempty"`
	DNS         string   `json:"dns,omitempty"`
	URI         string   `json:"uri,omitempty"`
	Permissions []string `json:"permissions"`
}

// Duration is a time.Duration written as "90s", "10m", "1h".
type Duration time.Duration

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"10m\": %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("duration %q: want a non-negative Go duration like \"10m\"", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// LoadConfig reads and checks an identity configuration file. Relative
// file names in it are relative to the file's directory.
func LoadConfig(path string) (Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("identity config: %w", err)
	}
	c, err := ParseConfig(raw, filepath.Dir(path))
	if err != nil {
		return Config{}, fmt.Errorf("identity config %s: %w", path, err)
	}
	return c, nil
}

// ParseConfig decodes a configuration strictly (unknown fields are errors),
// fills defaults, resolves file names against dir and validates it.
func ParseConfig(raw []byte, dir string) (Config, error) {
	var c Config
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("not a valid identity config: %v", err)
	}
	if dec.More() {
		return Config{}, fmt.Errorf("unexpected data after the JSON object")
	}
	names := map[string]bool{}
	for i := range c.OIDC {
		ic := &c.OIDC[i]
		if err := ic.normalize(dir); err != nil {
			return Config{}, fmt.Errorf("oidc[%d]: %w", i, err)
		}
		if names[ic.Name] {
			return Config{}, fmt.Errorf("oidc[%d]: name %q is used twice", i, ic.Name)
		}
		names[ic.Name] = true
	}
	for i, f := range c.MTLS.ClientCAFiles {
		c.MTLS.ClientCAFiles[i] = resolve(dir, f)
	}
	for i, cl := range c.MTLS.Clients {
		if cl.CN == "" && cl.DNS == "" && cl.URI == "" {
			return Config{}, fmt.Errorf("mtls.clients[%d]: set at least one of cn, dns, uri", i)
		}
		for _, pat := range []string{cl.CN, cl.DNS, cl.URI} {
			if _, err := path.Match(pat, ""); err != nil {
				return Config{}, fmt.Errorf("mtls.clients[%d]: bad pattern %q: %v", i, pat, err)
			}
		}
		if err := checkPerms(cl.Permissions); err != nil {
			return Config{}, fmt.Errorf("mtls.clients[%d]: %w", i, err)
		}
	}
	return c, nil
}

func resolve(dir, f string) string {
	if f == "" || filepath.IsAbs(f) || dir == "" {
		return f
	}
	return filepath.Join(dir, f)
}

func checkPerms(perms []string) error {
	for _, p := range perms {
		if !slices.Contains(validPerms, p) {
			return fmt.Errorf("unknown permission %q (want one of %s)", p, strings.Join(validPerms, ", "))
		}
	}
	return nil
}

// asymmetricAlgs are the JWS algorithms a trusted issuer may use. HMAC
// algorithms are never accepted: the daemon shares no secret with an
// issuer, and accepting them invites key-confusion forgeries.
var asymmetricAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

func (ic *IssuerConfig) normalize(dir string) error {
	if ic.Name == "" || strings.ContainsAny(ic.Name, " :\t\n") {
		return fmt.Errorf("name %q must be non-empty without spaces or ':'", ic.Name)
	}
	if ic.Kind == "" {
		ic.Kind = IssuerGeneric
	}
	if !slices.Contains(issuerKinds, ic.Kind) {
		return fmt.Errorf("kind %q: want one of %s", ic.Kind, strings.Join(issuerKinds, ", "))
	}
	if err := checkURL("issuer", ic.Issuer); err != nil {
		return err
	}
	if ic.JWKSURL != "" {
		if err := checkURL("jwks_url", ic.JWKSURL); err != nil {
			return err
		}
	}
	ic.JWKSFile = resolve(dir, ic.JWKSFile)
	if ic.Audience == "" {
		return fmt.Errorf("issuer %s: audience is required (tokens minted for another service must not work here)", ic.Issuer)
	}
	if len(ic.Algorithms) == 0 {
		ic.Algorithms = []string{"RS256", "ES256"}
	}
	for _, a := range ic.Algorithms {
		if !slices.Contains(asymmetricAlgs, a) {
			return fmt.Errorf("algorithm %q is not allowed (want asymmetric ones: %s)", a, strings.Join(asymmetricAlgs, ", "))
		}
	}
	if ic.Replay == "" {
		ic.Replay = ReplayJTI
		if ic.Kind == IssuerJenkins {
			ic.Replay = ReplayTokenHash
		}
	}
	if !slices.Contains(replayModes, ic.Replay) {
		return fmt.Errorf("replay %q: want one of %s", ic.Replay, strings.Join(replayModes, ", "))
	}
	if ic.Replay == ReplayMaxAge && (ic.MaxTokenAge == 0 || time.Duration(ic.MaxTokenAge) > MaxReplayWindow) {
		return fmt.Errorf("replay %q lets a token be used again until it is max_token_age old: set max_token_age to at most %s (it is %s)", ReplayMaxAge, MaxReplayWindow, time.Duration(ic.MaxTokenAge))
	}
	if ic.MaxTokenAge == 0 {
		ic.MaxTokenAge = Duration(time.Hour)
	}
	if ic.MFASetting != "" && !validSettingName(ic.MFASetting) {
		return fmt.Errorf("mfa_setting %q: want a short name of letters, digits and . _ - (at most 64)", ic.MFASetting)
	}
	if ic.ClockSkew == 0 {
		ic.ClockSkew = Duration(30 * time.Second)
	}
	if time.Duration(ic.ClockSkew) > 5*time.Minute {
		return fmt.Errorf("clock_skew %s is more than 5m", time.Duration(ic.ClockSkew))
	}
	if len(ic.Permissions) == 0 {
		ic.Permissions = []string{PermDecide}
	}
	if err := checkPerms(ic.Permissions); err != nil {
		return err
	}
	if ic.SubjectClaim == "" {
		ic.SubjectClaim = "sub"
	}
	if ic.GroupsClaim == "" {
		ic.GroupsClaim = "groups"
	}
	if ic.SubjectKind == "" {
		ic.SubjectKind = "service"
		if ic.Kind == IssuerGeneric {
			ic.SubjectKind = "user"
		}
	}
	if len(ic.MFAAMR) == 0 {
		ic.MFAAMR = []string{"mfa"}
	}
	return nil
}

// validSettingName keeps mfa_setting short and printable: it is recorded
// in every decision of the issuer's callers.
func validSettingName(s string) bool {
	if len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// checkURL accepts https URLs, and http only on the loopback interface
// (for tests and local development).
func checkURL(field, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%s %q is not an absolute URL", field, raw)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); (ip != nil && ip.IsLoopback()) || host == "localhost" {
			return nil
		}
	}
	return fmt.Errorf("%s %q must be https (http only on loopback)", field, raw)
}

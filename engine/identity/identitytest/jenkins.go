package identitytest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Jenkins is a Jenkins controller's OIDC issuer as the oidc-provider plugin
// (jenkinsci/oidc-provider-plugin) serves it and mints its tokens, rebuilt
// from the plugin's source so tests get tokens claim for claim as a build
// does:
//
//   - Keys.java: discovery at <root>/oidc/.well-known/openid-configuration
//     and keys at <root>/oidc/jwks; an RSA key per credential, kid = the
//     credential's id, n and e encoded from Java's BigInteger.toByteArray
//     (so n has a leading zero byte);
//   - IdTokenCredentials.token(): header kid and typ, RS256; iss = the
//     issuer URL; aud = [the credential's audience] (absent when the
//     credential has none); iat = now, exp = iat + tokenLifetime (3600 s by
//     default); no jti, nbf, auth_time, amr or acr (the plugin refuses
//     templates for them); then the claim templates, expanded from the
//     build's variables, refusing a template left with "${" in it;
//   - IdTokenConfiguration.java: default build claim templates sub =
//     ${JOB_URL} (string) and build_number = ${BUILD_NUMBER} (integer).
type Jenkins struct {
	// RootURL is Jenkins' root URL, "http://127.0.0.1:PORT/".
	RootURL string
	// Issuer is RootURL + "oidc", the iss of the root issuer's tokens.
	Issuer string
	// CredentialID is the "OpenID Connect id token" credential's id.
	CredentialID string
	Key          *rsa.PrivateKey
	// TokenLifetime is the plugin's global token lifetime (default 1h).
	TokenLifetime time.Duration
	// ClaimTemplates apply to every token; BuildClaimTemplates to tokens
	// bound in a build (default: the plugin's sub and build_number).
	ClaimTemplates      []ClaimTemplate
	BuildClaimTemplates []ClaimTemplate

	server *httptest.Server
}

// ClaimTemplate is one of the plugin's claim templates: a claim name, a
// format with ${VARIABLE} substitutions and a type ("string", "integer"
// or "boolean").
type ClaimTemplate struct {
	Name, Format, Type string
}

// DefaultBuildClaimTemplates are IdTokenConfiguration's defaults.
var DefaultBuildClaimTemplates = []ClaimTemplate{
	{Name: "sub", Format: "${JOB_URL}", Type: "string"},
	{Name: "build_number", Format: "${BUILD_NUMBER}", Type: "integer"},
}

// standardClaims are IdTokenCredentials.STANDARD_CLAIMS: no template may set them.
var standardClaims = []string{"iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "azp", "nbf", "jti"}

// NewJenkins starts a Jenkins OIDC issuer on 127.0.0.1 with one credential.
// Close it when done.
func NewJenkins(credentialID string) (*Jenkins, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	j := &Jenkins{CredentialID: credentialID, Key: k, TokenLifetime: time.Hour,
		BuildClaimTemplates: slices.Clone(DefaultBuildClaimTemplates)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /oidc/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json;charset=utf-8")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": j.Issuer, "jwks_uri": j.Issuer + "/jwks",
			"response_types_supported":              []string{"code"},
			"subject_types_supported":               []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256"},
			"authorization_endpoint":                "https://unimplemented",
			"token_endpoint":                        "https://unimplemented",
		})
	})
	mux.HandleFunc("GET /oidc/jwks", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json;charset=utf-8")
		_, _ = w.Write(j.JWKS())
	})
	j.server = httptest.NewServer(mux)
	j.RootURL = j.server.URL + "/"
	j.Issuer = j.RootURL + "oidc"
	return j, nil
}

// Close stops the issuer.
func (j *Jenkins) Close() { j.server.Close() }

// JWKS is the key set as Keys.key writes it.
func (j *Jenkins) JWKS() []byte {
	enc := base64.RawURLEncoding
	b, _ := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kid": j.CredentialID, "kty": "RSA", "alg": "RS256", "use": "sig",
		"n": enc.EncodeToString(javaBytes(j.Key.N)),
		"e": enc.EncodeToString(javaBytes(big.NewInt(int64(j.Key.E)))),
	}}})
	return b
}

// javaBytes is BigInteger.toByteArray for a positive number: big-endian
// two's complement, so a leading zero byte when the top bit is set.
func javaBytes(n *big.Int) []byte {
	b := n.Bytes()
	if len(b) > 0 && b[0]&0x80 != 0 {
		b = append([]byte{0}, b...)
	}
	return b
}

// ErrUnsubstituted is the plugin's refusal to mint a token whose claim
// template names a variable the build does not have.
var ErrUnsubstituted = errors.New("apparently unsubstituted claims")

// BuildToken is the token a build gets when it binds the credential (for
// example with withCredentials): env holds the build's variables (JOB_URL,
// BUILD_NUMBER, JOB_NAME, BRANCH_NAME, …), audience is the credential's.
// Like the plugin, it fails when a template is left with "${" in it.
func (j *Jenkins) BuildToken(now time.Time, audience string, env map[string]string) (string, error) {
	iat := now.Truncate(time.Second)
	claims := map[string]any{
		"iss": j.Issuer,
		"iat": iat.Unix(),
		"exp": iat.Add(j.TokenLifetime).Unix(),
	}
	if audience != "" {
		claims["aud"] = []string{audience}
	}
	definedSub := false
	for _, t := range append(slices.Clone(j.ClaimTemplates), j.BuildClaimTemplates...) {
		if slices.Contains(standardClaims, t.Name) {
			return "", fmt.Errorf("an id token claim template must not specify %s", t.Name)
		}
		if t.Name == "sub" {
			definedSub = true
		}
		v := replaceMacro(t.Format, env)
		if strings.Contains(v, "${") {
			return "", fmt.Errorf("%w: %s", ErrUnsubstituted, v)
		}
		switch t.Type {
		case "integer":
			n, err := strconv.ParseInt(v, 10, 32)
			if err != nil {
				return "", fmt.Errorf("claim %s: %q is not an integer: %w", t.Name, v, err)
			}
			claims[t.Name] = n
		case "boolean":
			claims[t.Name] = strings.EqualFold(v, "true")
		default:
			claims[t.Name] = v
		}
	}
	if !definedSub {
		return "", errors.New("an id token claim template must specify sub")
	}
	opts := (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", j.CredentialID)
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: j.Key}, opts)
	if err != nil {
		return "", err
	}
	return jwt.Signed(s).Claims(claims).Serialize()
}

var macro = regexp.MustCompile(`\$\{([a-zA-Z0-9_.]+)\}|\$([a-zA-Z0-9_]+)`)

// replaceMacro is hudson.Util.replaceMacro: ${NAME} and $NAME are replaced
// by the variable's value, and left as they are when there is none.
func replaceMacro(s string, env map[string]string) string {
	return macro.ReplaceAllStringFunc(s, func(m string) string {
		name := strings.Trim(strings.TrimPrefix(m, "$"), "{}")
		if v, ok := env[name]; ok {
			return v
		}
		return m
	})
}

package github

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// SignatureHeader is the header GitHub signs webhook deliveries in.
const SignatureHeader = "X-Hub-Signature-256"

// ErrSignature means a delivery's X-Hub-Signature-256 is missing, malformed
// or does not match: the delivery did not come from GitHub with this secret.
var ErrSignature = errors.New("webhook signature rejected")

// Sign returns the X-Hub-Signature-256 value for body: "sha256=" and the hex
// HMAC-SHA256 of the body under the webhook secret, as GitHub computes it.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// VerifySignature checks header (the X-Hub-Signature-256 value) against the
// body and the webhook secret in constant time. Only SHA-256 signatures are
// accepted; GitHub's older SHA-1 X-Hub-Signature is not. An empty secret
// verifies nothing. Errors wrap ErrSignature and never include the
// expected value.
func VerifySignature(secret, body []byte, header string) error {
	if len(secret) == 0 {
		return fmt.Errorf("%w: no webhook secret is configured", ErrSignature)
	}
	got, err := parseSignature(header)
	if err != nil {
		return err
	}
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	if !hmac.Equal(got, m.Sum(nil)) {
		return fmt.Errorf("%w: %s does not match the body and the configured webhook secret", ErrSignature, SignatureHeader)
	}
	return nil
}

// CheckSignatureHeader reports whether header has the form of an
// X-Hub-Signature-256 value, so a delivery without one is refused before
// its body is read.
func CheckSignatureHeader(header string) error {
	_, err := parseSignature(header)
	return err
}

func parseSignature(header string) ([]byte, error) {
	hexSig, ok := strings.CutPrefix(strings.TrimSpace(header), "sha256=")
	switch {
	case header == "":
		return nil, fmt.Errorf("%w: missing %s header", ErrSignature, SignatureHeader)
	case !ok:
		return nil, fmt.Errorf("%w: %s must be \"sha256=<hex HMAC>\"", ErrSignature, SignatureHeader)
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil || len(got) != sha256.Size {
		return nil, fmt.Errorf("%w: %s must be \"sha256=<64 hex digits>\"", ErrSignature, SignatureHeader)
	}
	return got, nil
}

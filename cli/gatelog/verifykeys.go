package main

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/urfave/cli/v2"

	"github.com/gatelog/gatelog/internal/durable"
	"github.com/gatelog/gatelog/translog/entry"
	"github.com/gatelog/gatelog/translog/verify"
)

// keyFlags are the pinned keys of every command that verifies: the log's
// key and the daemon's signing key (one) or key set (after rotations).
func keyFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "log-key", Usage: "the log's public key (PEM)", EnvVars: []string{"GATELOG_LOG_KEY"}},
		&cli.StringFlag{Name: "signer-key", Usage: "the daemon's decision-signing public key (PEM), when it never rotated", EnvVars: []string{"GATELOG_SIGNER_KEY"}},
		&cli.StringFlag{Name: "signer-keys", Usage: "the daemon's signing key set with validity windows (gatelog keys signers --out, GET /v1/keys): each record is checked with the key valid when it was logged", EnvVars: []string{"GATELOG_SIGNER_KEYS"}},
	}
}

// signingKeys reads --signer-key or --signer-keys; ok is false when
// neither is given.
func signingKeys(c *cli.Context) (ks verify.SigningKeys, ok bool, err error) {
	one, set := c.String("signer-key"), c.String("signer-keys")
	switch {
	case one != "" && set != "":
		return ks, false, fmt.Errorf("give --signer-key or --signer-keys, not both")
	case one != "":
		k, err := readPublicKey(one)
		if err != nil {
			return ks, false, fmt.Errorf("--signer-key: %w", err)
		}
		ks, err = verify.KeySet(k)
		if err != nil {
			return ks, false, fmt.Errorf("--signer-key: %w", err)
		}
		return ks, true, nil
	case set == "":
		return ks, false, nil
	}
	raw, err := os.ReadFile(set)
	if err != nil {
		return ks, false, fmt.Errorf("--signer-keys: %w", err)
	}
	if ks, err = verify.ParseSigningKeys(raw); err != nil {
		return ks, false, fmt.Errorf("--signer-keys %s: %w", set, err)
	}
	return ks, true, nil
}

// pinnedVerifier makes the verifier from the pinned keys. Without
// --log-key it returns nil (the caller decides whether that is an error);
// with needSigner a signing key (or key set) is required too.
func pinnedVerifier(c *cli.Context, needSigner bool) (*verify.Verifier, error) {
	if c.String("log-key") == "" {
		if c.String("signer-key") != "" || c.String("signer-keys") != "" {
			return nil, fmt.Errorf("--signer-key/--signer-keys need --log-key: both keys are pinned together")
		}
		return nil, nil
	}
	logKey, err := readPublicKey(c.String("log-key"))
	if err != nil {
		return nil, fmt.Errorf("--log-key: %w", err)
	}
	ks, ok, err := signingKeys(c)
	if err != nil {
		return nil, err
	}
	if needSigner && !ok {
		return nil, fmt.Errorf("give --signer-key or --signer-keys with --log-key")
	}
	var opts []verify.Option
	if ok {
		opts = append(opts, verify.WithSigningKeys(ks))
	}
	v, err := verify.New(logKey, opts...)
	if err != nil {
		return nil, fmt.Errorf("--log-key: %w", err)
	}
	return v, nil
}

func readPublicKey(path string) (crypto.PublicKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return cryptoutils.UnmarshalPEMToPublicKey(raw)
}

// fingerprint is how keys are shown to people: SHA256:<base64> of the
// key's PKIX DER, as ssh shows host keys.
func fingerprint(pub crypto.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "unprintable key"
	}
	sum := sha256.Sum256(der)
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:])
}

// knownServer is what was pinned for one daemon URL on first use.
type knownServer struct {
	LogKey      string             `json:"log_key"`
	SigningKeys verify.SigningKeys `json:"signing_keys"`
}

// knownServers is the pin file: daemon URL → its pinned keys. It is kept
// 0600 in $XDG_CONFIG_HOME/gatelog/known_servers unless --pin-file says
// otherwise.
type knownServers struct {
	path    string
	Servers map[string]knownServer `json:"servers"`
}

func defaultPinFile() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("no configuration directory for the pin file (give --pin-file): %w", err)
	}
	return filepath.Join(dir, "gatelog", "known_servers"), nil
}

func loadKnownServers(path string) (*knownServers, error) {
	ks := &knownServers{path: path, Servers: map[string]knownServer{}}
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return ks, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pin file: %w", err)
	}
	if err := json.Unmarshal(raw, ks); err != nil {
		return nil, fmt.Errorf("pin file %s is corrupt: %w", path, err)
	}
	if ks.Servers == nil {
		ks.Servers = map[string]knownServer{}
	}
	return ks, nil
}

func (k *knownServers) save() error {
	raw, err := json.MarshalIndent(k, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(k.path), 0o700); err != nil {
		return fmt.Errorf("pin file: %w", err)
	}
	if err := durable.WriteFile(k.path, append(raw, '\n')); err != nil {
		return fmt.Errorf("pin file: %w", err)
	}
	return os.Chmod(k.path, 0o600)
}

// ErrPinnedKeyChanged means a daemon now presents keys other than those
// pinned on first use: a verification failure (exit 3), as ssh refuses a
// changed host key.
var ErrPinnedKeyChanged = fmt.Errorf("%w: the daemon's keys changed since they were pinned", verify.ErrFailed)

// pinOnFirstUse returns the verifier for the daemon cl talks to from the
// pin file: on first use it fetches the log key and the signing key set,
// prints their fingerprints to w and pins them. Later it uses the pinned
// keys; a log key that changed is refused. A signing key set is re-fetched
// only when a record names a key that is not pinned (a rotation): it is
// pinned when it keeps every pinned key, and refused otherwise.
//
// With eager (the auditors: log, monitor, audit search --verify) the key
// set of a server pinned before is re-fetched at once under the same
// rule, so entries of keys rotated in since then verify.
func pinOnFirstUse(c *cli.Context, cl *client, w io.Writer, eager bool) (*verify.Verifier, *pinSession, error) {
	path := c.String("pin-file")
	if path == "" {
		var err error
		if path, err = defaultPinFile(); err != nil {
			return nil, nil, err
		}
	}
	known, err := loadKnownServers(path)
	if err != nil {
		return nil, nil, err
	}
	s := &pinSession{c: c, cl: cl, w: w, known: known, server: cl.URL()}
	pin, ok := known.Servers[s.server]
	if !ok {
		if pin, err = s.fetch(); err != nil {
			return nil, nil, err
		}
		logKey, _ := cryptoutils.UnmarshalPEMToPublicKey([]byte(pin.LogKey))
		if cl.base.Scheme == "http" && !isLoopback(cl.base.Hostname()) {
			fmt.Fprintf(w, "warning: these keys came over plain http: compare the fingerprints with the operator's, or use https://\n")
		}
		fmt.Fprintf(w, "pinning the keys of %s on first use (%s):\n", printable(s.server), printable(path))
		fmt.Fprintf(w, "  log key         %s\n", fingerprint(logKey))
		s.printKeys(pin.SigningKeys.Keys)
		known.Servers[s.server] = pin
		if err := known.save(); err != nil {
			return nil, nil, err
		}
	} else if eager {
		v, err := s.refresh()
		return v, s, err
	}
	v, err := s.verifier(pin)
	return v, s, err
}

// pinFileFlag is where the keys pinned on first use are kept.
var pinFileFlag = &cli.StringFlag{Name: "pin-file", Usage: "where keys pinned on first use (no --log-key) are kept (default $XDG_CONFIG_HOME/gatelog/known_servers)", EnvVars: []string{"GATELOG_PIN_FILE"}}

// pinSession is one run's view of the pin file, for a re-fetch after a
// rotation.
type pinSession struct {
	c      *cli.Context
	cl     *client
	w      io.Writer
	known  *knownServers
	server string
}

func (s *pinSession) printKeys(keys []verify.SigningKey) {
	for _, k := range keys {
		pub, err := cryptoutils.UnmarshalPEMToPublicKey([]byte(k.PublicKey))
		if err != nil {
			continue
		}
		fmt.Fprintf(s.w, "  signing key     %s (key ID %.16s…)\n", fingerprint(pub), printable(k.KeyID))
	}
}

func (s *pinSession) verifier(pin knownServer) (*verify.Verifier, error) {
	logKey, err := cryptoutils.UnmarshalPEMToPublicKey([]byte(pin.LogKey))
	if err != nil {
		return nil, fmt.Errorf("pin file: log key of %s: %w", s.server, err)
	}
	return verify.New(logKey, verify.WithSigningKeys(pin.SigningKeys))
}

// fetch reads the daemon's log key and signing key set.
func (s *pinSession) fetch() (knownServer, error) {
	ctx := s.c.Context
	pemKey, err := s.cl.do(ctx, "GET", "/api/v1/log/publicKey", nil, 64<<10)
	if err != nil {
		return knownServer{}, fmt.Errorf("fetch the log key to pin: %w", err)
	}
	logKey, err := cryptoutils.UnmarshalPEMToPublicKey(pemKey)
	if err != nil {
		return knownServer{}, fmt.Errorf("the daemon's log key: %w", err)
	}
	canonical, err := entry.PublicKeyPEM(logKey)
	if err != nil {
		return knownServer{}, err
	}
	raw, err := s.cl.do(ctx, "GET", "/v1/keys", nil, 1<<20)
	if err != nil {
		return knownServer{}, fmt.Errorf("fetch the signing keys to pin: %w", err)
	}
	ks, err := verify.ParseSigningKeys(raw)
	if err != nil {
		return knownServer{}, fmt.Errorf("the daemon's signing keys: %w", err)
	}
	return knownServer{LogKey: string(canonical), SigningKeys: ks}, nil
}

// refresh re-fetches the keys after a record named a key not pinned: the
// log key must be the pinned one and every pinned signing key must still
// be in the set with the same public key and start; new keys are pinned
// and printed. It returns the new verifier.
func (s *pinSession) refresh() (*verify.Verifier, error) {
	old := s.known.Servers[s.server]
	cur, err := s.fetch()
	if err != nil {
		return nil, err
	}
	if cur.LogKey != old.LogKey {
		return nil, fmt.Errorf("%w: %s now serves log key %s; remove it from %s only if you know why", ErrPinnedKeyChanged, printable(s.server), keyFingerprint(cur.LogKey), s.known.path)
	}
	var added []verify.SigningKey
	for _, k := range cur.SigningKeys.Keys {
		i := slices.IndexFunc(old.SigningKeys.Keys, func(o verify.SigningKey) bool { return o.KeyID == k.KeyID })
		if i < 0 {
			added = append(added, k)
		}
	}
	for _, o := range old.SigningKeys.Keys {
		i := slices.IndexFunc(cur.SigningKeys.Keys, func(k verify.SigningKey) bool { return k.KeyID == o.KeyID })
		if i < 0 || cur.SigningKeys.Keys[i].PublicKey != o.PublicKey || (!o.ValidFrom.IsZero() && !cur.SigningKeys.Keys[i].ValidFrom.Equal(o.ValidFrom)) {
			return nil, fmt.Errorf("%w: %s no longer serves pinned signing key %s as pinned; remove it from %s only if you know why", ErrPinnedKeyChanged, printable(s.server), printable(o.KeyID), s.known.path)
		}
	}
	if len(added) > 0 {
		fmt.Fprintf(s.w, "pinning new signing keys of %s (rotated):\n", printable(s.server))
		s.printKeys(added)
	}
	s.known.Servers[s.server] = cur
	if err := s.known.save(); err != nil {
		return nil, err
	}
	return s.verifier(cur)
}

func keyFingerprint(pemKey string) string {
	pub, err := cryptoutils.UnmarshalPEMToPublicKey([]byte(pemKey))
	if err != nil {
		return "unreadable"
	}
	return fingerprint(pub)
}

// isLoopback reports whether host names this machine.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

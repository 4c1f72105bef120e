package builtin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/gatelog/gatelog/internal/secretfile"
	"github.com/gatelog/gatelog/plugins/github/protection"
	"github.com/gatelog/gatelog/plugins/gitlab/validation"
	"github.com/gatelog/gatelog/plugins/tekton/triggersauth"
	"github.com/gatelog/gatelog/plugins/webhook"
)

// Webhooks configures the built-in webhook hooks (plugins/webhook): the CI
// systems that call the daemon with a shared secret instead of a gatelog
// credential. Each needs its adapter endpoint configured in the daemon.
type Webhooks struct {
	// GitHub answers a GitHub App's deployment protection rule webhooks on
	// POST /v1/adapters/{adapter} (default github).
	GitHub *protection.Config
	// GitLab answers a GitLab instance's external pipeline validation on
	// POST /v1/adapters/{adapter} (default gitlab).
	GitLab *validation.Config
	// TektonTriggers does not take over its endpoint: it authenticates
	// calls of the tekton adapter that carry the webhook an EventListener
	// forwards instead of a gatelog credential.
	TektonTriggers *triggersauth.Config
}

// Openers are the hooks w configures, for daemon.Config.Webhooks.
func (w Webhooks) Openers() []webhook.Opener {
	var out []webhook.Opener
	if w.TektonTriggers != nil {
		out = append(out, triggersauth.Opener(*w.TektonTriggers))
	}
	if w.GitLab != nil {
		out = append(out, validation.Opener(*w.GitLab))
	}
	if w.GitHub != nil {
		out = append(out, protection.Opener(*w.GitHub))
	}
	return out
}

// webhooksFile is the JSON form of Webhooks (serve --webhooks-config).
type webhooksFile struct {
	GitHub *struct {
		Adapter           string   `json:"adapter"`
		WebhookSecretFile string   `json:"webhook_secret_file"`
		AppID             int64    `json:"app_id"`
		PrivateKeyFile    string   `json:"private_key_file"`
		APIURL            string   `json:"api_url"`
		DeliveryRetention string   `json:"delivery_retention"`
		Teams             []string `json:"teams"`
		OrgTwoFactor      []string `json:"org_2fa_required"`
		SenderCacheTTL    string   `json:"sender_cache_ttl"`
	} `json:"github"`
	GitLab *struct {
		Adapter      string `json:"adapter"`
		TokenFile    string `json:"token_file"`
		AnswerWithin string `json:"answer_within"`
	} `json:"gitlab"`
	TektonTriggers *struct {
		Adapter      string `json:"adapter"`
		ReplayWindow string `json:"replay_window"`
		Sources      []struct {
			Name       string   `json:"name"`
			Provider   string   `json:"provider"`
			SecretFile string   `json:"secret_file"`
			Namespaces []string `json:"namespaces"`
			MFASetting string   `json:"mfa_setting"`
		} `json:"sources"`
	} `json:"tekton_triggers"`
}

// LoadWebhooks reads a webhooks config file. Secrets are read from the
// files it names (relative to the config file), which must be readable by
// their owner only; they never appear in the config itself.
func LoadWebhooks(path string) (Webhooks, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return Webhooks{}, fmt.Errorf("webhooks config: %w", err)
	}
	var f webhooksFile
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return Webhooks{}, fmt.Errorf("webhooks config %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	secret := func(field, name string) ([]byte, error) {
		if name == "" {
			return nil, fmt.Errorf("webhooks config %s: %s is required", path, field)
		}
		if !filepath.IsAbs(name) {
			name = filepath.Join(dir, name)
		}
		if err := secretfile.CheckOwnerOnly(name); err != nil {
			return nil, fmt.Errorf("webhooks config %s: %s: %w", path, field, err)
		}
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("webhooks config %s: %s: %w", path, field, err)
		}
		if b = bytes.TrimSpace(b); len(b) == 0 {
			return nil, fmt.Errorf("webhooks config %s: %s %s is empty", path, field, name)
		}
		return b, nil
	}
	duration := func(field, v string) (time.Duration, error) {
		if v == "" {
			return 0, nil
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return 0, fmt.Errorf("webhooks config %s: %s %q: want a positive duration such as 4s", path, field, v)
		}
		return d, nil
	}
	var w Webhooks
	if g := f.GitHub; g != nil {
		gh := &protection.Config{Adapter: g.Adapter, AppID: g.AppID, APIURL: g.APIURL, Teams: g.Teams, TwoFactorOrgs: g.OrgTwoFactor}
		if gh.Secret, err = secret("github.webhook_secret_file", g.WebhookSecretFile); err != nil {
			return Webhooks{}, err
		}
		if gh.PrivateKey, err = secret("github.private_key_file", g.PrivateKeyFile); err != nil {
			return Webhooks{}, err
		}
		if gh.DeliveryRetention, err = duration("github.delivery_retention", g.DeliveryRetention); err != nil {
			return Webhooks{}, err
		}
		if gh.SenderCacheTTL, err = duration("github.sender_cache_ttl", g.SenderCacheTTL); err != nil {
			return Webhooks{}, err
		}
		w.GitHub = gh
	}
	if g := f.GitLab; g != nil {
		gl := &validation.Config{Adapter: g.Adapter}
		if gl.Token, err = secret("gitlab.token_file", g.TokenFile); err != nil {
			return Webhooks{}, err
		}
		if gl.AnswerWithin, err = duration("gitlab.answer_within", g.AnswerWithin); err != nil {
			return Webhooks{}, err
		}
		w.GitLab = gl
	}
	if t := f.TektonTriggers; t != nil {
		tt := &triggersauth.Config{Adapter: t.Adapter}
		if tt.ReplayWindow, err = duration("tekton_triggers.replay_window", t.ReplayWindow); err != nil {
			return Webhooks{}, err
		}
		for i, src := range t.Sources {
			b, err := secret(fmt.Sprintf("tekton_triggers.sources[%d].secret_file", i), src.SecretFile)
			if err != nil {
				return Webhooks{}, err
			}
			tt.Sources = append(tt.Sources, triggersauth.Source{Name: src.Name, Provider: src.Provider, Secret: b, Namespaces: src.Namespaces, MFASetting: src.MFASetting})
		}
		if err := tt.Check(); err != nil {
			return Webhooks{}, fmt.Errorf("webhooks config %s: %w", path, err)
		}
		w.TektonTriggers = tt
	}
	return w, nil
}

package gitlab

import (
	"slices"
	"strings"
	"unicode"
)

// GitLab's validation payload names each job and its stage, and nothing
// about where it deploys: the job's `environment` keyword is not sent
// (Validate::External#build_validation_payload sends name, stage, image,
// services, tag_list and script only). Nor does it say which jobs will run:
// the list is every job of the configuration, before `rules`, `only` and
// `except` are evaluated for this ref. So a job's intent is read from the
// conventions GitLab's own documentation and templates use for names and
// stages, after the operator's explicit settings.

// Intents of a job, and of a pipeline (the strongest of its jobs).
const (
	// IntentDeploy: the job deploys (by a setting, a deploy word or an
	// environment name in its name or stage).
	IntentDeploy = "deploy"
	// IntentUnknown: nothing tells what the job does.
	IntentUnknown = "unknown"
	// IntentBuildTest: the job is in a build/test stage or named as a
	// build/test job, and nothing says it deploys.
	IntentBuildTest = "build_test"
)

// How a job's environment was found, recorded beside it.
const (
	bySettingJob   = "setting:" + SettingJobEnvironments
	bySettingStage = "setting:" + SettingStageEnvironments
	byJobName      = "job name"
	byStageName    = "stage name"
	byFallback     = "setting:" + SettingFallbackEnvironment
)

// deployWords mark a job or stage that deploys: GitLab's default `deploy`
// stage, `release` jobs and stages (the release keyword's documented
// `release_job`), Auto DevOps' `rollout` jobs and stages.
var deployWords = []string{"deploy", "deploys", "deployment", "release", "releases", "rollout", "promote", "ship", "publish"}

// envWords map words in job and stage names to environments, after
// GitLab's deployment tiers (doc/ci/environments: production "Production,
// Live"; staging "Staging, Model, Demo"; development "Dev, Review apps")
// and the environments Auto DevOps' `production`, `canary`, `staging` and
// `review` jobs deploy to (canary deploys to production).
var envWords = map[string]string{
	"production": "production", "prod": "production", "prd": "production", "live": "production", "canary": "production",
	"staging": "staging", "stg": "staging", "preprod": "staging",
	"review":      "review",
	"development": "development", "dev": "development",
}

// buildTestStages are stages that build or test: GitLab's default stages
// .pre, build and test (a job without `stage` is in test) and the usual
// names of check stages.
var buildTestStages = []string{".pre", "build", "test", "tests", "testing", "lint", "check", "checks", "verify", "validate", "compile", "security", "scan", "sast", "quality", "code_quality"}

// buildTestWords in a job name mark a build or test job when the stage
// says nothing: GitLab's templates' job names (test, code_quality, sast,
// secret_detection, dependency_scanning, container_scanning, build).
var buildTestWords = []string{"build", "test", "tests", "rspec", "lint", "unit", "integration", "e2e", "check", "compile", "sast", "dast", "scanning", "detection", "quality", "coverage", "vet", "fmt"}

// jobClass is what the adapter makes of one job.
type jobClass struct {
	intent string
	env    string // for IntentDeploy
	by     string // how env was found
}

// classify reads a job's intent and environment under cfg.
func (cfg settings) classify(b Build) jobClass {
	if env := cfg.jobSetting(b.Name); env != "" {
		return jobClass{IntentDeploy, env, bySettingJob}
	}
	for _, m := range cfg.stageEnv {
		if b.Stage == m.key {
			return jobClass{IntentDeploy, m.env, bySettingStage}
		}
	}
	name, stage := words(b.Name), words(b.Stage)
	stageBuildTest := slices.Contains(buildTestStages, strings.ToLower(strings.TrimSpace(b.Stage)))
	nameEnv, stageEnv := envOf(name), envOf(stage)
	deploys := hasAny(name, deployWords) || hasAny(stage, deployWords) ||
		stageEnv != "" || (nameEnv != "" && !stageBuildTest)
	switch {
	case deploys && nameEnv != "":
		return jobClass{IntentDeploy, nameEnv, byJobName}
	case deploys && stageEnv != "":
		return jobClass{IntentDeploy, stageEnv, byStageName}
	case deploys:
		return jobClass{IntentDeploy, cfg.fallbackEnv, byFallback}
	case stageBuildTest || hasAny(name, buildTestWords):
		return jobClass{intent: IntentBuildTest}
	}
	return jobClass{intent: IntentUnknown}
}

// jobSetting is the environment of the longest job_environments prefix of
// name, "" if none.
func (cfg settings) jobSetting(name string) string {
	best, env := -1, ""
	for _, m := range cfg.jobEnv {
		if strings.HasPrefix(name, m.key) && len(m.key) > best {
			best, env = len(m.key), m.env
		}
	}
	return env
}

// envRank orders environments for the request, which names one: those of
// the settings in the order listed, then the fallback, then production,
// staging, development, review, then any other.
func (cfg settings) envRank(env string) int {
	order := make([]string, 0, len(cfg.jobEnv)+len(cfg.stageEnv)+5)
	for _, m := range append(slices.Clone(cfg.jobEnv), cfg.stageEnv...) {
		order = append(order, m.env)
	}
	order = append(order, cfg.fallbackEnv, "production", "staging", "development", "review")
	if i := slices.Index(order, env); i >= 0 {
		return i
	}
	return len(order)
}

// words splits a job or stage name into lower-case words: "deploy_prod",
// "deploy-to-production", "rollout 10%" and "build:production" become
// {deploy prod}, {deploy to production}, {rollout 10}, {build production}.
func words(s string) []string {
	return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	})
}

func hasAny(ws, vocabulary []string) bool {
	return slices.ContainsFunc(ws, func(w string) bool { return slices.Contains(vocabulary, w) })
}

// envOf is the most protected environment a name's words mention.
func envOf(ws []string) string {
	env := ""
	for _, w := range ws {
		switch e := envWords[w]; {
		case e == "production":
			return e
		case e != "" && env == "":
			env = e
		}
	}
	return env
}

// globMatch reports whether s matches pattern, where "*" matches any run of
// characters, "/" included (as the bundled policy's globs do), and every
// other character matches itself.
func globMatch(pattern, s string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == s
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return len(s) >= len(last) && strings.HasSuffix(s, last)
}

func globAny(patterns []string, s string) bool {
	return slices.ContainsFunc(patterns, func(p string) bool { return globMatch(p, s) })
}

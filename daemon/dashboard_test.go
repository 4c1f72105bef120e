package daemon_test

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestGrafanaDashboardQueriesExportedMetrics keeps examples/grafana in step
// with /metrics: every gatelog_* series a panel queries must be exported.
func TestGrafanaDashboardQueriesExportedMetrics(t *testing.T) {
	raw, err := os.ReadFile("../examples/grafana/gatelog.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard is not JSON: %v", err)
	}
	d := startOps(t, t.TempDir(), nil)
	d.Decide(allowedDeploy)
	d.Server.AdapterRestarted("tekton", nil)
	d.GetAs("/v1/audit/search", "glk_wrong")
	exported := scrape(t, d)
	name := regexp.MustCompile(`gatelog_[a-z_]+`)
	queried := 0
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, m := range name.FindAllString(tg.Expr, -1) {
				base := strings.TrimSuffix(m, "_bucket")
				if exported[base] == nil {
					t.Errorf("panel %q queries %s, which /metrics does not export", p.Title, m)
				}
				queried++
			}
		}
	}
	if queried < 10 {
		t.Errorf("only %d metric references in the dashboard", queried)
	}
}

package index_test

import (
	"context"
	"fmt"
	"log"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/gatelog/gatelog/translog/index"
)

// Rows normally come from following the log (CatchUp); here they are
// added by hand to show a search.
func ExampleIndex_Search() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "index-example")
	defer os.RemoveAll(dir)
	ix, err := index.OpenSQLite(ctx, filepath.Join(dir, "index.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer ix.Close()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	rows := []index.Row{
		{LogIndex: 0, UUID: "uuid-0", Kind: index.KindDecision, Subject: "alice", Action: "deploy", Allow: true, Time: now.Add(-9 * 24 * time.Hour)},
		{LogIndex: 1, UUID: "uuid-1", Kind: index.KindDecision, Subject: "alice", Action: "deploy", Allow: true, Time: now.Add(-time.Hour)},
		{LogIndex: 2, UUID: "uuid-2", Kind: index.KindDecision, Subject: "bob", Action: "deploy", Allow: false, Time: now},
	}
	if err := ix.Add(ctx, 42, rows); err != nil {
		log.Fatal(err)
	}
	q, err := index.ParseQuery(url.Values{"subject": {"alice"}, "action": {"deploy"}, "since": {"7d"}}, now)
	if err != nil {
		log.Fatal(err)
	}
	page, err := ix.Search(ctx, q)
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range page.Results {
		fmt.Println(r.LogIndex, r.UUID, r.Subject, r.Action, r.Outcome)
	}
	// Output:
	// 1 uuid-1 alice deploy allow
}

package daemon

import (
	"context"
	"path/filepath"

	"github.com/gatelog/gatelog/translog/index"
)

// openIndex opens the audit index: the shared PostgreSQL database of
// Config.Index when set (several daemons may share it), else
// DATA/index.db. The DSN is never logged nor put in an error.
func (s *Server) openIndex(ctx context.Context) (*index.Index, error) {
	if s.cfg.Index != "" {
		return index.OpenPostgres(ctx, s.cfg.Index)
	}
	return index.OpenSQLite(ctx, filepath.Join(s.cfg.DataDir, IndexFile))
}

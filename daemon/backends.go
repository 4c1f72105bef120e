package daemon

import (
	"context"
	"crypto"
	"fmt"
	"path/filepath"

	"github.com/transparency-dev/tessera/storage/mysql"
	"github.com/transparency-dev/tessera/storage/posix"

	"github.com/gatelog/gatelog/translog"
	"github.com/gatelog/gatelog/translog/index"
)

// openLog opens the transparency log: in the MySQL/MariaDB database of
// Config.Log when set (several daemons may share it), with Tessera's MySQL
// driver, else DATA/log with Tessera's POSIX driver beside the envelope
// store that sequences it. The DSN is never logged nor put in an error.
func openLog(ctx context.Context, cfg Config, logKey crypto.Signer) (*translog.Log, error) {
	lc := translog.Config{
		Key: logKey, Host: cfg.Host, CheckpointInterval: cfg.CheckpointInterval, Logger: cfg.Logger,
	}
	if cfg.Log != "" {
		db, err := translog.OpenMySQL(ctx, cfg.Log)
		if err != nil {
			return nil, err
		}
		if lc.Driver, err = mysql.New(ctx, db); err != nil {
			db.Close()
			return nil, fmt.Errorf("%w: open tessera mysql storage: %w", translog.ErrUnavailable, err)
		}
		lc.DB = db
		lg, err := translog.Open(ctx, lc)
		if err != nil {
			db.Close()
		}
		return lg, err
	}
	lc.Dir = filepath.Join(cfg.DataDir, LogDir)
	var err error
	if lc.Driver, err = posix.New(ctx, posix.Config{Path: translog.TilesDir(lc.Dir)}); err != nil {
		return nil, fmt.Errorf("open tessera posix storage: %w", err)
	}
	return translog.Open(ctx, lc)
}

// openIndex opens the audit index: the shared PostgreSQL database of
// Config.Index when set (several daemons may share it), else
// DATA/index.db. The DSN is never logged nor put in an error.
func (s *Server) openIndex(ctx context.Context) (*index.Index, error) {
	if s.cfg.Index != "" {
		return index.OpenPostgres(ctx, s.cfg.Index)
	}
	return index.OpenSQLite(ctx, filepath.Join(s.cfg.DataDir, IndexFile))
}

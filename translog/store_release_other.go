//go:build !linux

package translog

// releaseMapping is a no-op where the mapping is not released (see the
// Linux version).
func (s *store) releaseMapping() error { return nil }

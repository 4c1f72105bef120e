package translog

import (
	"golang.org/x/sys/unix"

	bolt "go.etcd.io/bbolt"
)

// releaseMapping drops the envelope store's pages from this process's
// memory mapping (madvise MADV_DONTNEED). bbolt maps the file read-only
// and shared and writes with pwrite, so the mapping never holds the only
// copy of anything: the pages stay in the kernel's page cache, and the
// next read maps them again. It runs inside a read transaction, which
// holds bbolt's mmap lock, so the mapping cannot move meanwhile.
func (s *store) releaseMapping() error {
	return s.db.View(func(tx *bolt.Tx) error {
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, s.db.Info().Data, uintptr(tx.Size()), unix.MADV_DONTNEED); errno != 0 {
			return errno
		}
		return nil
	})
}

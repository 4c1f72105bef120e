// Package durable writes files that survive a crash: once WriteFile
// returns nil, the file's content and its name are on stable storage.
// The outboxes (alerts, GitHub reviews) keep their queues this way.
package durable

import (
	"os"
	"path/filepath"
)

// WriteFile writes data to path atomically and durably: a temporary file
// in the same directory, fsync, rename over path, fsync of the directory.
// A crash leaves either the old file or the new one, never a mix.
func WriteFile(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

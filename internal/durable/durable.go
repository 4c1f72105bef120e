// Package durable writes files that survive a crash: once WriteFile
// returns nil (or WriteFiles nil for a file), the file's content and its
// name are on stable storage.
// The outboxes (alerts, GitHub reviews) keep their queues this way.
package durable

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// WriteFile writes data to path atomically and durably: a temporary file
// in the same directory, fsync, rename over path, fsync of the directory.
// A crash leaves either the old file or the new one, never a mix.
func WriteFile(path string, data []byte) error {
	return WriteFiles([]File{{Path: path, Data: data}})[0]
}

// File is one file of a WriteFiles batch.
type File struct {
	Path string
	Data []byte
}

// writeConcurrency bounds the files WriteFiles has open at once.
const writeConcurrency = 32

// WriteFiles writes a batch of files as WriteFile writes one, and returns
// one error per file (nil: that file is durable). The files are written
// and fsync'd concurrently (up to writeConcurrency at a time), so that the
// file system can commit them together, and each directory is fsync'd
// once for the whole batch.
func WriteFiles(files []File) []error {
	errs := make([]error, len(files))
	tmps := make([]string, len(files))
	var wg sync.WaitGroup
	slots := make(chan struct{}, writeConcurrency)
	for i, f := range files {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			tmps[i], errs[i] = writeTemp(f.Path, f.Data)
		})
	}
	wg.Wait()
	dirs := map[string][]int{}
	for i, f := range files {
		if errs[i] != nil {
			continue
		}
		if errs[i] = os.Rename(tmps[i], f.Path); errs[i] != nil {
			_ = os.Remove(tmps[i])
			continue
		}
		d := filepath.Dir(f.Path)
		dirs[d] = append(dirs[d], i)
	}
	for d, members := range dirs {
		if err := syncDir(d); err != nil {
			for _, i := range members {
				errs[i] = err
			}
		}
	}
	return errs
}

// writeTemp writes data to a new temporary file beside path and fsyncs it.
func writeTemp(path string, data []byte) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return "", err
	}
	tmp := f.Name()
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return "", err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return "", err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return "", err
	}
	return tmp, nil
}

// SyncDirs fsyncs each directory that exists, in order, so that the names
// created in it (a new file, a new subdirectory) survive a power cut: a
// file's own fsync does not make its directory entry durable. Name a new
// directory before its parent. Directories that do not exist are skipped.
func SyncDirs(dirs ...string) error {
	for _, d := range dirs {
		if err := syncDir(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("sync directory %s: %w", d, err)
		}
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

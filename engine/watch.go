package engine

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// WatchDir reports changes to the files under dir (subdirectories
// included, also ones created later) on the returned channel, once per
// burst of events: a send happens only after debounce has passed without
// a further event, so an editor's save or a `git checkout` gives one
// reload, not dozens. The channel closes when ctx ends.
func WatchDir(ctx context.Context, dir string, debounce time.Duration) (<-chan struct{}, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", dir, err)
	}
	if err := addTree(w, dir); err != nil {
		w.Close()
		return nil, fmt.Errorf("watch %s: %w", dir, err)
	}
	changed := make(chan struct{}, 1)
	go func() {
		defer close(changed)
		defer w.Close()
		var quiet <-chan time.Time
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if ev.Has(fsnotify.Create) {
					if fi, err := os.Stat(ev.Name); err == nil && fi.IsDir() {
						_ = addTree(w, ev.Name)
					}
				}
				quiet = time.After(debounce)
			case _, ok := <-w.Errors:
				if !ok {
					return
				}
				// An overflow or a vanished directory: reload to be safe.
				quiet = time.After(debounce)
			case <-quiet:
				quiet = nil
				select {
				case changed <- struct{}{}:
				default: // a reload is already pending; it will see this change
				}
			}
		}
	}()
	return changed, nil
}

func addTree(w *fsnotify.Watcher, root string) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return w.Add(p)
		}
		return nil
	})
}

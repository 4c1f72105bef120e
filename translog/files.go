package translog

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// Tessera's POSIX layout: its private state directory and the lock file
// every sequencing batch opens for writing.
const (
	tesseraStateDir  = ".state"
	tesseraTreeState = "treeState"
	tesseraLockFile  = "treeState.lock"
)

// Exists reports whether dir (a Config.Dir) already holds a log with a
// published checkpoint. The daemon asks before creating a log key, so a
// lost key is never silently replaced by a new one.
func Exists(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "tlog", "checkpoint"))
	return err == nil
}

// storageWritable checks that the tlog directory, Tessera's state
// directory and its lock file can be written (access(2) with W_OK: it
// catches a read-only file system, an immutable file and a missing
// directory even for root), without opening the lock file, since closing
// any descriptor of it would drop the lock Tessera may hold. Before
// Tessera's first start (running false) the state directory may be
// missing; Tessera creates it, and the lock file, with O_CREAT.
func storageWritable(tlogDir string, running bool) error {
	const wOK = 0x2
	state := filepath.Join(tlogDir, tesseraStateDir)
	for _, p := range []string{tlogDir, state, filepath.Join(state, tesseraLockFile)} {
		err := syscall.Access(p, wOK)
		if errors.Is(err, os.ErrNotExist) && (p != state || !running) && p != tlogDir {
			continue
		}
		if err != nil {
			return fmt.Errorf("%w: log storage %s is not writable: %v", ErrUnavailable, p, err)
		}
	}
	return nil
}

// checkState refuses to let Tessera start over a log that has a published
// checkpoint but no tree state: Tessera would take it for a new log and
// publish an empty tree over it (a rollback).
func checkState(tlogDir string) error {
	if !Exists(filepath.Dir(tlogDir)) {
		return nil
	}
	_, err := os.Stat(filepath.Join(tlogDir, tesseraStateDir, tesseraTreeState))
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: %s has a published checkpoint but no tree state (%s/%s); refusing to start the log over", ErrCorrupt, tlogDir, tesseraStateDir, tesseraTreeState)
	}
	if err != nil {
		return fmt.Errorf("%w: tree state: %v", ErrUnavailable, err)
	}
	return nil
}

// checkOrigin refuses a log whose published checkpoint was made under
// another tree ID, i.e. with another log key: continuing it would sign
// its old tree with a new key and a new origin.
func checkOrigin(tlogDir string, treeID int64) error {
	raw, err := os.ReadFile(filepath.Join(tlogDir, "checkpoint"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: read checkpoint: %v", ErrUnavailable, err)
	}
	origin, _, _ := bytes.Cut(raw, []byte("\n"))
	if !bytes.HasSuffix(origin, []byte("/"+strconv.FormatInt(treeID, 10))) {
		return fmt.Errorf("%w: the log in %s has origin %q, but this key's tree ID is %d", ErrWrongKey, filepath.Dir(tlogDir), origin, treeID)
	}
	return nil
}

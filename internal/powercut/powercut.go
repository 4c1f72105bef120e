// Package powercut is a FUSE file system for tests that can lose power.
//
// It passes every operation through to a backing directory (go-fuse's
// loopback file system) but remembers what was made durable: a file's data
// as of its last fsync or fdatasync, a directory's entries as of its last
// fsync. Cut throws the rest away and leaves the backing directory as a
// power loss would, the semantics of Jepsen's LazyFS: a new file never
// fsync'd comes back empty, a created or renamed name whose directory was
// never fsync'd is gone (or back under its old name).
//
// How: every file the mount knows is also hard-linked under a private
// directory beside the backing one, by inode number, so its data survives
// unlink and rename-over; before a write changes bytes that were durable,
// the old bytes of those blocks are saved (an undo log, cleared by fsync).
// Cut restores the saved blocks, truncates each file to its durable size
// and rebuilds the backing directory from the durable directory entries.
// Memory and disk grow with what is written between fsyncs and with the
// files replaced while mounted; both are released by Cut or Unmount.
//
// The file system is served by the process that mounts it: that process
// must not mmap files of the mount (a page fault waits for the server,
// which a garbage-collection stop-the-world may have stopped, and the
// process hangs). Run the program under test as a child process.
//
// Not modelled: metadata durability (modes, times), torn writes within a
// block, reordering of durable writes, a directory removed and its inode
// number reused before a Cut (it comes back empty).
package powercut

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// blockSize is the unit of the undo log.
const blockSize = 4096

// FS is one mounted power-cut file system.
type FS struct {
	backing, keep, mnt string
	server             *fuse.Server

	mu      sync.Mutex
	files   map[uint64]*fileState // by backing inode number
	dirs    map[uint64]map[string]dirent
	rootIno uint64
	stats   Stats
}

// Stats counts what the file system saw; a drill uses them to show that
// the code under test did sync.
type Stats struct {
	FileSyncs, DirSyncs, Writes uint64
}

// fileState is what Cut restores a file to.
type fileState struct {
	durableSize int64
	undo        map[int64][]byte // block index → its durable bytes
}

// dirent is one durable directory entry.
type dirent struct {
	ino    uint64
	mode   fs.FileMode
	target string // symlinks
}

// Mount serves backing at mnt (both existing directories) and takes what is
// in backing now as durable. The private copy of names lives in a sibling
// of backing, so backing and its parent must be on one file system.
// Mounting needs root (or CAP_SYS_ADMIN) and /dev/fuse.
func Mount(backing, mnt string) (*FS, error) {
	backing, err := filepath.Abs(backing)
	if err != nil {
		return nil, err
	}
	p := &FS{
		backing: backing,
		keep:    filepath.Join(filepath.Dir(backing), "."+filepath.Base(backing)+".powercut"),
		mnt:     mnt,
	}
	if err := p.mount(); err != nil {
		return nil, err
	}
	return p, nil
}

// Remount mounts the backing directory again after a Cut (the machine
// coming back up), taking what survived as durable.
func (p *FS) Remount() error {
	if p.server != nil {
		return fmt.Errorf("powercut: %s is still mounted", p.mnt)
	}
	return p.mount()
}

func (p *FS) mount() error {
	p.mu.Lock()
	p.files = map[uint64]*fileState{}
	p.dirs = map[uint64]map[string]dirent{}
	p.mu.Unlock()
	if err := os.RemoveAll(p.keep); err != nil {
		return fmt.Errorf("powercut: clear %s: %w", p.keep, err)
	}
	if err := os.Mkdir(p.keep, 0o700); err != nil {
		return fmt.Errorf("powercut: %w", err)
	}
	if err := p.snapshot(); err != nil {
		return err
	}
	var st syscall.Stat_t
	if err := syscall.Stat(p.backing, &st); err != nil {
		return fmt.Errorf("powercut: %w", err)
	}
	root := &node{LoopbackNode: &gofs.LoopbackNode{RootData: &gofs.LoopbackRoot{Path: p.backing, Dev: st.Dev}}, pc: p}
	root.RootData.RootNode = root
	server, err := gofs.Mount(p.mnt, root, &gofs.Options{
		MountOptions: fuse.MountOptions{
			FsName:            "powercut",
			Name:              "powercut",
			DirectMount:       true,
			DirectMountStrict: true,
		},
	})
	if err != nil {
		return fmt.Errorf("powercut: mount %s: %w", p.mnt, err)
	}
	p.server = server
	return nil
}

// Stats returns the counters since Mount (across Cut and Remount).
func (p *FS) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// Unmount unmounts and keeps the backing directory as it is (everything
// written survives, as after a clean shutdown).
func (p *FS) Unmount() error {
	if err := p.unmount(); err != nil {
		return err
	}
	return os.RemoveAll(p.keep)
}

func (p *FS) unmount() error {
	if p.server == nil {
		return nil
	}
	err := p.server.Unmount()
	if err != nil {
		// Busy (a process still has a file open): detach it anyway; the
		// caller cut the power, nothing may write after this.
		if derr := syscall.Unmount(p.mnt, syscall.MNT_DETACH); derr != nil {
			return fmt.Errorf("powercut: unmount %s: %w", p.mnt, errors.Join(err, derr))
		}
	}
	// A detached mount ends when its last open file is closed: do not wait
	// forever on a process that was not killed.
	done := make(chan struct{})
	go func() {
		p.server.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		return errors.Join(fmt.Errorf("powercut: %s still in use 30s after unmount (kill the processes using it before a Cut)", p.mnt), err)
	}
	p.server = nil
	return nil
}

// Cut is the power cut: it unmounts (processes using the mount should be
// dead by now; kill them first) and leaves in backing only what was
// durable. Mount again to go on.
func (p *FS) Cut() error {
	if err := p.unmount(); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for ino, f := range p.files {
		if err := p.restoreFile(ino, f); err != nil {
			return err
		}
	}
	entries, err := os.ReadDir(p.backing)
	if err != nil {
		return fmt.Errorf("powercut: %w", err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(p.backing, e.Name())); err != nil {
			return fmt.Errorf("powercut: %w", err)
		}
	}
	if err := p.rebuild(p.rootIno, p.backing, map[uint64]bool{}); err != nil {
		return err
	}
	return os.RemoveAll(p.keep)
}

func (p *FS) keepPath(ino uint64) string {
	return filepath.Join(p.keep, strconv.FormatUint(ino, 10))
}

func (p *FS) restoreFile(ino uint64, f *fileState) error {
	fd, err := syscall.Open(p.keepPath(ino), syscall.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("powercut: restore inode %d: %w", ino, err)
	}
	defer syscall.Close(fd)
	for b, data := range f.undo {
		if _, err := syscall.Pwrite(fd, data, b*blockSize); err != nil {
			return fmt.Errorf("powercut: restore inode %d: %w", ino, err)
		}
	}
	if err := syscall.Ftruncate(fd, f.durableSize); err != nil {
		return fmt.Errorf("powercut: restore inode %d: %w", ino, err)
	}
	return nil
}

// rebuild recreates directory ino's durable entries under path.
func (p *FS) rebuild(ino uint64, path string, onPath map[uint64]bool) error {
	if onPath[ino] {
		return nil // a directory moved under itself by unsynced renames
	}
	onPath[ino] = true
	defer delete(onPath, ino)
	entries := p.dirs[ino]
	names := make([]string, 0, len(entries))
	for name := range entries {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		e := entries[name]
		target := filepath.Join(path, name)
		var err error
		switch {
		case e.mode.IsDir():
			if err = os.Mkdir(target, e.mode.Perm()); err == nil {
				err = p.rebuild(e.ino, target, onPath)
			}
		case e.mode&fs.ModeSymlink != 0:
			err = os.Symlink(e.target, target)
		case e.mode.IsRegular():
			if _, tracked := p.files[e.ino]; tracked {
				err = os.Link(p.keepPath(e.ino), target)
			}
		}
		if err != nil {
			return fmt.Errorf("powercut: rebuild %s: %w", target, err)
		}
	}
	return nil
}

// snapshot takes the backing directory as it is as durable.
func (p *FS) snapshot() error {
	var st syscall.Stat_t
	if err := syscall.Stat(p.backing, &st); err != nil {
		return fmt.Errorf("powercut: %w", err)
	}
	p.rootIno = st.Ino
	return filepath.WalkDir(p.backing, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		return p.recordDir(path)
	})
}

// recordDir makes directory path's current entries its durable ones,
// tracking any file or directory it meets for the first time. The caller
// holds p.mu (or has not mounted yet).
func (p *FS) recordDir(path string) error {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return fmt.Errorf("powercut: %w", err)
	}
	list, err := os.ReadDir(path)
	if err != nil {
		return fmt.Errorf("powercut: %w", err)
	}
	entries := make(map[string]dirent, len(list))
	for _, e := range list {
		var cst syscall.Stat_t
		child := filepath.Join(path, e.Name())
		if err := syscall.Lstat(child, &cst); err != nil {
			if errors.Is(err, syscall.ENOENT) {
				continue // removed while we looked: not durable here
			}
			return fmt.Errorf("powercut: %w", err)
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		de := dirent{ino: cst.Ino, mode: info.Mode()}
		switch {
		case info.IsDir():
			if _, ok := p.dirs[cst.Ino]; !ok {
				p.dirs[cst.Ino] = map[string]dirent{}
			}
		case info.Mode()&fs.ModeSymlink != 0:
			if de.target, err = os.Readlink(child); err != nil {
				return fmt.Errorf("powercut: %w", err)
			}
		case info.Mode().IsRegular():
			if _, ok := p.files[cst.Ino]; !ok {
				// Present before the mount: all of it is durable.
				if err := p.track(child, cst.Ino, cst.Size); err != nil {
					return err
				}
			}
		default:
			continue
		}
		entries[e.Name()] = de
	}
	p.dirs[st.Ino] = entries
	return nil
}

// track starts following the file at path (inode ino) with size bytes
// durable. The caller holds p.mu.
func (p *FS) track(path string, ino uint64, size int64) error {
	if err := os.Link(path, p.keepPath(ino)); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("powercut: keep %s: %w", path, err)
	}
	p.files[ino] = &fileState{durableSize: size, undo: map[int64][]byte{}}
	return nil
}

// saveRange saves the durable bytes of [off, end) of file ino, read through
// fd, before they are overwritten or truncated. The caller holds p.mu.
func (p *FS) saveRange(ino uint64, fd int, off, end int64) syscall.Errno {
	f, ok := p.files[ino]
	if !ok {
		return 0
	}
	end = min(end, f.durableSize)
	for b := off / blockSize; b*blockSize < end; b++ {
		if _, saved := f.undo[b]; saved {
			continue
		}
		buf := make([]byte, min(blockSize, f.durableSize-b*blockSize))
		n, err := syscall.Pread(fd, buf, b*blockSize)
		if err != nil {
			return gofs.ToErrno(err)
		}
		// Bytes past the live end were zeroes or already saved by the
		// truncation that removed them; a short read keeps zeroes.
		_ = n
		f.undo[b] = buf
	}
	return 0
}

// synced records that file ino is durable as it is now.
func (p *FS) synced(ino uint64, fd int) syscall.Errno {
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return gofs.ToErrno(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.FileSyncs++
	if f, ok := p.files[ino]; ok {
		f.durableSize = st.Size
		f.undo = map[int64][]byte{}
	}
	return 0
}

func (p *FS) syncDir(path string) syscall.Errno {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.DirSyncs++
	if err := p.recordDir(path); err != nil {
		return gofs.ToErrno(errors.Unwrap(err))
	}
	return 0
}

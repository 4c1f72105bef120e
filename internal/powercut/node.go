package powercut

import (
	"context"
	"path/filepath"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// node is a loopback node that reports creations, truncations and
// directory syncs to its FS.
type node struct {
	*gofs.LoopbackNode
	pc *FS
}

var (
	_ gofs.NodeWrapChilder     = (*node)(nil)
	_ gofs.NodeCreater         = (*node)(nil)
	_ gofs.NodeOpener          = (*node)(nil)
	_ gofs.NodeMkdirer         = (*node)(nil)
	_ gofs.NodeMknoder         = (*node)(nil)
	_ gofs.NodeSetattrer       = (*node)(nil)
	_ gofs.NodeOpendirHandler  = (*node)(nil)
	_ gofs.NodeFsyncer         = (*node)(nil)
	_ gofs.NodeCopyFileRanger  = (*node)(nil)
	_ gofs.FileFsyncdirer      = (*dirHandle)(nil)
	_ gofs.FileReaddirenter    = (*dirHandle)(nil)
	_ gofs.FileSeekdirer       = (*dirHandle)(nil)
	_ gofs.FileReleasedirer    = (*dirHandle)(nil)
	_ gofs.FileWriter          = (*file)(nil)
	_ gofs.FileFsyncer         = (*file)(nil)
	_ gofs.FileSetattrer       = (*file)(nil)
	_ gofs.FileAllocater       = (*file)(nil)
	_ gofs.FilePassthroughFder = (*file)(nil)
)

func (n *node) WrapChild(ctx context.Context, ops gofs.InodeEmbedder) gofs.InodeEmbedder {
	return &node{LoopbackNode: ops.(*gofs.LoopbackNode), pc: n.pc}
}

// backingPath is where this node lives in the backing directory.
func (n *node) backingPath() string {
	return filepath.Join(n.RootData.Path, n.Path(n.Root()))
}

func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	p := filepath.Join(n.backingPath(), name)
	n.pc.mu.Lock()
	defer n.pc.mu.Unlock()
	var st syscall.Stat_t
	existed := syscall.Lstat(p, &st) == nil
	if existed && flags&syscall.O_TRUNC != 0 {
		if errno := n.pc.saveFile(st.Ino, p, 0); errno != 0 {
			return nil, nil, 0, errno
		}
	}
	in, fh, fl, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	if errno != 0 {
		return in, fh, fl, errno
	}
	lf := fh.(*gofs.LoopbackFile)
	fd, _ := lf.PassthroughFd()
	if err := syscall.Fstat(fd, &st); err != nil {
		return nil, nil, 0, gofs.ToErrno(err)
	}
	if _, tracked := n.pc.files[st.Ino]; !tracked {
		// A new file: nothing of it is durable yet.
		if err := n.pc.track(p, st.Ino, 0); err != nil {
			lf.Release(ctx)
			return nil, nil, 0, syscall.EIO
		}
	}
	return in, &file{LoopbackFile: lf, pc: n.pc, ino: st.Ino, fd: fd}, fl, 0
}

func (n *node) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	p := n.backingPath()
	if flags&syscall.O_TRUNC != 0 {
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return nil, 0, gofs.ToErrno(err)
		}
		n.pc.mu.Lock()
		errno := n.pc.saveFile(st.Ino, p, 0)
		n.pc.mu.Unlock()
		if errno != 0 {
			return nil, 0, errno
		}
	}
	fh, fl, errno := n.LoopbackNode.Open(ctx, flags)
	if errno == syscall.ENOENT {
		// The kernel looked the name up before it was renamed over or
		// removed, and opens the inode it found: a real file system would
		// open that file, but the loopback opens by path, which names
		// another file or none now. ESTALE makes the kernel look the name
		// up again (as for a network file system) and open what it names
		// now — an outcome the race allows too — or answer ENOENT itself.
		return nil, 0, syscall.ESTALE
	}
	if errno != 0 {
		return fh, fl, errno
	}
	lf := fh.(*gofs.LoopbackFile)
	fd, _ := lf.PassthroughFd()
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		lf.Release(ctx)
		return nil, 0, gofs.ToErrno(err)
	}
	return &file{LoopbackFile: lf, pc: n.pc, ino: st.Ino, fd: fd}, fl, 0
}

func (n *node) Mknod(ctx context.Context, name string, mode, rdev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	in, errno := n.LoopbackNode.Mknod(ctx, name, mode, rdev, out)
	if errno == 0 && mode&syscall.S_IFMT == syscall.S_IFREG {
		p := filepath.Join(n.backingPath(), name)
		n.pc.mu.Lock()
		defer n.pc.mu.Unlock()
		if err := n.pc.track(p, out.Ino, 0); err != nil {
			return nil, syscall.EIO
		}
	}
	return in, errno
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	in, errno := n.LoopbackNode.Mkdir(ctx, name, mode, out)
	if errno == 0 {
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(n.backingPath(), name), &st); err == nil {
			n.pc.mu.Lock()
			n.pc.dirs[st.Ino] = map[string]dirent{}
			n.pc.mu.Unlock()
		}
	}
	return in, errno
}

// Setattr without a file handle is truncate(2) by name.
func (n *node) Setattr(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if sz, ok := in.GetSize(); ok {
		if pf, ok := f.(*file); ok {
			return pf.Setattr(ctx, in, out)
		}
		p := n.backingPath()
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return gofs.ToErrno(err)
		}
		n.pc.mu.Lock()
		errno := n.pc.saveFile(st.Ino, p, int64(sz))
		n.pc.mu.Unlock()
		if errno != 0 {
			return errno
		}
	}
	if pf, ok := f.(*file); ok {
		f = pf.LoopbackFile
	}
	return n.LoopbackNode.Setattr(ctx, f, in, out)
}

// Fsync is called by go-fuse for every FSYNC, before the handle's own:
// a file's handle makes its data durable; a directory without a handle of
// ours (FSYNCDIR falls back here) records its entries.
func (n *node) Fsync(ctx context.Context, f gofs.FileHandle, flags uint32) syscall.Errno {
	if pf, ok := f.(*file); ok {
		return pf.Fsync(ctx, flags)
	}
	if n.StableAttr().Mode&syscall.S_IFMT == syscall.S_IFDIR {
		return n.pc.syncDir(n.backingPath())
	}
	// A file synced without a handle of ours: sync it by name.
	fd, err := syscall.Open(n.backingPath(), syscall.O_RDONLY, 0)
	if err != nil {
		return gofs.ToErrno(err)
	}
	defer syscall.Close(fd)
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return gofs.ToErrno(err)
	}
	return n.pc.synced(st.Ino, fd)
}

// CopyFileRange is refused so that the kernel falls back to reads and
// writes, which the undo log sees.
func (n *node) CopyFileRange(ctx context.Context, fhIn gofs.FileHandle, offIn uint64, out *gofs.Inode, fhOut gofs.FileHandle, offOut uint64, len uint64, flags uint64) (uint32, syscall.Errno) {
	return 0, syscall.ENOSYS
}

func (n *node) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	fh, fl, errno := n.LoopbackNode.OpendirHandle(ctx, flags)
	if errno != 0 {
		return fh, fl, errno
	}
	return &dirHandle{inner: fh, n: n}, fl, 0
}

// saveFile saves the durable bytes of file ino from off to its durable end,
// opening it by path. The caller holds p.mu.
func (p *FS) saveFile(ino uint64, path string, off int64) syscall.Errno {
	f, ok := p.files[ino]
	if !ok || off >= f.durableSize {
		return 0
	}
	fd, err := syscall.Open(path, syscall.O_RDONLY, 0)
	if err != nil {
		return gofs.ToErrno(err)
	}
	defer syscall.Close(fd)
	return p.saveRange(ino, fd, off, f.durableSize)
}

// dirHandle is an open directory; its fsync makes the entries durable.
type dirHandle struct {
	inner gofs.FileHandle
	n     *node
}

func (d *dirHandle) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	return d.n.pc.syncDir(d.n.backingPath())
}

func (d *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	return d.inner.(gofs.FileReaddirenter).Readdirent(ctx)
}

func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	return d.inner.(gofs.FileSeekdirer).Seekdir(ctx, off)
}

func (d *dirHandle) Releasedir(ctx context.Context, flags uint32) {
	d.inner.(gofs.FileReleasedirer).Releasedir(ctx, flags)
}

// file is an open regular file: writes first save the durable bytes they
// overwrite, fsync makes the current content durable.
type file struct {
	*gofs.LoopbackFile
	pc  *FS
	ino uint64
	fd  int
}

// PassthroughFd refuses FUSE passthrough: with it the kernel would write to
// the backing file directly and the undo log would miss those writes.
func (f *file) PassthroughFd() (int, bool) { return -1, false }

func (f *file) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	f.pc.mu.Lock()
	defer f.pc.mu.Unlock()
	f.pc.stats.Writes++
	if errno := f.pc.saveRange(f.ino, f.fd, off, off+int64(len(data))); errno != 0 {
		return 0, errno
	}
	return f.LoopbackFile.Write(ctx, data, off)
}

// Fsync covers fsync and fdatasync (flags bit 0); both make data durable,
// which is all this model tracks. The backing file is not synced: the
// power cut is simulated, the host's disk need not be slowed.
func (f *file) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	return f.pc.synced(f.ino, f.fd)
}

func (f *file) Setattr(ctx context.Context, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if sz, ok := in.GetSize(); ok {
		f.pc.mu.Lock()
		defer f.pc.mu.Unlock()
		if st, tracked := f.pc.files[f.ino]; tracked {
			if errno := f.pc.saveRange(f.ino, f.fd, int64(sz), st.durableSize); errno != 0 {
				return errno
			}
		}
	}
	return f.LoopbackFile.Setattr(ctx, in, out)
}

// Allocate may punch holes or zero ranges: save the range first.
func (f *file) Allocate(ctx context.Context, off uint64, size uint64, mode uint32) syscall.Errno {
	f.pc.mu.Lock()
	defer f.pc.mu.Unlock()
	if errno := f.pc.saveRange(f.ino, f.fd, int64(off), int64(off+size)); errno != 0 {
		return errno
	}
	return f.LoopbackFile.Allocate(ctx, off, size, mode)
}

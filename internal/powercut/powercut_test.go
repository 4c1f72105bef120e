package powercut_test

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/gatelog/gatelog/internal/powercut"
)

// syncDir fsyncs a directory, as durable code does after create or rename.
func syncDir(t *testing.T, dir string) {
	t.Helper()
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		t.Fatalf("fsync %s: %v", dir, err)
	}
}

// writeFile creates name with data, fsync'd or not; the directory is not
// synced.
func writeFile(t *testing.T, name string, data []byte, sync bool) {
	t.Helper()
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
}

// durableFile writes name and makes both its data and its name durable.
func durableFile(t *testing.T, name string, data []byte) {
	t.Helper()
	writeFile(t, name, data, true)
	syncDir(t, filepath.Dir(name))
}

func pwrite(t *testing.T, name string, data []byte, off int64, sync bool) {
	t.Helper()
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
	if sync {
		// fdatasync, as bbolt commits on Linux.
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			t.Fatal(err)
		}
	}
}

// want is the content a path must have after the cut; nil: it must not exist.
type want map[string][]byte

var (
	old   = bytes.Repeat([]byte("old-"), 3000) // 12000 bytes: spans blocks
	fresh = []byte("fresh data")
)

func TestCut(t *testing.T) {
	tests := []struct {
		name   string
		before func(t *testing.T, mnt string) // run and made durable before the cut scenario
		run    func(t *testing.T, mnt string)
		want   want
	}{
		{
			name: "new file written, no fsync, name durable: empty",
			run: func(t *testing.T, mnt string) {
				writeFile(t, filepath.Join(mnt, "a"), fresh, false)
				syncDir(t, mnt)
			},
			want: want{"a": {}},
		},
		{
			name: "new file written and fsync'd, name durable: kept",
			run: func(t *testing.T, mnt string) {
				durableFile(t, filepath.Join(mnt, "a"), fresh)
			},
			want: want{"a": fresh},
		},
		{
			name: "new file fsync'd, directory not: gone",
			run: func(t *testing.T, mnt string) {
				writeFile(t, filepath.Join(mnt, "a"), fresh, true)
			},
			want: want{"a": nil},
		},
		{
			name: "durable file overwritten in place without fsync: old bytes",
			before: func(t *testing.T, mnt string) {
				durableFile(t, filepath.Join(mnt, "a"), old)
			},
			run: func(t *testing.T, mnt string) {
				pwrite(t, filepath.Join(mnt, "a"), fresh, 4090, false)  // across a block boundary
				pwrite(t, filepath.Join(mnt, "a"), fresh, 11995, false) // and past the end
			},
			want: want{"a": old},
		},
		{
			name: "durable file overwritten and fdatasync'd: new bytes",
			before: func(t *testing.T, mnt string) {
				durableFile(t, filepath.Join(mnt, "a"), old)
			},
			run: func(t *testing.T, mnt string) {
				pwrite(t, filepath.Join(mnt, "a"), fresh, 4090, true)
			},
			want: want{"a": splice(old, fresh, 4090)},
		},
		{
			name: "durable file truncated without fsync: old size and bytes",
			before: func(t *testing.T, mnt string) {
				durableFile(t, filepath.Join(mnt, "a"), old)
			},
			run: func(t *testing.T, mnt string) {
				if err := os.Truncate(filepath.Join(mnt, "a"), 100); err != nil {
					t.Fatal(err)
				}
				writeFile(t, filepath.Join(mnt, "a"), fresh, false) // O_TRUNC
			},
			want: want{"a": old},
		},
		{
			name: "temporary file, fsync, rename, directory fsync: new name kept",
			before: func(t *testing.T, mnt string) {
				durableFile(t, filepath.Join(mnt, "a"), old)
			},
			run: func(t *testing.T, mnt string) {
				writeFile(t, filepath.Join(mnt, ".tmp"), fresh, true)
				if err := os.Rename(filepath.Join(mnt, ".tmp"), filepath.Join(mnt, "a")); err != nil {
					t.Fatal(err)
				}
				syncDir(t, mnt)
			},
			want: want{"a": fresh, ".tmp": nil},
		},
		{
			name: "rename over a durable file without directory fsync: old file back",
			before: func(t *testing.T, mnt string) {
				durableFile(t, filepath.Join(mnt, "a"), old)
			},
			run: func(t *testing.T, mnt string) {
				writeFile(t, filepath.Join(mnt, ".tmp"), fresh, true)
				if err := os.Rename(filepath.Join(mnt, ".tmp"), filepath.Join(mnt, "a")); err != nil {
					t.Fatal(err)
				}
			},
			want: want{"a": old, ".tmp": nil},
		},
		{
			name: "unlink without directory fsync: file back",
			before: func(t *testing.T, mnt string) {
				durableFile(t, filepath.Join(mnt, "a"), old)
			},
			run: func(t *testing.T, mnt string) {
				if err := os.Remove(filepath.Join(mnt, "a")); err != nil {
					t.Fatal(err)
				}
			},
			want: want{"a": old},
		},
		{
			name: "unlink with directory fsync: gone",
			before: func(t *testing.T, mnt string) {
				durableFile(t, filepath.Join(mnt, "a"), old)
			},
			run: func(t *testing.T, mnt string) {
				if err := os.Remove(filepath.Join(mnt, "a")); err != nil {
					t.Fatal(err)
				}
				syncDir(t, mnt)
			},
			want: want{"a": nil},
		},
		{
			name: "mkdir, parent fsync'd, the new directory not: empty directory",
			run: func(t *testing.T, mnt string) {
				if err := os.Mkdir(filepath.Join(mnt, "d"), 0o755); err != nil {
					t.Fatal(err)
				}
				syncDir(t, mnt)
				writeFile(t, filepath.Join(mnt, "d", "a"), fresh, true)
			},
			want: want{"d/a": nil},
		},
		{
			name: "mkdir without parent fsync: the whole tree is gone",
			run: func(t *testing.T, mnt string) {
				if err := os.Mkdir(filepath.Join(mnt, "d"), 0o755); err != nil {
					t.Fatal(err)
				}
				durableFile(t, filepath.Join(mnt, "d", "a"), fresh)
			},
			want: want{"d": nil},
		},
		{
			name: "mkdir and file, each synced: kept",
			run: func(t *testing.T, mnt string) {
				if err := os.Mkdir(filepath.Join(mnt, "d"), 0o755); err != nil {
					t.Fatal(err)
				}
				syncDir(t, mnt)
				durableFile(t, filepath.Join(mnt, "d", "a"), fresh)
			},
			want: want{"d/a": fresh},
		},
		{
			name: "shared mmap write without msync: old bytes",
			before: func(t *testing.T, mnt string) {
				durableFile(t, filepath.Join(mnt, "a"), old)
			},
			run: func(t *testing.T, mnt string) {
				runClient(t, "mmap", filepath.Join(mnt, "a"))
			},
			want: want{"a": old},
		},
		{
			name: "shared mmap write with msync(MS_SYNC): new bytes",
			before: func(t *testing.T, mnt string) {
				durableFile(t, filepath.Join(mnt, "a"), old)
			},
			run: func(t *testing.T, mnt string) {
				runClient(t, "mmap+msync", filepath.Join(mnt, "a"))
			},
			want: want{"a": splice(old, mmapData, mmapOff)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, backing, mnt := powercut.MountForTest(t)
			if tt.before != nil {
				tt.before(t, mnt)
			}
			tt.run(t, mnt)
			if err := p.Cut(); err != nil {
				t.Fatal(err)
			}
			check(t, backing, tt.want) // what the disk holds
			if err := p.Remount(); err != nil {
				t.Fatal(err)
			}
			check(t, mnt, tt.want) // what a restarted program sees
		})
	}
}

func check(t *testing.T, root string, w want) {
	t.Helper()
	for name, data := range w {
		got, err := os.ReadFile(filepath.Join(root, name))
		switch {
		case data == nil && errors.Is(err, fs.ErrNotExist):
		case data == nil:
			t.Errorf("%s: exists after the cut (err %v), want gone", name, err)
		case err != nil:
			t.Errorf("%s: %v", name, err)
		case !bytes.Equal(got, data):
			t.Errorf("%s: %d bytes %.40q…, want %d bytes %.40q…", name, len(got), got, len(data), data)
		}
	}
}

func splice(base, part []byte, off int) []byte {
	out := bytes.Clone(base)
	copy(out[off:], part)
	return out
}

// The clients that map files run in a child process (this test binary,
// started again with POWERCUT_CLIENT set): a page fault on a FUSE-backed
// mapping waits for the FUSE server, and if the server runs in the same Go
// process a garbage-collection stop-the-world waits for the faulting
// thread, which never gets there. The daemon under test is a separate
// process for the same reason.
func TestMain(m *testing.M) {
	if mode := os.Getenv("POWERCUT_CLIENT"); mode != "" {
		if err := client(mode, os.Getenv("POWERCUT_PATH")); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", mode, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runClient runs client mode on path in a child process and returns what
// it printed.
func runClient(t *testing.T, mode, path string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "POWERCUT_CLIENT="+mode, "POWERCUT_PATH="+path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("client %s: %v\n%s", mode, err, stderr.String())
	}
	return string(out)
}

// mmapOff and mmapData: where the mmap clients write fresh bytes.
const mmapOff = 5000

var mmapData = fresh

func client(mode, path string) error {
	switch mode {
	case "mmap", "mmap+msync":
		return mmapWrite(path, mmapData, mmapOff, mode == "mmap+msync")
	case "bolt-write":
		return boltWrite(path)
	case "bolt-read":
		return boltRead(path)
	}
	return fmt.Errorf("unknown client %q", mode)
}

// mmapWrite writes data at off through a shared writable mapping, with or
// without msync(MS_SYNC) before unmapping.
func mmapWrite(name string, data []byte, off int, msync bool) error {
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return err
	}
	copy(m[off:], data)
	if msync {
		if err := unix.Msync(m, unix.MS_SYNC); err != nil {
			return fmt.Errorf("msync: %w", err)
		}
	}
	return unix.Munmap(m)
}

// boltKeys are committed normally; boltLost is committed with NoSync.
var boltKeys = []string{"k1", "k2", "k3"}

const boltLost = "lost"

func boltValue(key string) []byte { return bytes.Repeat([]byte(key), 1000) }

func boltWrite(path string) error {
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		return err
	}
	// bbolt does not sync the directory it creates the file in.
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return err
	}
	put := func(key string) error {
		return db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists([]byte("b"))
			if err != nil {
				return err
			}
			return b.Put([]byte(key), boltValue(key))
		})
	}
	for _, k := range boltKeys {
		if err := put(k); err != nil {
			return err
		}
	}
	db.NoSync = true
	if err := put(boltLost); err != nil {
		return err
	}
	// Exiting without Close: as kill -9 would (Close writes nothing either).
	return nil
}

// boltRead prints each key found with its full value, one a line.
func boltRead(path string) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("b"))
		if b == nil {
			return errors.New("bucket lost")
		}
		for _, k := range append(boltKeys, boltLost) {
			if bytes.Equal(b.Get([]byte(k)), boltValue(k)) {
				fmt.Println(k)
			}
		}
		return nil
	})
}

// TestBolt runs the envelope store's database, bbolt, on the mount: a
// committed transaction survives the cut, one committed with NoSync does
// not, and the file opens cleanly either way. bbolt v1.4.3 maps the file
// read-only (PROT_READ, MAP_SHARED in bolt_unix.go), writes pages with
// pwrite (tx.go, db.ops.writeAt) and commits with fdatasync (bolt_linux.go);
// it grows the file with ftruncate and fsync (db.go). All of that reaches
// the file system as WRITE, FSYNC and SETATTR; writes through a shared
// writable mapping (not bbolt's case) are covered by the mmap cases of
// TestCut: they reach it at msync(MS_SYNC) or at the unmount.
func TestBolt(t *testing.T) {
	p, _, mnt := powercut.MountForTest(t)
	path := filepath.Join(mnt, "store.db")
	runClient(t, "bolt-write", path)
	if err := p.Cut(); err != nil {
		t.Fatal(err)
	}
	if err := p.Remount(); err != nil {
		t.Fatal(err)
	}
	got := runClient(t, "bolt-read", path)
	if want := strings.Join(boltKeys, "\n") + "\n"; got != want {
		t.Errorf("keys intact after the cut:\n%swant (the NoSync one lost):\n%s", got, want)
	}
}

// Mount a power-cut file system, run the program under test on it, kill
// the program, cut the power and look at what a restart would find.
func Example() {
	p, err := powercut.Mount("/srv/test/backing", "/srv/test/mnt")
	if err != nil {
		panic(err) // no /dev/fuse, or not root
	}
	// ... the program writes under /srv/test/mnt; kill -9 it ...
	if err := p.Cut(); err != nil {
		panic(err)
	}
	// /srv/test/backing now holds only what was fsync'd; mount it again
	// and restart the program on it.
	if err := p.Remount(); err != nil {
		panic(err)
	}
	defer p.Unmount()
}

// A file replaced by rename while another process opens it by name is
// always found, the old content or the new, as on a real file system
// (Tessera publishes its checkpoint so while the daemon serves it): the
// kernel may have looked the name up before the rename and open the
// replaced inode after it.
func TestOpenRacingRenameOver(t *testing.T) {
	_, _, mnt := powercut.MountForTest(t)
	name := filepath.Join(mnt, "checkpoint")
	durableFile(t, name, []byte("0"))
	done := make(chan struct{})
	var renames int
	go func() {
		defer close(done)
		for i := range 500 {
			tmp := filepath.Join(mnt, fmt.Sprintf("checkpoint.tmp%d", i))
			if err := os.WriteFile(tmp, []byte(fmt.Sprint(i)), 0o644); err != nil {
				t.Error(err)
				return
			}
			if err := os.Rename(tmp, name); err != nil {
				t.Error(err)
				return
			}
			renames++
			time.Sleep(time.Millisecond) // Tessera: one a second
		}
	}()
	reads := 0
	for {
		select {
		case <-done:
			t.Logf("%d reads during %d renames", reads, renames)
			return
		default:
		}
		if _, err := os.ReadFile(name); err != nil {
			t.Errorf("read %d of a file being renamed over: %v", reads, err)
			<-done
			return
		}
		reads++
	}
}

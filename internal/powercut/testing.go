package powercut

import (
	"os"
	"path/filepath"
	"testing"
)

// MountForTest mounts a power-cut file system over a new backing directory
// under t.TempDir and returns it with its backing directory and mount
// point; it is unmounted when the test ends. Where FUSE cannot be mounted
// the test is skipped with the reason, except under CI (CI=true), where
// the durability tests must run and it fails instead.
func MountForTest(t testing.TB) (p *FS, backing, mnt string) {
	t.Helper()
	dir := t.TempDir()
	backing, mnt = filepath.Join(dir, "backing"), filepath.Join(dir, "mnt")
	for _, d := range []string{backing, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	p, err := Mount(backing, mnt)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("power-cut file system: %v (CI=true: FUSE must be available; it needs /dev/fuse and root)", err)
		}
		t.Skipf("power-cut file system cannot be mounted here (%v); it needs /dev/fuse and root (CI=true makes this a failure)", err)
	}
	t.Cleanup(func() {
		if err := p.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	return p, backing, mnt
}

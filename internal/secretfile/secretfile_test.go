package secretfile_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatelog/gatelog/internal/secretfile"
)

func TestCheckOwnerOnly(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		perm os.FileMode
		ok   bool
	}{{0o600, true}, {0o400, true}, {0o640, false}, {0o604, false}, {0o644, false}, {0o610, false}} {
		path := filepath.Join(dir, tc.perm.String())
		if err := os.WriteFile(path, []byte("secret"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, tc.perm); err != nil {
			t.Fatal(err)
		}
		err := secretfile.CheckOwnerOnly(path)
		if tc.ok != (err == nil) {
			t.Errorf("%04o: %v", tc.perm, err)
		}
		if err != nil && !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("%04o: %v does not say how to fix it", tc.perm, err)
		}
	}
	if err := secretfile.CheckOwnerOnly(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want fs.ErrNotExist", err)
	}
}

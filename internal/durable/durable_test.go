package durable_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/gatelog/gatelog/internal/durable"
)

func TestWriteFileReplacesWholeAndLeavesNoTemp(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state")
	for _, want := range []string{"first", "second, longer than the first"} {
		if err := durable.WriteFile(p, []byte(want)); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(p)
		if err != nil || string(got) != want {
			t.Fatalf("read %q, %v; want %q", got, err, want)
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("directory holds %d entries, want only the file", len(ents))
	}
	if err := durable.WriteFile(filepath.Join(dir, "missing", "x"), []byte("x")); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
}

func ExampleWriteFile() {
	dir, _ := os.MkdirTemp("", "durable")
	defer os.RemoveAll(dir)
	p := filepath.Join(dir, "queue-item")
	if err := durable.WriteFile(p, []byte(`{"id":"a1"}`)); err != nil {
		panic(err)
	}
	b, _ := os.ReadFile(p)
	fmt.Println(string(b))
	// Output: {"id":"a1"}
}

// TestWriteFilesReportsPerFile writes a batch where one file's directory
// is missing: the others are written, that one alone fails, and no
// temporary file is left behind.
func TestWriteFilesReportsPerFile(t *testing.T) {
	dir := t.TempDir()
	var files []durable.File
	const n = 40 // more than are written at once
	for i := range n {
		files = append(files, durable.File{Path: filepath.Join(dir, fmt.Sprintf("f%d", i)), Data: fmt.Appendf(nil, "content %d", i)})
	}
	files = append(files, durable.File{Path: filepath.Join(dir, "missing", "f"), Data: []byte("x")})
	errs := durable.WriteFiles(files)
	if len(errs) != len(files) {
		t.Fatalf("%d errors for %d files", len(errs), len(files))
	}
	for i, f := range files[:n] {
		if errs[i] != nil {
			t.Errorf("%s: %v", f.Path, errs[i])
		}
		if got, err := os.ReadFile(f.Path); err != nil || string(got) != string(f.Data) {
			t.Errorf("%s holds %q, %v; want %q", f.Path, got, err, f.Data)
		}
	}
	if errs[n] == nil {
		t.Error("the file in a missing directory was reported written")
	}
	if tmps, _ := filepath.Glob(filepath.Join(dir, ".tmp-*")); len(tmps) > 0 {
		t.Errorf("temporary files left: %v", tmps)
	}
}

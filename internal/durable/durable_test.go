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

package archive_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/darc-dev/darc/archive"
)

// TestOpenStream reads every fixture from a plain io.Reader (not a file), compressed or not.
func TestOpenStream(t *testing.T) {
	for _, f := range loadExpected(t) {
		t.Run(f.File, func(t *testing.T) {
			in, err := os.Open(filepath.Join(fixtureDir, f.File))
			if err != nil {
				t.Fatal(err)
			}
			defer in.Close()
			dir := t.TempDir()
			a, err := archive.OpenStream(struct{ *os.File }{in}, archive.WithTempDir(dir))
			if err != nil {
				t.Fatal(err)
			}
			if got := len(a.Images()); got != len(f.Images) {
				t.Errorf("got %d images, want %d", got, len(f.Images))
			}
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			if err := a.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			if left, _ := os.ReadDir(dir); len(left) != 0 {
				t.Errorf("temp dir holds %d entries after Close", len(left))
			}
		})
	}
}

// TestSpoolHonoursTMPDIR shows a compressed input is spooled in TMPDIR (or WithTempDir): with
// the directory missing, opening fails while creating the spool file; with it present,
// opening works and leaves nothing behind.
func TestSpoolHonoursTMPDIR(t *testing.T) {
	path := filepath.Join(fixtureDir, "podman-save-m.tar.zst")
	missing := filepath.Join(t.TempDir(), "missing")
	t.Setenv("TMPDIR", missing)
	if _, err := archive.Open(path); err == nil || !strings.Contains(err.Error(), "spool") || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("with TMPDIR missing: got %v, want a spool-file error", err)
	}
	if _, err := archive.Open(path, archive.WithTempDir(missing)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("with WithTempDir missing: got %v, want os.ErrNotExist", err)
	}
	dir := t.TempDir()
	t.Setenv("TMPDIR", dir)
	a, err := archive.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("spool file is visible in TMPDIR: %d entries", len(left))
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestUncompressedFileReadInPlace: an uncompressed regular file is not spooled, so a missing
// temp dir does not matter.
func TestUncompressedFileReadInPlace(t *testing.T) {
	t.Setenv("TMPDIR", filepath.Join(t.TempDir(), "missing"))
	a, err := archive.Open(filepath.Join(fixtureDir, "podman-save-m.tar"))
	if err != nil {
		t.Fatalf("opening in place needed the temp dir: %v", err)
	}
	a.Close()
}

// TestSpoolLimit checks the decompression-bomb guard: a compressed archive expanding past the
// limit is ErrTooLarge.
func TestSpoolLimit(t *testing.T) {
	_, err := archive.Open(filepath.Join(fixtureDir, "podman-save-m.tar.gz"), archive.WithMaxSpoolSize(10_000), archive.WithTempDir(t.TempDir()))
	if !errors.Is(err, archive.ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
}

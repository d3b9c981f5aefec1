package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	dcopy "github.com/darc-dev/darc/copy"
)

// TestSourceHints: a source given without its transport is refused as a source, with the
// reference the user likely meant; cp refuses an existing archive before copying anything.
func TestSourceHints(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "existing.tar")
	if err := os.WriteFile(existing, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	archiveSrc := "docker-archive:" + fixture("podman-save-m.tar") + ":@0"
	for _, tc := range []struct {
		name     string
		args     []string
		wantIs   error // nil: no sentinel to check
		wantText string
	}{
		{"an image name", []string{"cp", "busybox:latest", "oci:" + dir + "/l:x"}, dcopy.ErrInvalidSource, "(did you mean docker://busybox:latest?)"},
		{"a file", []string{"cp", fixture("podman-save-m.tar"), "oci:" + dir + "/l:x"}, dcopy.ErrInvalidSource, "(did you mean docker-archive:" + fixture("podman-save-m.tar") + "?)"},
		{"save of a name", []string{"save", "-o", filepath.Join(dir, "s.tar"), "busybox"}, dcopy.ErrInvalidSource, "(did you mean docker://busybox?)"},
		{"nothing to suggest", []string{"cp", "::", "oci:" + dir + "/l:x"}, dcopy.ErrInvalidSource, "unknown transport"},
		{"cp onto an existing archive", []string{"cp", archiveSrc, "docker-archive:" + existing}, nil, existing + " already exists; cp writes a new archive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := run(t, tc.args...)
			if err == nil {
				t.Fatal("no error")
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("%v, want %v", err, tc.wantIs)
			}
			if !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("%q lacks %q", err, tc.wantText)
			}
			if strings.Contains(err.Error(), "did you mean") && tc.wantText == "unknown transport" {
				t.Errorf("%q suggests a reference for an argument that is none", err)
			}
		})
	}
	if b, err := os.ReadFile(existing); err != nil || string(b) != "x" {
		t.Errorf("the existing archive was changed: %q, %v", b, err)
	}
}

package archive_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/types"

	"github.com/darc-dev/darc/archive"
	"github.com/darc-dev/darc/internal/archivetest"
	"github.com/darc-dev/darc/internal/testtools"
)

// TestWriteENOSPCTmpfs writes an archive of about 1.6 MiB into a real 1 MiB tmpfs: the copy
// that does not fit fails with ENOSPC, and after Close the directory holds no temp file and
// either no target or the previous file, byte for byte; or, committed after the failure,
// the images that fit. It needs root to mount the tmpfs.
func TestWriteENOSPCTmpfs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a 1 MiB tmpfs: %v: %s", err, bytes.TrimSpace(out))
	}
	// Registered after TempDir, so it runs before the directory is removed.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, bytes.TrimSpace(out))
		}
	})

	// Four images of one 400 KiB layer each: the first two fit, the third does not.
	var images []archivetest.Image
	for i := range 4 {
		images = append(images, archivetest.Image{
			Tags:   []string{fmt.Sprintf("example.com/full/%d:1", i)},
			Layers: [][]byte{archivetest.Layer(int64(200+i), 1, 400<<10)},
		})
	}
	src := filepath.Join(t.TempDir(), "src.tar")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := archivetest.Build(f, images, archivetest.Options{}); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := archive.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	previous, err := os.ReadFile(filepath.Join(fixtureDir, "skopeo-copy.tar"))
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name         string
		withPrevious bool
		// commit: Commit after the failure. The failed layer was cut back off the temp
		// file, which frees its space, so the images that fit are committed.
		commit bool
	}{
		{"no previous file", false, false},
		{"previous file, overwrite", true, false},
		{"no previous file, Commit after the failure", false, true},
	} {
		withPrevious := tc.withPrevious
		t.Run(tc.name, func(t *testing.T) {
			dir, err := os.MkdirTemp(mnt, "case")
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(dir)
			target := filepath.Join(dir, "out.tar")
			if withPrevious {
				if err := os.WriteFile(target, previous, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			w, err := archive.Create(target, archive.WithOverwrite(withPrevious))
			if err != nil {
				t.Fatal(err)
			}
			sys := &types.SystemContext{BlobInfoCacheDir: t.TempDir()}
			var copyErr error
			copied := 0
			for i, info := range r.Images() {
				dst, err := w.NewReference(info.Tags...)
				if err != nil {
					t.Fatal(err)
				}
				if _, copyErr = copy.Image(context.Background(), policyContext(t), dst, r.References()[i], &copy.Options{SourceCtx: sys, DestinationCtx: sys}); copyErr != nil {
					break
				}
				copied++
			}
			switch {
			case copyErr == nil:
				t.Fatalf("all %d images (%d bytes) fit on a 1 MiB tmpfs", copied, w.Stats().Written)
			case !errors.Is(copyErr, syscall.ENOSPC):
				t.Errorf("copy of image %d: got %v, want ENOSPC", copied, copyErr)
			case !strings.Contains(copyErr.Error(), "no space left on device"):
				t.Errorf("copy of image %d: %q does not say the disk is full", copied, copyErr)
			}
			t.Logf("copy of image %d failed, after %d images (%d bytes): %v", copied, copied, w.Stats().Written, copyErr)
			if copied == 0 {
				t.Errorf("no image fit: the failure did not happen in the middle of the archive")
			}
			if tc.commit {
				if err := w.Commit(); err != nil {
					t.Fatalf("Commit after the failure: %v", err)
				}
				if got := wtReadBack(t, target); len(got) != copied {
					t.Errorf("committed archive holds %v, want the %d images that fit", got, copied)
				}
				if names := testtools.DirNames(t, dir); len(names) != 1 || names[0] != "out.tar" {
					t.Errorf("after Commit the directory holds %q, want only out.tar", names)
				}
				return
			}
			if err := w.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if err := w.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
			names := testtools.DirNames(t, dir)
			if !withPrevious {
				if len(names) != 0 {
					t.Errorf("after Close the directory holds %q, want nothing", names)
				}
				return
			}
			if len(names) != 1 || names[0] != "out.tar" {
				t.Errorf("after Close the directory holds %q, want only out.tar", names)
			}
			if got, err := os.ReadFile(target); err != nil || !bytes.Equal(got, previous) {
				t.Errorf("the previous file changed (%d bytes, want %d; %v)", len(got), len(previous), err)
			}
		})
	}
}

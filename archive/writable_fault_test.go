package archive

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"

	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"

	"github.com/darc-dev/darc/internal/testtools"
)

// These tests inject output failures through withOutputWrapper, which only this package
// can set.

// fullDisk is an output file on a disk with room for limit bytes: writes beyond it fail with
// ENOSPC, and truncating frees space again. It keeps the *os.File's WriteAt, Seek and
// Truncate, so the archive treats it as seekable.
type fullDisk struct {
	*os.File
	mu    sync.Mutex
	limit int64
	size  int64
	fails int
}

func (f *fullDisk) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	room := f.limit - f.size
	if int64(len(p)) <= room {
		n, err := f.File.Write(p)
		f.size += int64(n)
		return n, err
	}
	f.fails++
	n := 0
	if room > 0 {
		n, _ = f.File.Write(p[:room])
		f.size += int64(n)
	}
	return n, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
}

func (f *fullDisk) Truncate(size int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.size = size
	return f.File.Truncate(size)
}

func (f *fullDisk) setLimit(n int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.limit = n
}

// brokenPipe is a stream that fails after limit bytes.
type brokenPipe struct {
	limit int64
	n     int64
}

func (p *brokenPipe) Write(b []byte) (int, error) {
	if p.n+int64(len(b)) > p.limit {
		return 0, syscall.EPIPE
	}
	p.n += int64(len(b))
	return len(b), nil
}

func faultPolicy(t *testing.T) *signature.PolicyContext {
	t.Helper()
	pc, err := signature.NewPolicyContext(&signature.Policy{Default: []signature.PolicyRequirement{signature.NewPRInsecureAcceptAnything()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Destroy() })
	return pc
}

// faultSources are A, B and C from podman's archive. A's layers are 3584 and 4608 bytes,
// B adds a 4608-byte layer, C a 4608-byte layer.
func faultSources(t *testing.T) []types.ImageReference {
	t.Helper()
	a, err := Open(filepath.Join("..", "testdata", "archives", "podman-save-m.tar"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return a.References()
}

func faultCopy(ctx context.Context, t *testing.T, a *WritableArchive, src types.ImageReference) error {
	t.Helper()
	dst, err := a.NewReference()
	if err != nil {
		return err
	}
	_, err = copy.Image(ctx, faultPolicy(t), dst, src, &copy.Options{DestinationCtx: &types.SystemContext{BlobInfoCacheDir: t.TempDir()}})
	return err
}

// TestWriteDiskFull fills the disk at several points. A full disk while a blob is written is
// cut back and leaves the archive usable; a full disk while Commit writes the metadata fails
// the archive; either way nothing is left at the path, or in its directory, after Close.
func TestWriteDiskFull(t *testing.T) {
	srcs := faultSources(t)
	ctx := context.Background()
	tests := []struct {
		name  string
		limit int64 // room on the disk
		// freeAfterFailure makes room again after B's copy failed.
		freeAfterFailure bool
		wantCommit       bool
		wantImages       int
	}{
		// A fits (about 9 KiB); B's new layer does not. After room is made, A and C commit.
		{"blob, then room again", 11 << 10, true, true, 2},
		// The same, but the disk stays full: Commit fails.
		{"blob, disk stays full", 11 << 10, false, false, 0},
		// Everything fits but manifest.json: Commit fails.
		{"metadata", 20 << 10, false, false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "out.tar")
			var disk *fullDisk
			a, err := Create(path, withOutputWrapper(func(w io.Writer) io.Writer {
				disk = &fullDisk{File: w.(*os.File), limit: tc.limit}
				return disk
			}))
			if err != nil {
				t.Fatal(err)
			}
			if err := faultCopy(ctx, t, a, srcs[0]); err != nil {
				t.Fatalf("copy A: %v", err)
			}
			err = faultCopy(ctx, t, a, srcs[1])
			switch {
			case tc.name == "metadata" && err != nil:
				t.Fatalf("copy B: %v", err)
			case tc.name != "metadata" && !errors.Is(err, syscall.ENOSPC):
				t.Fatalf("copy B: got %v, want ENOSPC", err)
			}
			if tc.freeAfterFailure {
				disk.setLimit(1 << 30)
			}
			if tc.name != "metadata" {
				if a.tw.Offset() != disk.size {
					t.Errorf("after the failure the tar writer is at %d, the file holds %d bytes", a.tw.Offset(), disk.size)
				}
			}
			if tc.freeAfterFailure {
				if err := faultCopy(ctx, t, a, srcs[2]); err != nil {
					t.Fatalf("copy C after the failure: %v", err)
				}
			}
			err = a.Commit()
			if (err == nil) != tc.wantCommit {
				t.Fatalf("Commit: %v, want success %v", err, tc.wantCommit)
			}
			if err != nil && !errors.Is(err, syscall.ENOSPC) {
				t.Errorf("Commit: got %v, want ENOSPC", err)
			}
			if err := a.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if !tc.wantCommit {
				if got := testtools.DirNames(t, dir); len(got) != 0 {
					t.Errorf("left behind: %q", got)
				}
				return
			}
			if got := testtools.DirNames(t, dir); !slices.Equal(got, []string{"out.tar"}) {
				t.Errorf("directory holds %q", got)
			}
			r, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if n := len(r.Images()); n != tc.wantImages {
				t.Errorf("%d images, want %d", n, tc.wantImages)
			}
			for _, p := range r.Verify(ctx, 1) {
				if !p.Warning {
					t.Errorf("verify: %v", p)
				}
			}
		})
	}
}

// TestWriteBrokenStream: a failed write to a stream cannot be undone, so it is sticky.
func TestWriteBrokenStream(t *testing.T) {
	srcs := faultSources(t)
	ctx := context.Background()
	a, err := NewWriter(&brokenPipe{limit: 6000})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := faultCopy(ctx, t, a, srcs[0]); !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("copy: got %v, want EPIPE", err)
	}
	if _, err := a.NewReference(); !errors.Is(err, syscall.EPIPE) {
		t.Errorf("NewReference after the failure: got %v, want the sticky EPIPE", err)
	}
	if err := a.Commit(); !errors.Is(err, syscall.EPIPE) {
		t.Errorf("Commit after the failure: got %v, want the sticky EPIPE", err)
	}
}

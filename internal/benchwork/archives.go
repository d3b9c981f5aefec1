//go:build linux

package benchwork

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	distref "github.com/distribution/reference"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	ocilayout "go.podman.io/image/v5/oci/layout"
	"go.podman.io/image/v5/types"

	"github.com/darc-dev/darc/archive"
	dcopy "github.com/darc-dev/darc/copy"
	"github.com/darc-dev/darc/internal/tarfile"
	"github.com/darc-dev/darc/reference"
)

// Archives made from the layout, cached beside it. Each is written by darc's own Save (or
// compressed from such an archive) and appears under its name only when complete.
const (
	// DockerArchiveName is all 12 images in LayoutDocker: uncompressed layers, about 1.2 GB.
	DockerArchiveName = "docker.tar"
	// ZstdArchiveName is DockerArchiveName compressed with zstd (default level).
	ZstdArchiveName = "docker.tar.zst"
	// BundleArchiveName is DockerArchiveName compressed as darc's seekable zstd bundle
	// (tarfile.NewCompressor, default level): the same tar bytes, frames cut where members
	// start, a header view and a seek table at the end. The name changes with the bundle
	// writer's output (v2: a large member's first frame is short), so that a cached file
	// is never an older writer's.
	BundleArchiveName = "docker.bundle-v2.tar.zst"
	// PartAName and PartBName are images 0-5 and 6-11 in LayoutDocker, both holding the
	// shared base layers: the inputs of the merge benchmarks.
	PartAName = "part-a.tar"
	PartBName = "part-b.tar"
)

// SourceRef is the oci: reference to image i of the layout.
func (w *Workload) SourceRef(i int) (types.ImageReference, error) {
	return ocilayout.NewReference(w.Layout, w.Images[i].Ref)
}

// Tag is image i's tag in archives, normalized.
func (w *Workload) Tag(i int) (distref.NamedTagged, error) {
	return reference.NormalizeTag(w.Images[i].Tag)
}

// DockerArchive returns the path of the 12-image docker-archive, making it if needed.
func (w *Workload) DockerArchive(ctx context.Context) (string, error) {
	return w.derived(ctx, DockerArchiveName, func(path string) error { return w.save(ctx, path, 0, len(w.Images)) })
}

// ZstdArchive returns the path of the zstd-compressed 12-image docker-archive.
func (w *Workload) ZstdArchive(ctx context.Context) (string, error) {
	src, err := w.DockerArchive(ctx)
	if err != nil {
		return "", err
	}
	return w.derived(ctx, ZstdArchiveName, func(path string) error { return compressZstd(src, path) })
}

// BundleArchive returns the path of the 12-image docker-archive as a seekable zstd bundle.
func (w *Workload) BundleArchive(ctx context.Context) (string, error) {
	src, err := w.DockerArchive(ctx)
	if err != nil {
		return "", err
	}
	return w.derived(ctx, BundleArchiveName, func(path string) error { return compressBundle(src, path) })
}

// MergeInputs returns the paths of the two archives the merge benchmarks combine.
func (w *Workload) MergeInputs(ctx context.Context) (string, string, error) {
	half := len(w.Images) / 2
	a, err := w.derived(ctx, PartAName, func(path string) error { return w.save(ctx, path, 0, half) })
	if err != nil {
		return "", "", err
	}
	b, err := w.derived(ctx, PartBName, func(path string) error { return w.save(ctx, path, half, len(w.Images)) })
	return a, b, err
}

// derived returns dir/name, calling build(path) under the cache lock when it does not exist.
// build must create path only once it is complete.
func (w *Workload) derived(ctx context.Context, name string, build func(path string) error) (string, error) {
	path := filepath.Join(w.Dir, name)
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	unlock, err := lock(w.Dir)
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := os.Stat(path); err == nil {
		return path, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	if err := build(path); err != nil {
		return "", fmt.Errorf("benchwork: making %s: %w", name, err)
	}
	return path, nil
}

// save writes images [from, to) of the layout to a docker-archive at path with darc's Save.
func (w *Workload) save(ctx context.Context, path string, from, to int) error {
	cacheDir, err := os.MkdirTemp(w.Dir, "bic-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(cacheDir)
	a, err := archive.Create(path, archive.WithLayout(archive.LayoutDocker))
	if err != nil {
		return err
	}
	defer a.Close()
	var sources []dcopy.Source
	for i := from; i < to; i++ {
		ref, err := w.SourceRef(i)
		if err != nil {
			return err
		}
		tag, err := w.Tag(i)
		if err != nil {
			return err
		}
		sources = append(sources, dcopy.Source{Ref: ref, Tags: []distref.NamedTagged{tag}})
	}
	sys := &types.SystemContext{BlobInfoCacheDir: cacheDir}
	if _, err := dcopy.Save(ctx, a, sources, dcopy.WithSystemContext(sys)); err != nil {
		return err
	}
	return a.Commit()
}

// compressZstd writes src compressed as one plain zstd stream to dst.
func compressZstd(src, dst string) error {
	return compressFile(src, dst, func(w io.Writer) (io.WriteCloser, error) {
		return zstd.NewWriter(w, zstd.WithEncoderConcurrency(runtime.NumCPU()))
	})
}

// compressBundle writes src through tarfile's seekable zstd compressor to dst.
func compressBundle(src, dst string) error {
	return compressFile(src, dst, func(w io.Writer) (io.WriteCloser, error) {
		return tarfile.NewCompressor(w, tarfile.Zstd, tarfile.CompressOptions{})
	})
}

// compressFile writes src through the compressor newWriter makes to dst, by way of a temp
// file renamed into place once complete.
func compressFile(src, dst string, newWriter func(io.Writer) (io.WriteCloser, error)) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.CreateTemp(filepath.Dir(dst), ".tmp-"+filepath.Base(dst)+"-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = out.Close()
			_ = os.Remove(out.Name())
		}
	}()
	bw := bufio.NewWriterSize(out, 1<<20)
	zw, err := newWriter(bw)
	if err != nil {
		return err
	}
	if _, err := io.Copy(zw, bufio.NewReaderSize(in, 1<<20)); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(out.Name(), dst)
}

// DiffIDs are the diffIDs of image i's layers, base first.
func (w *Workload) DiffIDs(i int) []digest.Digest {
	var out []digest.Digest
	for _, d := range w.Images[i].Layers {
		for _, l := range w.Layers {
			if l.Digest == d {
				out = append(out, l.DiffID)
			}
		}
	}
	return out
}

// CheckArchive opens the docker-archive at path with darc and checks that it holds the
// workload's images in order, each with its one tag and its config.
func (w *Workload) CheckArchive(path string) error {
	a, err := archive.Open(path)
	if err != nil {
		return err
	}
	defer a.Close()
	imgs := a.Images()
	if len(imgs) != len(w.Images) {
		return fmt.Errorf("%d images, want %d", len(imgs), len(w.Images))
	}
	for i, img := range imgs {
		want := w.Images[i]
		if len(img.Tags) != 1 || img.Tags[0].String() != want.Tag || img.ID != want.Config {
			return fmt.Errorf("image @%d: tags %v ID %s, want %s %s", i, img.Tags, img.ID, want.Tag, want.Config)
		}
	}
	return nil
}

// SyncFile fsyncs the file at path, as darc's Commit does its output: a peer's output is
// synced too before its time is taken.
func SyncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

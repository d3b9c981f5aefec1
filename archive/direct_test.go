package archive_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	digest "github.com/opencontainers/go-digest"
	"github.com/ulikunitz/xz"
	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/oci/layout"
	"go.podman.io/image/v5/types"

	"github.com/darc-dev/darc/archive"
	"github.com/darc-dev/darc/internal/archivetest"
)

// directSources lists the archives TestCopyFromMatchesCopyImage copies: every generated
// layout variant and every real-tool fixture.
func directSources(t *testing.T) map[string]string {
	t.Helper()
	srcs := map[string]string{}
	for _, v := range archivetest.Variants() {
		data, err := archivetest.BuildBytes(archivetest.SharedImages(), v.Opts)
		if err != nil {
			t.Fatalf("%s: %v", v.Name, err)
		}
		srcs["generated "+v.Name] = writeTemp(t, data)
	}
	for _, f := range loadExpected(t) {
		srcs[f.File] = filepath.Join(fixtureDir, f.File)
	}
	return srcs
}

// directCopy records what a copy paired by CopyFrom read: through the source's GetBlob (what
// copy.Image reads itself) and straight from the archive (what the destination copied).
type directCopy struct {
	viaGetBlob atomic.Int64
	mu         sync.Mutex
	direct     map[digest.Digest]int64 // bytes read straight from the archive, by blob
}

func (c *directCopy) directBytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int64
	for _, v := range c.direct {
		n += v
	}
	return n
}

// copyInto copies the archive image ref into w with copy.Image, with its own tags; paired,
// the destination is paired with ref by CopyFrom. It returns what was read.
func copyInto(t *testing.T, ctx context.Context, w *archive.WritableArchive, ref types.ImageReference, paired bool) (*directCopy, error) {
	t.Helper()
	tags, err := archive.ImageTags(ref)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := w.NewReference(tags...)
	if err != nil {
		t.Fatal(err)
	}
	c := &directCopy{direct: map[digest.Digest]int64{}}
	if paired {
		dst, err = archive.CopyFrom(dst, ref, archive.WithCopyProgress(func(d digest.Digest, done, size int64) {
			if size >= 0 && done > size {
				t.Errorf("blob %s: progress %d of %d", d, done, size)
			}
			c.mu.Lock()
			c.direct[d] = done
			c.mu.Unlock()
		}))
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err = copy.Image(ctx, policyContext(t), dst, countingRef{ImageReference: ref, n: &c.viaGetBlob}, nil)
	return c, err
}

// writeAll writes every image of src into a new archive at out, paired or not, and returns
// what each copy read.
func writeAll(t *testing.T, src *archive.ReadableArchive, out string, paired bool, opts ...archive.CreateOption) []*directCopy {
	t.Helper()
	w, err := archive.Create(out, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var reads []*directCopy
	for _, ref := range src.References() {
		c, err := copyInto(t, context.Background(), w, ref, paired)
		if err != nil {
			t.Fatalf("copy.Image %s: %v", ref.StringWithinTransport(), err)
		}
		reads = append(reads, c)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	return reads
}

// TestCopyFromMatchesCopyImage copies every image of every layout and fixture twice with
// copy.Image, once plain and once with the destination paired with its source: the two
// archives must be byte for byte the same, in the docker layout (with and without legacy
// directories) and the oci layout, and the paired copy must verify. Paired, copy.Image reads
// no layer through the source (only the config), except xz and bzip2 members bound for the
// oci layout, which the destination leaves to it.
func TestCopyFromMatchesCopyImage(t *testing.T) {
	for name, path := range directSources(t) {
		t.Run(name, func(t *testing.T) {
			src, err := archive.Open(path, archive.WithTempDir(t.TempDir()))
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			for k, opts := range [][]archive.CreateOption{nil, {archive.WithLegacyDirs(true)}, {archive.WithLayout(archive.LayoutOCI)}} {
				label := []string{"docker", "docker with legacy dirs", "oci"}[k]
				dir := t.TempDir()
				plain, paired := filepath.Join(dir, "plain.tar"), filepath.Join(dir, "paired.tar")
				writeAll(t, src, plain, false, opts...)
				reads := writeAll(t, src, paired, true, opts...)
				a, b := wtReadFile(t, plain), wtReadFile(t, paired)
				if !bytes.Equal(a, b) {
					t.Fatalf("%s: paired copy wrote %d bytes, plain copy.Image %d: not the same archive", label, len(b), len(a))
				}
				for i := range src.Images() {
					d, err := src.Inspect(mustIndex(t, i))
					if err != nil {
						t.Fatal(err)
					}
					slow := k == 2 && servedDecompressed(d)
					if got := reads[i].viaGetBlob.Load(); !slow && got != int64(len(d.Config)) {
						t.Errorf("%s: @%d: copy.Image read %d bytes through the source, want only the %d of the config", label, i, got, len(d.Config))
					}
				}
				out, err := archive.Open(paired)
				if err != nil {
					t.Fatal(err)
				}
				if probs := out.Verify(context.Background(), 2); len(probs) > 0 {
					t.Errorf("%s: the paired copy does not verify: %v", label, probs)
				}
				_ = out.Close()
			}
		})
	}
}

// damagedLayer is archivetest.SharedImages in the containers/image layout, and a copy with
// one byte changed in the middle of the third image's own layer (1.2 MB), the only member
// holding that run of bytes.
func damagedLayer(t *testing.T) (good, damaged []byte) {
	t.Helper()
	images := archivetest.SharedImages()
	good, err := archivetest.BuildBytes(images, archivetest.Options{Layout: archivetest.ContainersImage})
	if err != nil {
		t.Fatal(err)
	}
	own := images[2].Layers[1]
	at := bytes.Index(good, own)
	if at < 0 || bytes.Index(good[at+1:], own) >= 0 {
		t.Fatal("the layer is not stored exactly once")
	}
	damaged = bytes.Clone(good)
	damaged[at+len(own)/2] ^= 0xff
	return good, damaged
}

// servedDecompressed reports whether an image has xz or bzip2 layer members, which the
// archive serves decompressed under their diffID.
func servedDecompressed(d *archive.ImageDetails) bool {
	for _, l := range d.Layers {
		if l.Compression == "xz" || l.Compression == "bzip2" {
			return true
		}
	}
	return false
}

// countingRef counts the bytes the image sources it opens serve.
type countingRef struct {
	types.ImageReference
	n *atomic.Int64
}

func (c countingRef) NewImageSource(ctx context.Context, sys *types.SystemContext) (types.ImageSource, error) {
	src, err := c.ImageReference.NewImageSource(ctx, sys)
	if err != nil {
		return nil, err
	}
	return countingSource{ImageSource: src, n: c.n}, nil
}

type countingSource struct {
	types.ImageSource
	n *atomic.Int64
}

func (s countingSource) GetBlob(ctx context.Context, info types.BlobInfo, cache types.BlobInfoCache) (io.ReadCloser, int64, error) {
	rc, size, err := s.ImageSource.GetBlob(ctx, info, cache)
	if err != nil {
		return nil, 0, err
	}
	return countingReader{ReadCloser: rc, n: s.n}, size, nil
}

type countingReader struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// TestCopyFromDamagedLayer copies an image whose layer has one byte changed: the paired copy
// fails with ErrDigestMismatch and nothing of that layer stays in the archive, which, with a
// good image added after, is byte for byte what writing the good image alone gives.
func TestCopyFromDamagedLayer(t *testing.T) {
	data, damaged := damagedLayer(t)
	src, err := archive.Open(writeTemp(t, damaged))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	good, err := archive.Open(writeTemp(t, data))
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()

	dir := t.TempDir()
	write := func(path string, withDamaged bool, l archive.Layout) {
		w, err := archive.Create(path, archive.WithLayout(l))
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		if withDamaged {
			c, err := copyInto(t, context.Background(), w, src.References()[2], true)
			if !errors.Is(err, archive.ErrDigestMismatch) {
				t.Fatalf("copy of the damaged image: %v, want ErrDigestMismatch", err)
			}
			// The destination found the damage itself, copying straight from the archive:
			// copy.Image read nothing but the config through the source.
			d, err := src.Inspect(mustIndex(t, 2))
			if err != nil {
				t.Fatal(err)
			}
			if c.directBytes() == 0 || c.viaGetBlob.Load() > int64(len(d.Config)) {
				t.Errorf("damaged layer: %d bytes read straight from the archive, %d through the source", c.directBytes(), c.viaGetBlob.Load())
			}
		}
		if _, err := copyInto(t, context.Background(), w, good.References()[0], true); err != nil {
			t.Fatal(err)
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range []archive.Layout{archive.LayoutDocker, archive.LayoutOCI} {
		after, alone := filepath.Join(dir, string(l)+"-after.tar"), filepath.Join(dir, string(l)+"-alone.tar")
		write(after, true, l)
		write(alone, false, l)
		if !bytes.Equal(wtReadFile(t, after), wtReadFile(t, alone)) {
			t.Errorf("layout %s: the failed image left something in the archive", l)
		}
	}
}

// TestCopyFromSharedLayersReadOnce copies images that share layers: a layer the archive
// already holds is neither read nor written again, and each new one is read once.
func TestCopyFromSharedLayersReadOnce(t *testing.T) {
	src := openGenerated(t, archivetest.Docker24)
	w, err := archive.Create(filepath.Join(t.TempDir(), "out.tar"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	seen := map[string]bool{}
	for i, info := range src.Images() {
		var want int64
		for _, l := range info.Layers {
			if !seen[l.Member] {
				want += l.Size
			}
			seen[l.Member] = true
		}
		c, err := copyInto(t, context.Background(), w, src.References()[i], true)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.directBytes(); got != want {
			t.Errorf("@%d: read %d layer bytes, want %d (the layers not copied before)", i, got, want)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

// TestCopyFromRefuses covers what CopyFrom does not pair (a destination of another transport,
// a source whose archive is not open), a cancelled copy (nothing is left in the archive), and
// xz members bound for the oci layout, which the destination leaves to copy.Image.
func TestCopyFromRefuses(t *testing.T) {
	src := openGenerated(t, archivetest.ContainersImage)
	dir := t.TempDir()
	w, err := archive.Create(filepath.Join(dir, "out.tar"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	dst, err := w.NewReference()
	if err != nil {
		t.Fatal(err)
	}
	ociRef, err := layout.NewReference(filepath.Join(dir, "oci"), "x")
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := archive.ParseReference("docker-archive:" + filepath.Join(dir, "some.tar"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		dst, src types.ImageReference
	}{
		{"destination of another transport", ociRef, src.References()[0]},
		{"source parsed from a string", dst, parsed},
		{"source of another transport", dst, ociRef},
	} {
		if _, err := archive.CopyFrom(tc.dst, tc.src); !errors.Is(err, archive.ErrCannotPair) {
			t.Errorf("%s: %v, want ErrCannotPair", tc.name, err)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := copyInto(t, ctx, w, src.References()[1], true); !errors.Is(err, context.Canceled) {
		t.Errorf("copy with a cancelled context: %v, want context.Canceled", err)
	}
	if err := w.Commit(); !errors.Is(err, archive.ErrNoImages) {
		t.Errorf("Commit after the cancelled image: %v, want ErrNoImages", err)
	}

	// xz members: the oci layout stores them as the source serves them, decompressed,
	// through copy.Image; the docker layout decompresses them itself.
	xzSrc, err := archive.Open(writeTemp(t, xzArchive(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer xzSrc.Close()
	for _, l := range []archive.Layout{archive.LayoutOCI, archive.LayoutDocker} {
		w, err := archive.Create(filepath.Join(dir, "xz-"+string(l)+".tar"), archive.WithLayout(l))
		if err != nil {
			t.Fatal(err)
		}
		c, err := copyInto(t, context.Background(), w, xzSrc.References()[0], true)
		if err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		if direct := c.directBytes(); (direct > 0) != (l == archive.LayoutDocker) {
			t.Errorf("%s: %d bytes read straight from the archive", l, direct)
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
		_ = w.Close()
	}
}

// xzArchive is a one-image archive whose layer member is xz-compressed.
func xzArchive(t *testing.T) []byte {
	t.Helper()
	layer := archivetest.Layer(5, 1, 300)
	var xzLayer bytes.Buffer
	xw, err := xz.NewWriter(&xzLayer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := xw.Write(layer); err != nil {
		t.Fatal(err)
	}
	if err := xw.Close(); err != nil {
		t.Fatal(err)
	}
	config := archivetest.GenerateConfig([]digest.Digest{digest.FromBytes(layer)})
	configName := digest.FromBytes(config).Encoded() + ".json"
	return archivetest.Tar([]archivetest.Entry{
		{Name: "layer.tar", Body: xzLayer.Bytes()},
		{Name: configName, Body: config},
		{Name: "manifest.json", Body: archivetest.ManifestJSON([]archivetest.ManifestItem{{Config: configName, RepoTags: []string{"x.example/xz:1"}, Layers: []string{"layer.tar"}}})},
	})
}

// openGenerated opens archivetest.SharedImages written in layout l; the test closes it.
func openGenerated(t *testing.T, l archivetest.Layout) *archive.ReadableArchive {
	t.Helper()
	data, err := archivetest.BuildBytes(archivetest.SharedImages(), archivetest.Options{Layout: l})
	if err != nil {
		t.Fatal(err)
	}
	a, err := archive.Open(writeTemp(t, data))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return a
}

package archive_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"

	digest "github.com/opencontainers/go-digest"
	"github.com/ulikunitz/xz"
	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/types"

	"github.com/darc-dev/darc/archive"
	"github.com/darc-dev/darc/internal/archivetest"
	"github.com/darc-dev/darc/reference"
)

// addSources lists the archives TestAddImageMatchesCopyImage copies: every generated layout
// variant and every real-tool fixture.
func addSources(t *testing.T) map[string]string {
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

// writeWithCopyImage writes every image of src into a new archive at out through
// containers/image's copy.Image, each with its own tags.
func writeWithCopyImage(t *testing.T, src *archive.ReadableArchive, out string, opts ...archive.CreateOption) {
	t.Helper()
	w, err := archive.Create(out, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for _, ref := range src.References() {
		copyImageInto(t, w, ref)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

// copyImageInto copies the archive image ref into w with copy.Image, with its own tags.
func copyImageInto(t *testing.T, w *archive.WritableArchive, ref types.ImageReference) {
	t.Helper()
	tags, err := archive.ImageTags(ref)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := w.NewReference(tags...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := copy.Image(context.Background(), policyContext(t), dst, ref, nil); err != nil {
		t.Fatalf("copy.Image %s: %v", ref.StringWithinTransport(), err)
	}
}

// writeWithAddImage writes every image of src into a new archive at out with AddImage and
// returns what it reported.
func writeWithAddImage(t *testing.T, src *archive.ReadableArchive, out string, opts ...archive.CreateOption) []archive.Added {
	t.Helper()
	w, err := archive.Create(out, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var added []archive.Added
	for i, ref := range src.References() {
		sel, _ := reference.IndexSelector(i)
		a, err := w.AddImage(context.Background(), src, sel, archive.AddOptions{})
		if errors.Is(err, archive.ErrLayoutUnsupported) && w.Layout() == archive.LayoutOCI {
			// xz layer members: AddImage leaves them to copy.Image, as copy.Merge does.
			copyImageInto(t, w, ref)
			added = append(added, archive.Added{})
			continue
		}
		if err != nil {
			t.Fatalf("AddImage @%d: %v", i, err)
		}
		added = append(added, a)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	return added
}

// TestAddImageMatchesCopyImage copies every image of every layout and fixture twice, once
// through copy.Image and once with AddImage: the two archives must be byte for byte the
// same, in the docker layout (with and without legacy directories) and the oci layout. The AddImage copy verifies, and what AddImage
// reports (image ID, manifest digest) is what the new archive serves.
func TestAddImageMatchesCopyImage(t *testing.T) {
	for name, path := range addSources(t) {
		t.Run(name, func(t *testing.T) {
			src, err := archive.Open(path, archive.WithTempDir(t.TempDir()))
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			for k, opts := range [][]archive.CreateOption{nil, {archive.WithLegacyDirs(true)}, {archive.WithLayout(archive.LayoutOCI)}} {
				dir := t.TempDir()
				viaCopy, viaAdd := filepath.Join(dir, "copy.tar"), filepath.Join(dir, "add.tar")
				writeWithCopyImage(t, src, viaCopy, opts...)
				added := writeWithAddImage(t, src, viaAdd, opts...)
				a, b := wtReadFile(t, viaCopy), wtReadFile(t, viaAdd)
				if !bytes.Equal(a, b) {
					t.Fatalf("%s: AddImage wrote %d bytes, copy.Image %d: not the same archive", []string{"docker", "docker with legacy dirs", "oci"}[k], len(b), len(a))
				}
				out, err := archive.Open(viaAdd)
				if err != nil {
					t.Fatal(err)
				}
				if probs := out.Verify(context.Background(), 2); len(probs) > 0 {
					t.Errorf("the AddImage copy does not verify: %v", probs)
				}
				for i, ad := range added {
					if ad.ImageID == "" {
						continue // copied by copy.Image
					}
					if want := src.Images()[i].ID; ad.ImageID != want {
						t.Errorf("@%d: AddImage reports image %s, the source has %s", i, ad.ImageID, want)
					}
					sel, err := reference.IDSelector(ad.ImageID)
					if err != nil {
						t.Fatal(err)
					}
					d, err := out.Inspect(sel)
					if err != nil {
						t.Fatal(err)
					}
					if got := digest.FromBytes(d.Manifest); got != ad.Manifest {
						t.Errorf("@%d: AddImage reports manifest %s, the new archive serves %s", i, ad.Manifest, got)
					}
				}
				_ = out.Close()
			}
		})
	}
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

// TestAddImageDamagedLayer copies an image whose layer has one byte changed: AddImage fails
// with ErrDigestMismatch and nothing of that layer stays in the archive, which, with a good
// image added after, is byte for byte what writing the good image alone gives.
func TestAddImageDamagedLayer(t *testing.T) {
	images := archivetest.SharedImages()
	data, err := archivetest.BuildBytes(images, archivetest.Options{Layout: archivetest.ContainersImage})
	if err != nil {
		t.Fatal(err)
	}
	// The third image's own layer (1.2 MB, stored once) is the only member holding
	// this run of its bytes; change one byte in its middle.
	own := images[2].Layers[1]
	at := bytes.Index(data, own)
	if at < 0 || bytes.Index(data[at+1:], own) >= 0 {
		t.Fatal("the layer is not stored exactly once")
	}
	damaged := bytes.Clone(data)
	damaged[at+len(own)/2] ^= 0xff
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
	write := func(path string, withDamaged bool, layout archive.Layout) {
		w, err := archive.Create(path, archive.WithLayout(layout))
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		if withDamaged {
			sel, _ := reference.IndexSelector(2)
			_, err := w.AddImage(context.Background(), src, sel, archive.AddOptions{})
			if !errors.Is(err, archive.ErrDigestMismatch) {
				t.Fatalf("AddImage of the damaged image: %v, want ErrDigestMismatch", err)
			}
		}
		sel, _ := reference.IndexSelector(0)
		if _, err := w.AddImage(context.Background(), good, sel, archive.AddOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	for _, layout := range []archive.Layout{archive.LayoutDocker, archive.LayoutOCI} {
		after, alone := filepath.Join(dir, string(layout)+"-after.tar"), filepath.Join(dir, string(layout)+"-alone.tar")
		write(after, true, layout)
		write(alone, false, layout)
		if !bytes.Equal(wtReadFile(t, after), wtReadFile(t, alone)) {
			t.Errorf("layout %s: the failed image left something in the archive", layout)
		}
	}
}

// TestAddImageSharedLayersReadOnce adds images that share layers: a layer the archive
// already holds is neither read nor written again, which Added.Bytes shows.
func TestAddImageSharedLayersReadOnce(t *testing.T) {
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
		d, err := src.Inspect(mustIndex(t, i))
		if err != nil {
			t.Fatal(err)
		}
		want += int64(len(d.Config))
		var progressed int64
		ad, err := w.AddImage(context.Background(), src, mustIndex(t, i), archive.AddOptions{
			Progress: func(_ digest.Digest, done, size int64) {
				if done > size {
					t.Errorf("progress %d of %d", done, size)
				}
				progressed = done
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		if ad.Bytes != want {
			t.Errorf("@%d: read %d bytes, want %d (its config and the layers not added before)", i, ad.Bytes, want)
		}
		if progressed == 0 {
			t.Errorf("@%d: no progress reported", i)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

// TestAddImageRefuses covers what AddImage does not do: write an image with xz layer members
// into the oci layout (before writing anything), or go on once its context is cancelled
// (nothing is left in the archive then).
func TestAddImageRefuses(t *testing.T) {
	src := openGenerated(t, archivetest.ContainersImage)
	dir := t.TempDir()

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
	xzArchive := archivetest.Tar([]archivetest.Entry{
		{Name: "layer.tar", Body: xzLayer.Bytes()},
		{Name: configName, Body: config},
		{Name: "manifest.json", Body: archivetest.ManifestJSON([]archivetest.ManifestItem{{Config: configName, RepoTags: []string{"x.example/xz:1"}, Layers: []string{"layer.tar"}}})},
	})
	xzSrc, err := archive.Open(writeTemp(t, xzArchive))
	if err != nil {
		t.Fatal(err)
	}
	defer xzSrc.Close()
	w, err := archive.Create(filepath.Join(dir, "oci.tar"), archive.WithLayout(archive.LayoutOCI))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.AddImage(context.Background(), xzSrc, mustIndex(t, 0), archive.AddOptions{}); !errors.Is(err, archive.ErrLayoutUnsupported) {
		t.Errorf("AddImage of xz layers into the oci layout: %v, want ErrLayoutUnsupported", err)
	}
	// Nothing was started: the next image is written in its turn and the archive commits.
	if _, err := w.AddImage(context.Background(), src, mustIndex(t, 0), archive.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	_ = w.Close()
	// The docker layout decompresses xz members and takes them.
	wd, err := archive.Create(filepath.Join(dir, "docker.tar"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wd.AddImage(context.Background(), xzSrc, mustIndex(t, 0), archive.AddOptions{}); err != nil {
		t.Errorf("AddImage of xz layers into the docker layout: %v", err)
	}
	_ = wd.Close()

	w, err = archive.Create(filepath.Join(dir, "cancelled.tar"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := w.AddImage(ctx, src, mustIndex(t, 1), archive.AddOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("AddImage with a cancelled context: %v, want context.Canceled", err)
	}
	if err := w.Commit(); !errors.Is(err, archive.ErrNoImages) {
		t.Errorf("Commit after the cancelled image: %v, want ErrNoImages", err)
	}
	_ = w.Close()
	if _, err := w.AddImage(context.Background(), src, mustIndex(t, 1), archive.AddOptions{}); !errors.Is(err, archive.ErrClosed) {
		t.Errorf("AddImage after Close: %v, want ErrClosed", err)
	}
}

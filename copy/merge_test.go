package copy_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	digest "github.com/opencontainers/go-digest"
	cicopy "go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"

	"github.com/darc-dev/darc/archive"
	dcopy "github.com/darc-dev/darc/copy"
	"github.com/darc-dev/darc/internal/archivetest"
	"github.com/darc-dev/darc/reference"
)

// mergeImages are two images sharing a base layer; the second's own layer is what
// TestMergeKeepsGoingAfterAFailure damages.
func mergeImages() []archivetest.Image {
	base := archivetest.Layer(11, 2, 4000)
	return []archivetest.Image{
		{Tags: []string{"example.com/m/a:1"}, Layers: [][]byte{base, archivetest.Layer(12, 1, 3000)}},
		{Tags: []string{"example.com/m/b:1", "example.com/m/b:2"}, Layers: [][]byte{base, archivetest.Layer(13, 1, 50_000)}},
	}
}

func openBytes(t *testing.T, data []byte) *archive.ReadableArchive {
	t.Helper()
	p := filepath.Join(t.TempDir(), "in.tar")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := archive.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return a
}

// TestMergeResults merges a real-tool fixture and a generated archive into the docker
// layout: every image arrives with its tags, each Result says what was written (the digests
// are those the merged archive serves), and progress covers every image.
func TestMergeResults(t *testing.T) {
	podman := openFixture(t, "podman-save-m.tar")
	data, err := archivetest.BuildBytes(mergeImages(), archivetest.Options{Layout: archivetest.Docker24})
	if err != nil {
		t.Fatal(err)
	}
	gen := openBytes(t, data)
	out := filepath.Join(t.TempDir(), "merged.tar")
	w, err := archive.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var mu sync.Mutex
	done := map[int]bool{}
	progressed := map[int]bool{}
	results, err := dcopy.Merge(context.Background(), w, []*archive.ReadableArchive{podman, gen}, dcopy.WithProgress(func(e dcopy.Event) {
		mu.Lock()
		defer mu.Unlock()
		switch e.Kind {
		case dcopy.ImageDone:
			done[e.Image] = true
		case dcopy.BlobProgress:
			progressed[e.Image] = true
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	inputs := len(podman.Images()) + len(gen.Images())
	if len(results) != inputs || len(done) != inputs || len(progressed) != inputs {
		t.Fatalf("%d results, %d images done, %d with progress; want %d each", len(results), len(done), len(progressed), inputs)
	}
	merged := commitAndOpen(t, w, out)
	var wantIDs []digest.Digest
	for _, a := range []*archive.ReadableArchive{podman, gen} {
		for _, img := range a.Images() {
			wantIDs = append(wantIDs, img.ID)
		}
	}
	for i, res := range results {
		if res.Index != i || res.ImageID != wantIDs[i] || len(res.Destinations) != 1 || res.Bytes <= 0 {
			t.Errorf("result %d: %+v", i, res)
			continue
		}
		sel, err := reference.IDSelector(res.ImageID)
		if err != nil {
			t.Fatal(err)
		}
		d, err := merged.Inspect(sel)
		if err != nil {
			t.Fatalf("result %d: %v", i, err)
		}
		if got := digest.FromBytes(d.Manifest); got != res.Manifest {
			t.Errorf("result %d: manifest %s, the merged archive serves %s", i, res.Manifest, got)
		}
		var tags []string
		for _, tg := range d.Tags {
			tags = append(tags, tg.String())
		}
		if !slices.Equal(tags, res.Tags) {
			t.Errorf("result %d: tags %q, the merged archive has %q", i, res.Tags, tags)
		}
	}
}

// TestMergeKeepsGoingAfterAFailure merges an archive whose second image has a damaged layer
// between two good inputs: that image fails with ErrDigestMismatch, the error names it, and
// the others are merged.
func TestMergeKeepsGoingAfterAFailure(t *testing.T) {
	images := mergeImages()
	data, err := archivetest.BuildBytes(images, archivetest.Options{Layout: archivetest.ContainersImage})
	if err != nil {
		t.Fatal(err)
	}
	own := images[1].Layers[1]
	at := bytes.Index(data, own)
	if at < 0 {
		t.Fatal("layer not found in the archive")
	}
	damaged := bytes.Clone(data)
	damaged[at+100] ^= 1
	podman := openFixture(t, "podman-save-m.tar")
	out := filepath.Join(t.TempDir(), "merged.tar")
	w, err := archive.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	results, err := dcopy.Merge(context.Background(), w, []*archive.ReadableArchive{openBytes(t, damaged), podman})
	if !errors.Is(err, archive.ErrDigestMismatch) {
		t.Fatalf("Merge: %v, want ErrDigestMismatch", err)
	}
	for i, res := range results {
		if (res.Err != nil) != (i == 1) {
			t.Errorf("result %d: error %v", i, res.Err)
		}
	}
	merged := commitAndOpen(t, w, out)
	if got, want := len(merged.Images()), len(results)-1; got != want {
		t.Errorf("merged archive holds %d images, want %d", got, want)
	}
}

// TestMergeHonoursPolicy: a signature policy that rejects docker-archive sources stops every
// image.
func TestMergeHonoursPolicy(t *testing.T) {
	podman := openFixture(t, "podman-save-m.tar")
	w, err := archive.Create(filepath.Join(t.TempDir(), "merged.tar"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	reject := &signature.Policy{Default: []signature.PolicyRequirement{signature.NewPRReject()}}
	results, err := dcopy.Merge(context.Background(), w, []*archive.ReadableArchive{podman}, dcopy.WithPolicy(reject))
	if err == nil {
		t.Fatal("Merge under a rejecting policy succeeded")
	}
	for i, res := range results {
		if res.Err == nil {
			t.Errorf("result %d was merged", i)
		}
	}
	if err := w.Commit(); !errors.Is(err, archive.ErrNoImages) {
		t.Errorf("Commit: %v, want ErrNoImages", err)
	}
}

// TestSaveFilterMatchesCopyImage filters images out of an archive the way `darc save -o OUT
// docker-archive:IN:@N …` does (string references, one with tags of its own): each image is
// paired with its archive for direct copies, and the archive is byte for byte what plain
// copy.Image writes for them.
func TestSaveFilterMatchesCopyImage(t *testing.T) {
	in := filepath.Join(fixtures, "podman-save-m.tar")
	specs := []struct {
		ref  string
		tags []string
	}{
		{"docker-archive:" + in + ":@2", nil},
		{"docker-archive:" + in + ":@0", []string{"example.com/renamed:7"}},
	}
	var sources []dcopy.Source
	for _, sp := range specs {
		ref, err := dcopy.ParseReference(sp.ref)
		if err != nil {
			t.Fatal(err)
		}
		src := dcopy.Source{Ref: ref}
		for _, tg := range sp.tags {
			n, err := reference.NormalizeTag(tg)
			if err != nil {
				t.Fatal(err)
			}
			src.Tags = append(src.Tags, n)
		}
		sources = append(sources, src)
	}
	dir := t.TempDir()
	viaSave, viaCopy := filepath.Join(dir, "save.tar"), filepath.Join(dir, "copy.tar")

	w, err := archive.Create(viaSave)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	results, err := dcopy.Save(context.Background(), w, sources)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if len(results) != 2 || !slices.Equal(results[1].Tags, []string{"example.com/renamed:7"}) {
		t.Errorf("results: %+v", results)
	}

	w2, err := archive.Create(viaCopy)
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	pc := acceptAnything(t)
	for _, src := range sources {
		tags := src.Tags
		if tags == nil {
			if tags, err = archive.ImageTags(src.Ref); err != nil {
				t.Fatal(err)
			}
		}
		dst, err := w2.NewReference(tags...)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cicopy.Image(context.Background(), pc, dst, src.Ref, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := w2.Commit(); err != nil {
		t.Fatal(err)
	}
	a, errA := os.ReadFile(viaSave)
	b, errB := os.ReadFile(viaCopy)
	if errA != nil || errB != nil {
		t.Fatal(errA, errB)
	}
	if !bytes.Equal(a, b) {
		t.Errorf("Save wrote %d bytes, copy.Image %d: not the same archive", len(a), len(b))
	}
}

// TestMergeOCIFallsBack merges an archive with xz layer members, which the destination leaves
// to copy.Image to read in the oci layout, beside a plain one: every image arrives and
// verifies.
func TestMergeOCIFallsBack(t *testing.T) {
	data, err := archivetest.BuildBytes(mergeImages(), archivetest.Options{Layout: archivetest.Docker24, XzMembers: true})
	if err != nil {
		t.Fatal(err)
	}
	podman := openFixture(t, "podman-save-m.tar")
	out := filepath.Join(t.TempDir(), "merged.tar")
	w, err := archive.Create(out, archive.WithLayout(archive.LayoutOCI))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var mu sync.Mutex
	started := map[int]int{}
	results, err := dcopy.Merge(context.Background(), w, []*archive.ReadableArchive{openBytes(t, data), podman}, dcopy.WithProgress(func(e dcopy.Event) {
		if e.Kind == dcopy.ImageStarted {
			mu.Lock()
			started[e.Image]++
			mu.Unlock()
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	merged := commitAndOpen(t, w, out)
	for i := range results {
		if started[i] != 1 {
			t.Errorf("image %d reported started %d times, want once", i, started[i])
		}
	}
	if got := len(merged.Images()); got != len(results) {
		t.Errorf("merged archive holds %d images, want %d", got, len(results))
	}
	for i, res := range results {
		if len(res.Destinations) != 1 || res.ImageID == "" || len(res.Tags) == 0 {
			t.Errorf("result %d: %+v", i, res)
		}
	}
}

// openFixture opens a fixture by name, or any archive by absolute path; the test closes it.
func openFixture(t *testing.T, name string) *archive.ReadableArchive {
	t.Helper()
	if !filepath.IsAbs(name) {
		name = filepath.Join(fixtures, name)
	}
	a, err := archive.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return a
}

// commitAndOpen commits w, opens what it wrote at out and checks that it verifies.
func commitAndOpen(t *testing.T, w *archive.WritableArchive, out string) *archive.ReadableArchive {
	t.Helper()
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	merged := openFixture(t, out)
	if probs := merged.Verify(context.Background(), 2); len(probs) > 0 {
		t.Errorf("%s does not verify: %v", out, probs)
	}
	return merged
}

// TestMergeKeepsNoBlobInfoCache: merging into an archive leaves containers/image's default
// blob-info cache (an SQLite file that is committed after every blob) alone, whether the
// process runs as root (cache under RootForImplicitAbsolutePaths) or not (under
// XDG_DATA_HOME); a cache directory the caller names is still used.
func TestMergeKeepsNoBlobInfoCache(t *testing.T) {
	podman := openFixture(t, "podman-save-m.tar")
	root, home := t.TempDir(), t.TempDir()
	t.Setenv("XDG_DATA_HOME", home)
	t.Setenv("HOME", home)
	named := t.TempDir()
	for _, tc := range []struct {
		name      string
		sys       types.SystemContext
		wantCache bool
	}{
		{"default cache", types.SystemContext{RootForImplicitAbsolutePaths: root}, false},
		{"cache directory named", types.SystemContext{RootForImplicitAbsolutePaths: root, BlobInfoCacheDir: named}, true},
	} {
		w, err := archive.Create(filepath.Join(t.TempDir(), "merged.tar"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dcopy.Merge(context.Background(), w, []*archive.ReadableArchive{podman}, dcopy.WithSystemContext(&tc.sys)); err != nil {
			t.Fatal(err)
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
		_ = w.Close()
		var files []string
		for _, dir := range []string{root, home, named} {
			_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					files = append(files, p)
				}
				return nil
			})
		}
		if got := len(files) > 0; got != tc.wantCache {
			t.Errorf("%s: files written: %q; want a cache: %v", tc.name, files, tc.wantCache)
		}
	}
}

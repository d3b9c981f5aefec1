package archive_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/types"

	"github.com/darc-dev/darc/archive"
	"github.com/darc-dev/darc/internal/archivetest"
	"github.com/darc-dev/darc/reference"
)

// fuzzRewriteMax bounds the inputs FuzzRewrite rewrites, to keep each run fast.
const fuzzRewriteMax = 4 << 20

// FuzzRewrite: an archive that opens and verifies without errors re-writes, through a
// WritableArchive, to one that opens and verifies to the same images, in order, with the
// same tags, IDs and diffIDs, and the copy with destinations paired with their sources
// (CopyFrom) writes byte for byte what plain copy.Image writes. The
// expectation follows the writer's contract: an image listed
// twice (the same config) becomes one entry with the tags of both, and a tag given to two
// images stays with the later one.
//
//	go test -tags containers_image_openpgp -run '^$' -fuzz '^FuzzRewrite$' -fuzztime 5m ./archive/
func FuzzRewrite(f *testing.F) {
	files, err := filepath.Glob(filepath.Join(fixtureDir, "*.tar*"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no fixtures found: %v", err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	base := archivetest.Layer(1, 1, 40)
	images := []archivetest.Image{
		{Tags: []string{"example.com/a:1", "b"}, Layers: [][]byte{base, archivetest.Layer(2, 1, 30)}},
		{Layers: [][]byte{base}},
		{Tags: []string{"example.com/c:1"}, Layers: [][]byte{archivetest.Layer(3, 2, 20)}},
	}
	variants := []archivetest.Options{
		{Layout: archivetest.Docker24, GzipMembers: true},
		{Layout: archivetest.Crane, ZstdLayers: true},
	}
	for _, l := range archivetest.Layouts() {
		variants = append(variants, archivetest.Options{Layout: l})
	}
	for _, opts := range variants {
		data, err := archivetest.BuildBytes(images, opts)
		if err != nil {
			// Not every layout can hold every image (an untagged one, say).
			continue
		}
		f.Add(data)
	}
	// An image for another OS verifies with a warning and re-writes with the same one.
	windows := bytes.Replace(archivetest.GenerateConfig([]digest.Digest{digest.FromBytes(base)}), []byte(`"os":"linux"`), []byte(`"os":"windows"`), 1)
	if !bytes.Contains(windows, []byte(`"os":"windows"`)) {
		f.Fatal("the generated config names no OS to replace")
	}
	data, err := archivetest.BuildBytes([]archivetest.Image{{Tags: []string{"w:1"}, Layers: [][]byte{base}, Config: windows}}, archivetest.Options{Layout: archivetest.Docker24})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)

	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > fuzzRewriteMax {
			t.Skip("too large for a fast run")
		}
		dir := t.TempDir()
		in := filepath.Join(dir, "in.tar")
		if err := os.WriteFile(in, data, 0o644); err != nil {
			t.Fatal(err)
		}
		r, err := archive.Open(in)
		if err != nil {
			return
		}
		defer r.Close()
		ctx := context.Background()
		for _, p := range r.Verify(ctx, 2) {
			if !p.Warning {
				return
			}
		}
		want := fuzzRewriteExpect(t, r)

		out := filepath.Join(dir, "out.tar")
		w, err := archive.Create(out)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		sys := &types.SystemContext{BlobInfoCacheDir: t.TempDir()}
		opts := &copy.Options{SourceCtx: sys, DestinationCtx: sys}
		refs := r.References()
		for i, info := range r.Images() {
			dst, err := w.NewReference(info.Tags...)
			if err != nil {
				t.Fatalf("image @%d: NewReference: %v", i, err)
			}
			if _, err := copy.Image(ctx, policyContext(t), dst, refs[i], opts); err != nil {
				t.Fatalf("image @%d verified but does not copy: %v", i, err)
			}
		}
		if err := w.Commit(); err != nil {
			t.Fatalf("Commit: %v", err)
		}
		if got := wtReadBack(t, out); !wtEqual(got, want) {
			t.Errorf("re-written archive holds\n%v\nwant\n%v", got, want)
		}
		t.Logf("re-wrote %d images as %d entries", len(refs), len(want))

		// Paired with the source for direct copies, copy.Image must write the very same
		// archive.
		paired := filepath.Join(dir, "paired.tar")
		w2, err := archive.Create(paired)
		if err != nil {
			t.Fatal(err)
		}
		defer w2.Close()
		for i, info := range r.Images() {
			dst, err := w2.NewReference(info.Tags...)
			if err == nil {
				dst, err = archive.CopyFrom(dst, refs[i])
			}
			if err != nil {
				t.Fatalf("image @%d: %v", i, err)
			}
			if _, err := copy.Image(ctx, policyContext(t), dst, refs[i], opts); err != nil {
				t.Fatalf("image @%d copies but not paired with its source: %v", i, err)
			}
		}
		if err := w2.Commit(); err != nil {
			t.Fatalf("Commit of the paired copy: %v", err)
		}
		if !bytes.Equal(wtReadFile(t, out), wtReadFile(t, paired)) {
			t.Error("the paired copy wrote another archive than plain copy.Image")
		}
	})
}

// fuzzRewriteExpect is what re-writing r's images in order must give: one entry per config,
// in order of first appearance, each tag with the last image that has it.
func fuzzRewriteExpect(t *testing.T, r *archive.ReadableArchive) []wtImage {
	t.Helper()
	var out []wtImage
	for _, info := range r.Images() {
		sel, err := reference.IndexSelector(info.Index)
		if err != nil {
			t.Fatal(err)
		}
		d, err := r.Inspect(sel)
		if err != nil {
			t.Fatalf("image @%d verified but does not inspect: %v", info.Index, err)
		}
		var tags []string
		for _, tag := range info.Tags {
			tags = append(tags, tag.String())
		}
		// The tags move from other images to this one.
		for j := range out {
			if out[j].ID == info.ID {
				continue
			}
			out[j].Tags = slices.DeleteFunc(out[j].Tags, func(s string) bool { return slices.Contains(tags, s) })
		}
		j := slices.IndexFunc(out, func(x wtImage) bool { return x.ID == info.ID })
		if j < 0 {
			img := wtImage{Tags: []string{}, ID: info.ID}
			for _, l := range d.Layers {
				img.DiffIDs = append(img.DiffIDs, l.DiffID)
			}
			out = append(out, img)
			j = len(out) - 1
		}
		for _, s := range tags {
			if !slices.Contains(out[j].Tags, s) {
				out[j].Tags = append(out[j].Tags, s)
			}
		}
	}
	return out
}

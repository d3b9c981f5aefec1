package archive_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	distref "github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/copy"
	ciarchive "go.podman.io/image/v5/docker/archive"
	cireference "go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/image"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/oci/layout"
	"go.podman.io/image/v5/types"

	"github.com/darc-dev/darc/archive"
	"github.com/darc-dev/darc/internal/testtools"
	"github.com/darc-dev/darc/reference"
)

// The fixture images (see testdata/archives/README.md).
const (
	wtIDA = digest.Digest("sha256:c6d2678473c4aceda6d8f427dfc66df787ae7dc59a2ea9ed24808637345a4e42")
	wtIDB = digest.Digest("sha256:6db4b5db81390f687739c4e9ee2d9e6f51a2da7e02897c574ccb65048086b42a")
	wtIDC = digest.Digest("sha256:b2aca20d3f23c5c9c5a53aacde19bdc729a3d6ca31dd5188239f76604bf0f7d0")
	wtIDU = digest.Digest("sha256:33bf5a3cb0d62d9ddca124b111e5dc3930590e10622c6fbc0422bb5f20738b12")
)

// wtImage is an image as a reader reports it.
type wtImage struct {
	Tags    []string
	ID      digest.Digest
	DiffIDs []digest.Digest
}

func (i wtImage) String() string {
	return fmt.Sprintf("{%s tags=%v layers=%d}", i.ID.Encoded()[:12], i.Tags, len(i.DiffIDs))
}

func wtEqual(a, b []wtImage) bool {
	return slices.EqualFunc(a, b, func(x, y wtImage) bool {
		return x.ID == y.ID && slices.Equal(x.Tags, y.Tags) && slices.Equal(x.DiffIDs, y.DiffIDs)
	})
}

// wtSources opens the fixtures that serve as sources and returns references by name:
// "A", "B", "C", "U" from podman's archives (uncompressed layers), "A.gz", "B.gz", "C.gz"
// from crane's (gzip layers, registry blobs) and "A.zst" from crane's zstd archive.
func wtSources(t *testing.T) map[string]types.ImageReference {
	t.Helper()
	open := func(file string) []types.ImageReference {
		a, err := archive.Open(filepath.Join(fixtureDir, file))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = a.Close() })
		return a.References()
	}
	podman, untagged, crane, zstd := open("podman-save-m.tar"), open("podman-save-m-untagged.tar"), open("crane-pull-multi.tar"), open("crane-pull-zstd.tar")
	return map[string]types.ImageReference{
		"A": podman[0], "B": podman[1], "C": podman[2], "U": untagged[0],
		"A.gz": crane[0], "B.gz": crane[2], "C.gz": crane[3], "A.zst": zstd[0],
	}
}

// wtDiffIDs are the fixture images' diffIDs, read from the sources.
func wtDiffIDs(t *testing.T, srcs map[string]types.ImageReference) map[digest.Digest][]digest.Digest {
	t.Helper()
	out := map[digest.Digest][]digest.Digest{}
	for _, name := range []string{"A", "B", "C", "U"} {
		img := wtImageOf(t, srcs[name])
		out[img.ID] = img.DiffIDs
	}
	return out
}

// wtImageOf reads an image's ID and diffIDs through containers/image.
func wtImageOf(t *testing.T, ref types.ImageReference) wtImage {
	t.Helper()
	ctx := context.Background()
	src, err := ref.NewImageSource(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	img, err := image.FromUnparsedImage(ctx, nil, image.UnparsedInstance(src, nil))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.OCIConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return wtImage{ID: img.ConfigInfo().Digest, DiffIDs: cfg.RootFS.DiffIDs}
}

func wtTag(t *testing.T, s string) distref.NamedTagged {
	t.Helper()
	n, err := reference.NormalizeTag(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func wtTags(t *testing.T, ss ...string) []distref.NamedTagged {
	var out []distref.NamedTagged
	for _, s := range ss {
		out = append(out, wtTag(t, s))
	}
	return out
}

// wtCopyOptions keeps the blob info cache of a test in its own directory.
func wtCopyOptions(cacheDir string) *copy.Options {
	sys := &types.SystemContext{BlobInfoCacheDir: cacheDir}
	return &copy.Options{SourceCtx: sys, DestinationCtx: sys}
}

func wtCopy(t *testing.T, ctx context.Context, opts *copy.Options, dst, src types.ImageReference) []byte {
	t.Helper()
	m, err := copy.Image(ctx, policyContext(t), dst, src, opts)
	if err != nil {
		t.Fatalf("copy %s to %s: %v", src.StringWithinTransport(), dst.StringWithinTransport(), err)
	}
	return m
}

// wtReadBack lists an archive with darc's reader, verifying it on the way.
func wtReadBack(t *testing.T, path string) []wtImage {
	t.Helper()
	a, err := archive.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for _, p := range a.Verify(context.Background(), 2) {
		// The OS warning comes with the config, which a re-written archive carries as it is.
		if p.Warning && errors.Is(p.Err, archive.ErrForeignOS) {
			continue
		}
		t.Errorf("verify %s: %v", filepath.Base(path), p)
	}
	var out []wtImage
	for _, info := range a.Images() {
		sel, _ := reference.IndexSelector(info.Index)
		d, err := a.Inspect(sel)
		if err != nil {
			t.Fatal(err)
		}
		img := wtImage{Tags: []string{}, ID: info.ID}
		for _, tag := range info.Tags {
			img.Tags = append(img.Tags, tag.String())
		}
		for _, l := range d.Layers {
			img.DiffIDs = append(img.DiffIDs, l.DiffID)
		}
		out = append(out, img)
	}
	return out
}

// wtCIReadBack lists an archive with containers/image's own docker-archive reader.
func wtCIReadBack(t *testing.T, path string) []wtImage {
	t.Helper()
	r, err := ciarchive.NewReader(nil, path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	lists, err := r.List()
	if err != nil {
		t.Fatal(err)
	}
	var out []wtImage
	for _, refs := range lists {
		img := wtImageOf(t, refs[0])
		img.Tags = []string{}
		for _, ref := range refs {
			if n := ref.DockerReference(); n != nil {
				img.Tags = append(img.Tags, n.String())
			}
		}
		out = append(out, img)
	}
	return out
}

type wtMember struct {
	Name    string
	Type    byte
	Size    int64
	Mode    int64
	Uid     int
	Gid     int
	ModTime time.Time
	Data    []byte
}

func wtMembers(t *testing.T, data []byte) []wtMember {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(data))
	var out []wtMember
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("reading tar: %v", err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, wtMember{h.Name, h.Typeflag, h.Size, h.Mode, h.Uid, h.Gid, h.ModTime, b})
	}
}

func wtReadFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wtNoLeftovers fails if dir holds anything but the names given.
func wtNoLeftovers(t *testing.T, dir string, want ...string) {
	t.Helper()
	got := testtools.DirNames(t, dir)
	if want == nil {
		want = []string{}
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("directory holds %q, want %q", got, want)
	}
}

// wtSpec is one reference of a write: a source and the tags to write it with.
type wtSpec struct {
	src  string
	tags []string
}

// wtStandardSet covers the matrix shape: several images sharing layers, one image with two
// tags and one untagged image.
var wtStandardSet = []wtSpec{
	{"A", []string{"example.com/darc/a:1", "example.com/darc/a:latest"}},
	{"B", []string{"docker.io/library/busybox-like:1"}},
	{"C", []string{"localhost/c:v1"}},
	{"U", nil},
}

// Ways wtWrite runs the copies.
const (
	wtSequential = iota // one after another, in reference order
	wtConcurrent        // all at once, started in reverse order
	wtReversed          // all but the first at once, then the first: every other image waits for its turn
)

// wtWrite copies specs into a new archive at path and returns the archive's stats.
func wtWrite(t *testing.T, path string, srcs map[string]types.ImageReference, specs []wtSpec, mode int, opts ...archive.CreateOption) archive.WriteStats {
	t.Helper()
	ctx := context.Background()
	tmp := t.TempDir()
	a, err := archive.Create(path, append([]archive.CreateOption{archive.WithWriteTempDir(tmp)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := a.Close(); err != nil {
			t.Error(err)
		}
		wtNoLeftovers(t, tmp)
	}()
	refs := make([]types.ImageReference, len(specs))
	for i, s := range specs {
		if refs[i], err = a.NewReference(wtTags(t, s.tags...)...); err != nil {
			t.Fatal(err)
		}
	}
	copyOpts := wtCopyOptions(t.TempDir())
	copyAll := func(idx []int) {
		var wg sync.WaitGroup
		errs := make([]error, len(specs))
		for n, i := range idx {
			wg.Go(func() {
				time.Sleep(time.Duration(n) * time.Millisecond)
				_, errs[i] = copy.Image(ctx, policyContext(t), refs[i], srcs[specs[i].src], copyOpts)
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
	}
	switch mode {
	case wtSequential:
		for i, s := range specs {
			wtCopy(t, ctx, copyOpts, refs[i], srcs[s.src])
		}
	case wtConcurrent:
		var idx []int
		for i := len(specs) - 1; i >= 0; i-- {
			idx = append(idx, i)
		}
		copyAll(idx)
	case wtReversed:
		var idx []int
		for i := len(specs) - 1; i > 0; i-- {
			idx = append(idx, i)
		}
		copyAll(idx)
		copyAll([]int{0})
	}
	if err := a.Commit(); err != nil {
		t.Fatal(err)
	}
	return a.Stats()
}

// TestWriteLayouts writes the standard set in each layout and reads it back with darc's reader
// and with containers/image's: same images, tags and diffIDs; every layer stored once.
func TestWriteLayouts(t *testing.T) {
	srcs := wtSources(t)
	diffIDs := wtDiffIDs(t, srcs)
	want := []wtImage{
		{[]string{"example.com/darc/a:1", "example.com/darc/a:latest"}, wtIDA, diffIDs[wtIDA]},
		{[]string{"docker.io/library/busybox-like:1"}, wtIDB, diffIDs[wtIDB]},
		{[]string{"localhost/c:v1"}, wtIDC, diffIDs[wtIDC]},
		{[]string{}, wtIDU, diffIDs[wtIDU]},
	}
	unique := map[digest.Digest]bool{}
	for _, w := range want {
		for _, d := range w.DiffIDs {
			unique[d] = true
		}
	}
	tests := []struct {
		name string
		opts []archive.CreateOption
		// layer reports whether a member is a layer; legacy, whether legacy dirs are expected.
		layer  func(wtMember) bool
		legacy bool
	}{
		{"default is docker", nil, func(m wtMember) bool { return strings.HasSuffix(m.Name, ".tar") && !strings.Contains(m.Name, "/") }, false},
		{"docker", []archive.CreateOption{archive.WithLayout(archive.LayoutDocker)}, func(m wtMember) bool { return strings.HasSuffix(m.Name, ".tar") && !strings.Contains(m.Name, "/") }, false},
		{"docker with legacy dirs", []archive.CreateOption{archive.WithLegacyDirs(true)}, func(m wtMember) bool { return strings.HasSuffix(m.Name, ".tar") && !strings.Contains(m.Name, "/") }, true},
		// Configs and manifests are small JSON blobs; layers are tars of 1024 bytes or more.
		{"oci", []archive.CreateOption{archive.WithLayout(archive.LayoutOCI)}, func(m wtMember) bool { return strings.HasPrefix(m.Name, "blobs/") && m.Data[0] != '{' }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "out.tar")
			wtWrite(t, path, srcs, wtStandardSet, wtSequential, tc.opts...)
			if got := wtReadBack(t, path); !wtEqual(got, want) {
				t.Errorf("darc reads\n got %v\nwant %v", got, want)
			}
			if got := wtCIReadBack(t, path); !wtEqual(got, want) {
				t.Errorf("containers/image reads\n got %v\nwant %v", got, want)
			}
			members := wtMembers(t, wtReadFile(t, path))
			layers, names := 0, map[string]bool{}
			hasLegacy := false
			for _, m := range members {
				if names[m.Name] {
					t.Errorf("member %q written twice", m.Name)
				}
				names[m.Name] = true
				if tc.layer(m) {
					layers++
				}
				if strings.HasSuffix(m.Name, "/VERSION") {
					hasLegacy = true
				}
				if m.Uid != 0 || m.Gid != 0 || !m.ModTime.Equal(time.Unix(0, 0)) || (m.Type == tar.TypeReg && m.Mode != 0o444) {
					t.Errorf("member %q: uid %d gid %d mtime %s mode %o, want 0 0 epoch 0444", m.Name, m.Uid, m.Gid, m.ModTime, m.Mode)
				}
			}
			if layers != len(unique) {
				t.Errorf("%d layer members, want %d (one per unique layer)", layers, len(unique))
			}
			if hasLegacy != tc.legacy {
				t.Errorf("legacy directories present: %v, want %v", hasLegacy, tc.legacy)
			}
		})
	}
}

// TestWriteOCILayoutFiles checks what makes the OCI layout a Docker 25 archive: oci-layout,
// index.json with one annotated descriptor per tag (and one bare for an untagged image),
// manifest.json pointing into blobs/sha256 with LayerSources, and manifests kept unchanged.
func TestWriteOCILayoutFiles(t *testing.T) {
	srcs := wtSources(t)
	ctx := context.Background()
	// The OCI layout keeps compressed blobs: take the gzip images from crane's archive, and
	// the zstd one.
	path := filepath.Join(t.TempDir(), "oci.tar")
	a, err := archive.Create(path, archive.WithLayout(archive.LayoutOCI))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	specs := []wtSpec{{"A.gz", []string{"example.com/darc/a:1", "example.com/darc/a:latest"}}, {"B.gz", []string{"busybox-like:1"}}, {"U", nil}}
	opts := wtCopyOptions(t.TempDir())
	var manifests [][]byte
	for _, s := range specs {
		ref, err := a.NewReference(wtTags(t, s.tags...)...)
		if err != nil {
			t.Fatal(err)
		}
		manifests = append(manifests, wtCopy(t, ctx, opts, ref, srcs[s.src]))
	}
	if err := a.Commit(); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, m := range wtMembers(t, wtReadFile(t, path)) {
		files[m.Name] = m.Data
	}
	if got := string(files["oci-layout"]); got != `{"imageLayoutVersion":"1.0.0"}` {
		t.Errorf("oci-layout %s", got)
	}
	var idx imgspecv1.Index
	if err := json.Unmarshal(files["index.json"], &idx); err != nil {
		t.Fatal(err)
	}
	type desc struct{ digest, name, ref string }
	var gotDescs []desc
	for _, d := range idx.Manifests {
		gotDescs = append(gotDescs, desc{d.Digest.String(), d.Annotations["io.containerd.image.name"], d.Annotations[imgspecv1.AnnotationRefName]})
		if _, ok := files["blobs/sha256/"+d.Digest.Encoded()]; !ok {
			t.Errorf("index.json names %s, which is not in blobs/sha256", d.Digest)
		}
	}
	md := func(i int) string { return digest.FromBytes(manifests[i]).String() }
	wantDescs := []desc{
		{md(0), "example.com/darc/a:1", "1"},
		{md(0), "example.com/darc/a:latest", "latest"},
		{md(1), "docker.io/library/busybox-like:1", "1"},
		{md(2), "", ""},
	}
	if !slices.Equal(gotDescs, wantDescs) {
		t.Errorf("index.json descriptors\n got %v\nwant %v", gotDescs, wantDescs)
	}
	// The source's manifest is kept: its digest is the same as in the source archive.
	for i, s := range specs {
		src, err := srcs[s.src].NewImageSource(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		raw, _, err := src.GetManifest(ctx, nil)
		src.Close()
		if err != nil {
			t.Fatal(err)
		}
		if got, want := md(i), digest.FromBytes(raw).String(); got != want {
			t.Errorf("%s: manifest digest %s, source has %s", s.src, got, want)
		}
	}
	var items []struct {
		Config       string
		RepoTags     []string
		Layers       []string
		LayerSources map[digest.Digest]imgspecv1.Descriptor
	}
	if err := json.Unmarshal(files["manifest.json"], &items); err != nil {
		t.Fatal(err)
	}
	gz := 0
	for _, it := range items {
		if !strings.HasPrefix(it.Config, "blobs/sha256/") {
			t.Errorf("Config %q not in blobs/sha256", it.Config)
		}
		if len(it.LayerSources) == 0 {
			t.Errorf("%s: no LayerSources", it.Config)
		}
		for _, l := range it.Layers {
			found := false
			for _, src := range it.LayerSources {
				if "blobs/sha256/"+src.Digest.Encoded() == l {
					found = true
					if src.MediaType == manifest.DockerV2Schema2LayerMediaType {
						gz++
					}
				}
			}
			if !found {
				t.Errorf("layer %q has no LayerSources entry", l)
			}
		}
	}
	if gz == 0 {
		t.Error("no gzip layer kept: LayoutOCI should store the registry's compressed blobs")
	}
	// darc's reader serves the stored manifest.
	r, err := archive.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for i := range specs {
		sel, _ := reference.IndexSelector(i)
		d, err := r.Inspect(sel)
		if err != nil {
			t.Fatal(err)
		}
		if !d.OwnManifest || digest.FromBytes(d.Manifest).String() != md(i) {
			t.Errorf("@%d: served manifest %s (own %v), want the stored %s", i, digest.FromBytes(d.Manifest), d.OwnManifest, md(i))
		}
	}
	if got := wtCIReadBack(t, path); len(got) != 3 || got[0].ID != wtIDA || got[1].ID != wtIDB || got[2].ID != wtIDU {
		t.Errorf("containers/image reads %v", got)
	}
}

// TestWriteCompressedSources copies registry-compressed (gzip, zstd) images: the docker
// layout stores them decompressed under their diffIDs, each shared layer once even though
// crane's A and B share compressed blobs, and the result equals writing podman's uncompressed
// copies byte for byte.
func TestWriteCompressedSources(t *testing.T) {
	srcs := wtSources(t)
	dir := t.TempDir()
	compressed := filepath.Join(dir, "from-gzip.tar")
	wtWrite(t, compressed, srcs, []wtSpec{{"A.gz", []string{"example.com/darc/a:1"}}, {"B.gz", []string{"busybox-like:1"}}, {"C.gz", []string{"localhost/c:v1"}}}, wtSequential)
	plain := filepath.Join(dir, "from-plain.tar")
	wtWrite(t, plain, srcs, []wtSpec{{"A", []string{"example.com/darc/a:1"}}, {"B", []string{"busybox-like:1"}}, {"C", []string{"localhost/c:v1"}}}, wtSequential)
	if !bytes.Equal(wtReadFile(t, compressed), wtReadFile(t, plain)) {
		t.Error("writing gzip sources gives other bytes than writing the same images uncompressed")
	}
	zst := filepath.Join(dir, "from-zstd.tar")
	wtWrite(t, zst, srcs, []wtSpec{{"A.zst", []string{"example.com/darc/a:1"}}}, wtSequential)
	got := wtReadBack(t, zst)
	if len(got) != 1 || got[0].ID != wtIDA {
		t.Fatalf("got %v", got)
	}
	for _, m := range wtMembers(t, wtReadFile(t, zst)) {
		if strings.HasSuffix(m.Name, ".tar") && digest.FromBytes(m.Data).Encoded()+".tar" != m.Name {
			t.Errorf("member %q holds %s: not the uncompressed layer named by its diffID", m.Name, digest.FromBytes(m.Data))
		}
	}
}

// TestWriteDedup writes the same image several times: through two references, with tags that
// repeat, from a second source with other compression. One manifest.json entry results, with
// the tags merged in the order given.
func TestWriteDedup(t *testing.T) {
	srcs := wtSources(t)
	tests := []struct {
		name  string
		specs []wtSpec
		want  []wtImage
	}{
		{
			// Two references, one tag each, then the first tag again.
			name:  "two references",
			specs: []wtSpec{{"A", []string{"example.com/darc/a:1"}}, {"A", []string{"example.com/darc/a:latest", "example.com/darc/a:1"}}},
			want:  []wtImage{{Tags: []string{"example.com/darc/a:1", "example.com/darc/a:latest"}, ID: wtIDA}},
		},
		{
			// The same image from crane's gzip archive dedups by config digest.
			name:  "other source",
			specs: []wtSpec{{"A", []string{"example.com/darc/a:1"}}, {"B", nil}, {"A.gz", []string{"x.example/other:2"}}},
			want: []wtImage{
				{Tags: []string{"example.com/darc/a:1", "x.example/other:2"}, ID: wtIDA},
				{Tags: []string{}, ID: wtIDB},
			},
		},
		{
			// An untagged reference to an image also written tagged adds nothing.
			name:  "untagged then tagged",
			specs: []wtSpec{{"C", nil}, {"C", []string{"localhost/c:v1"}}},
			want:  []wtImage{{Tags: []string{"localhost/c:v1"}, ID: wtIDC}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "out.tar")
			wtWrite(t, path, srcs, tc.specs, wtSequential)
			got := wtReadBack(t, path)
			for i := range got {
				got[i].DiffIDs = nil
			}
			if !wtEqual(got, tc.want) {
				t.Errorf("got %v\nwant %v", got, tc.want)
			}
			configs := 0
			for _, m := range wtMembers(t, wtReadFile(t, path)) {
				if strings.HasSuffix(m.Name, ".json") && m.Name != "manifest.json" {
					configs++
				}
			}
			if configs != len(tc.want) {
				t.Errorf("%d config members, want %d", configs, len(tc.want))
			}
		})
	}
}

// TestWriteTagMoves gives one tag to two different images: the later reference's image takes
// it and the earlier image loses it, staying in the archive.
func TestWriteTagMoves(t *testing.T) {
	srcs := wtSources(t)
	for _, l := range []archive.Layout{archive.LayoutDocker, archive.LayoutOCI} {
		t.Run(string(l), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "out.tar")
			wtWrite(t, path, srcs, []wtSpec{
				{"A", []string{"example.com/app:1", "example.com/app:stable"}},
				{"B", []string{"example.com/app:1"}},
				{"C", []string{"example.com/app:stable", "localhost/c:v1"}},
			}, wtSequential, archive.WithLayout(l))
			got := wtReadBack(t, path)
			for i := range got {
				got[i].DiffIDs = nil
			}
			want := []wtImage{
				{Tags: []string{}, ID: wtIDA},
				{Tags: []string{"example.com/app:1"}, ID: wtIDB},
				{Tags: []string{"example.com/app:stable", "localhost/c:v1"}, ID: wtIDC},
			}
			if !wtEqual(got, want) {
				t.Errorf("got %v\nwant %v", got, want)
			}
			// repositories agrees.
			var repos map[string]map[string]string
			for _, m := range wtMembers(t, wtReadFile(t, path)) {
				if m.Name == "repositories" {
					if err := json.Unmarshal(m.Data, &repos); err != nil {
						t.Fatal(err)
					}
				}
			}
			if n := len(repos["example.com/app"]); n != 2 || len(repos["localhost/c"]) != 1 {
				t.Errorf("repositories = %v", repos)
			}
		})
	}
}

// TestWriteReproducible writes the same set twice with concurrent copies, and once
// sequentially: all three files are byte-identical, in both layouts.
func TestWriteReproducible(t *testing.T) {
	srcs := wtSources(t)
	set := append(slices.Clone(wtStandardSet), wtSpec{"C.gz", []string{"localhost/c:gz"}}, wtSpec{"B", []string{"example.com/b:2"}})
	for _, l := range []archive.Layout{archive.LayoutDocker, archive.LayoutOCI} {
		t.Run(string(l), func(t *testing.T) {
			dir := t.TempDir()
			var files [][]byte
			for i, mode := range []int{wtReversed, wtConcurrent, wtConcurrent, wtSequential} {
				path := filepath.Join(dir, fmt.Sprintf("run%d.tar", i))
				st := wtWrite(t, path, srcs, set, mode, archive.WithLayout(l))
				files = append(files, wtReadFile(t, path))
				switch {
				case mode == wtReversed && st.Spooled == 0:
					t.Error("images copied before their turn spooled nothing")
				case mode == wtSequential && st.Spooled != 0:
					t.Errorf("copies in reference order spooled %d bytes, want 0", st.Spooled)
				}
				if st.Written != int64(len(files[i])) {
					t.Errorf("Stats().Written = %d, the file has %d bytes", st.Written, len(files[i]))
				}
			}
			for i := 1; i < len(files); i++ {
				if !bytes.Equal(files[0], files[i]) {
					t.Errorf("run %d differs from run 0 (%d vs %d bytes)", i, len(files[i]), len(files[0]))
				}
			}
			wtReadBack(t, filepath.Join(dir, "run0.tar"))
		})
	}
	t.Run("source date epoch", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "out.tar")
		epoch := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
		wtWrite(t, path, srcs, wtStandardSet[:1], wtSequential, archive.WithSourceDateEpoch(epoch))
		for _, m := range wtMembers(t, wtReadFile(t, path)) {
			if !m.ModTime.Equal(epoch) {
				t.Errorf("member %q: mtime %s, want %s", m.Name, m.ModTime, epoch)
			}
		}
	})
}

// TestWriteStream writes through NewWriter: to a bytes.Buffer (not seekable, so blobs of
// unknown size are spooled) and to an *os.File (headers patched). Both give the bytes Create
// gives.
func TestWriteStream(t *testing.T) {
	srcs := wtSources(t)
	ctx := context.Background()
	// The gzip sources make copy.Image decompress: blobs of unknown size and digest.
	specs := []wtSpec{{"A.gz", []string{"example.com/darc/a:1"}}, {"B.gz", []string{"busybox-like:1"}}}
	dir := t.TempDir()
	ref := filepath.Join(dir, "create.tar")
	wtWrite(t, ref, srcs, specs, wtSequential)
	want := wtReadFile(t, ref)

	write := func(t *testing.T, w io.Writer) {
		tmp := t.TempDir()
		a, err := archive.NewWriter(w, archive.WithWriteTempDir(tmp))
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		opts := wtCopyOptions(t.TempDir())
		for _, s := range specs {
			dst, err := a.NewReference(wtTags(t, s.tags...)...)
			if err != nil {
				t.Fatal(err)
			}
			wtCopy(t, ctx, opts, dst, srcs[s.src])
		}
		if err := a.Commit(); err != nil {
			t.Fatal(err)
		}
		wtNoLeftovers(t, tmp)
	}
	t.Run("buffer", func(t *testing.T) {
		var buf bytes.Buffer
		write(t, &buf)
		if !bytes.Equal(buf.Bytes(), want) {
			t.Errorf("stream output (%d bytes) differs from Create's (%d bytes)", buf.Len(), len(want))
		}
	})
	t.Run("pipe", func(t *testing.T) {
		pr, pw := io.Pipe()
		got := make(chan []byte)
		go func() {
			b, _ := io.ReadAll(pr)
			got <- b
		}()
		write(t, pw)
		pw.Close()
		if b := <-got; !bytes.Equal(b, want) {
			t.Errorf("pipe output (%d bytes) differs from Create's (%d bytes)", len(b), len(want))
		}
	})
	t.Run("file at an offset", func(t *testing.T) {
		f, err := os.Create(filepath.Join(t.TempDir(), "f"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString("prefix"); err != nil {
			t.Fatal(err)
		}
		write(t, f)
		b, err := os.ReadFile(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, append([]byte("prefix"), want...)) {
			t.Errorf("file output differs from Create's")
		}
	})
	t.Run("file closed without commit", func(t *testing.T) {
		f, err := os.Create(filepath.Join(t.TempDir(), "f"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		a, err := archive.NewWriter(f)
		if err != nil {
			t.Fatal(err)
		}
		dst, _ := a.NewReference()
		wtCopy(t, ctx, wtCopyOptions(t.TempDir()), dst, srcs["C"])
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		if st, _ := f.Stat(); st.Size() != 0 {
			t.Errorf("file holds %d bytes after Close without Commit, want 0", st.Size())
		}
	})
}

// TestWriteExisting: Create refuses an existing file unless told to overwrite, and leaves it
// untouched until Commit.
func TestWriteExisting(t *testing.T) {
	srcs := wtSources(t)
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "out.tar")
	old := []byte("precious")
	if err := os.WriteFile(path, old, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := archive.Create(path); !errors.Is(err, archive.ErrExists) {
		t.Fatalf("Create over an existing file: got %v, want ErrExists", err)
	}
	if _, err := archive.Create(dir, archive.WithOverwrite(true)); err == nil {
		t.Fatal("Create over a directory succeeded")
	}
	a, err := archive.Create(path, archive.WithOverwrite(true))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	dst, _ := a.NewReference(wtTag(t, "localhost/c:v1"))
	wtCopy(t, ctx, wtCopyOptions(t.TempDir()), dst, srcs["C"])
	if got := wtReadFile(t, path); !bytes.Equal(got, old) {
		t.Fatal("existing file changed before Commit")
	}
	if err := a.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := wtReadBack(t, path); len(got) != 1 || got[0].ID != wtIDC {
		t.Errorf("after overwrite: %v", got)
	}
	wtNoLeftovers(t, dir, "out.tar")

	t.Run("file appears before commit", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "late.tar")
		a, err := archive.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		dst, _ := a.NewReference()
		wtCopy(t, ctx, wtCopyOptions(t.TempDir()), dst, srcs["C"])
		if err := os.WriteFile(path, old, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := a.Commit(); !errors.Is(err, archive.ErrExists) {
			t.Errorf("Commit: got %v, want ErrExists", err)
		}
		if err := a.Close(); err != nil {
			t.Error(err)
		}
		if got := wtReadFile(t, path); !bytes.Equal(got, old) {
			t.Error("the file that appeared was replaced")
		}
		wtNoLeftovers(t, dir, "late.tar")
	})
}

// TestCommitContextCancelled: a commit whose context is done before the rename is abandoned:
// the error is the context's, the file that was there is untouched and nothing else is left.
func TestCommitContextCancelled(t *testing.T) {
	srcs := wtSources(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "out.tar")
	old := []byte("precious")
	if err := os.WriteFile(path, old, 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := archive.Create(path, archive.WithOverwrite(true))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	dst, _ := a.NewReference(wtTag(t, "localhost/c:v1"))
	wtCopy(t, context.Background(), wtCopyOptions(t.TempDir()), dst, srcs["C"])
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.CommitContext(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("CommitContext: got %v, want context.Canceled", err)
	}
	if err := a.Close(); err != nil {
		t.Error(err)
	}
	if got := wtReadFile(t, path); !bytes.Equal(got, old) {
		t.Error("the file there was replaced")
	}
	wtNoLeftovers(t, dir, "out.tar")
}

// TestWriteNothingLeft: whatever happens short of Commit, Close leaves no file and no temp
// file; Commit with no image fails and keeps the archive usable.
func TestWriteNothingLeft(t *testing.T) {
	srcs := wtSources(t)
	ctx := context.Background()
	tests := []struct {
		name string
		run  func(t *testing.T, a *archive.WritableArchive)
	}{
		{"nothing written", func(t *testing.T, a *archive.WritableArchive) {}},
		{"image committed, archive not", func(t *testing.T, a *archive.WritableArchive) {
			dst, _ := a.NewReference()
			wtCopy(t, ctx, wtCopyOptions(t.TempDir()), dst, srcs["B"])
		}},
		{"commit with no image", func(t *testing.T, a *archive.WritableArchive) {
			if _, err := a.NewReference(); err != nil {
				t.Fatal(err)
			}
			if err := a.Commit(); !errors.Is(err, archive.ErrNoImages) {
				t.Errorf("Commit: got %v, want ErrNoImages", err)
			}
		}},
		{"context cancelled", func(t *testing.T, a *archive.WritableArchive) {
			cctx, cancel := context.WithCancel(ctx)
			dst, _ := a.NewReference()
			_, err := copy.Image(cctx, policyContext(t), dst, &wtFailingRef{ImageReference: srcs["B"], failLayer: 2, after: 100, cancel: cancel}, wtCopyOptions(t.TempDir()))
			if !errors.Is(err, context.Canceled) {
				t.Errorf("copy: got %v, want context.Canceled", err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			a, err := archive.Create(filepath.Join(dir, "out.tar"))
			if err != nil {
				t.Fatal(err)
			}
			tc.run(t, a)
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			if err := a.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
			wtNoLeftovers(t, dir)
			if _, err := a.NewReference(); !errors.Is(err, archive.ErrClosed) {
				t.Errorf("NewReference after Close: got %v, want ErrClosed", err)
			}
		})
	}
}

// wtFailingRef wraps a source so that reading its layer number failLayer (in manifest order)
// fails, or cancels, after some bytes.
type wtFailingRef struct {
	types.ImageReference
	failLayer int
	after     int
	cancel    context.CancelFunc // cancel instead of failing
}

var errWtSource = errors.New("injected source failure")

func (r *wtFailingRef) NewImageSource(ctx context.Context, sys *types.SystemContext) (types.ImageSource, error) {
	src, err := r.ImageReference.NewImageSource(ctx, sys)
	if err != nil {
		return nil, err
	}
	raw, mt, err := src.GetManifest(ctx, nil)
	if err == nil {
		var m manifest.Manifest
		if m, err = manifest.FromBlob(raw, mt); err == nil {
			return &wtFailingSrc{ImageSource: src, ref: r, fail: m.LayerInfos()[r.failLayer].Digest}, nil
		}
	}
	src.Close()
	return nil, err
}

type wtFailingSrc struct {
	types.ImageSource
	ref  *wtFailingRef
	fail digest.Digest
}

func (s *wtFailingSrc) GetBlob(ctx context.Context, info types.BlobInfo, cache types.BlobInfoCache) (io.ReadCloser, int64, error) {
	rc, size, err := s.ImageSource.GetBlob(ctx, info, cache)
	if err != nil || info.Digest != s.fail {
		return rc, size, err
	}
	return &wtFailingReader{rc: rc, left: s.ref.after, cancel: s.ref.cancel}, size, nil
}

type wtFailingReader struct {
	rc     io.ReadCloser
	left   int
	cancel context.CancelFunc
}

func (r *wtFailingReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		if r.cancel != nil {
			r.cancel()
			return 0, context.Canceled
		}
		return 0, errWtSource
	}
	if len(p) > r.left {
		p = p[:r.left]
	}
	n, err := r.rc.Read(p)
	r.left -= n
	return n, err
}

func (r *wtFailingReader) Close() error { return r.rc.Close() }

// TestWriteFailingSource: a copy that fails midway leaves the archive usable. On a file the
// partial member is cut back; images committed before and after are written, the failed
// image is not listed, and a retry through the same reference succeeds.
func TestWriteFailingSource(t *testing.T) {
	srcs := wtSources(t)
	ctx := context.Background()
	for _, l := range []archive.Layout{archive.LayoutDocker, archive.LayoutOCI} {
		t.Run(string(l), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "out.tar")
			a, err := archive.Create(path, archive.WithLayout(l))
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			opts := wtCopyOptions(t.TempDir())
			refA, _ := a.NewReference(wtTag(t, "example.com/darc/a:1"))
			refB, _ := a.NewReference(wtTag(t, "busybox-like:1"))
			refC, _ := a.NewReference(wtTag(t, "localhost/c:v1"))
			wtCopy(t, ctx, opts, refA, srcs["A"])
			// B's third layer (appB, the one it does not share with A) fails after 1000 bytes.
			_, err = copy.Image(ctx, policyContext(t), refB, &wtFailingRef{ImageReference: srcs["B"], failLayer: 2, after: 1000}, opts)
			if !errors.Is(err, errWtSource) {
				t.Fatalf("copy B: got %v, want the injected failure", err)
			}
			wtCopy(t, ctx, opts, refC, srcs["C"])
			if err := a.Commit(); err != nil {
				t.Fatal(err)
			}
			got := wtReadBack(t, path)
			if len(got) != 2 || got[0].ID != wtIDA || got[1].ID != wtIDC {
				t.Errorf("got %v, want A and C", got)
			}
			for _, m := range wtMembers(t, wtReadFile(t, path)) {
				if m.Size == 1000 || strings.Contains(m.Name, "incomplete") {
					t.Errorf("partial member %q (%d bytes) left in the archive", m.Name, m.Size)
				}
			}
			wtNoLeftovers(t, dir, "out.tar")
		})
	}
	t.Run("retry", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "out.tar")
		a, err := archive.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		opts := wtCopyOptions(t.TempDir())
		ref, _ := a.NewReference(wtTag(t, "busybox-like:1"))
		if _, err := copy.Image(ctx, policyContext(t), ref, &wtFailingRef{ImageReference: srcs["B"], failLayer: 1, after: 10}, opts); !errors.Is(err, errWtSource) {
			t.Fatalf("copy: got %v, want the injected failure", err)
		}
		wtCopy(t, ctx, opts, ref, srcs["B"])
		if err := a.Commit(); err != nil {
			t.Fatal(err)
		}
		if got := wtReadBack(t, path); len(got) != 1 || got[0].ID != wtIDB || !slices.Equal(got[0].Tags, []string{"docker.io/library/busybox-like:1"}) {
			t.Errorf("got %v", got)
		}
	})
}

// TestWriteStringReference uses "docker-archive:PATH:NAME:TAG" directly as a copy.Image
// destination: a single-image archive that the image's Commit finishes.
func TestWriteStringReference(t *testing.T) {
	srcs := wtSources(t)
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "one.tar")
	dst, err := archive.ParseReference("docker-archive:" + path + ":example.com/one:1")
	if err != nil {
		t.Fatal(err)
	}
	wtCopy(t, ctx, wtCopyOptions(t.TempDir()), dst, srcs["B.gz"])
	got := wtReadBack(t, path)
	if len(got) != 1 || got[0].ID != wtIDB || !slices.Equal(got[0].Tags, []string{"example.com/one:1"}) {
		t.Errorf("got %v", got)
	}
	if got := wtCIReadBack(t, path); len(got) != 1 || got[0].ID != wtIDB {
		t.Errorf("containers/image reads %v", got)
	}
	wtNoLeftovers(t, dir, "one.tar")

	tests := []struct {
		name    string
		ref     string
		wantErr error
	}{
		// The file now exists: refused, like containers/image's docker-archive.
		{"existing file", "docker-archive:" + path + ":example.com/one:2", archive.ErrExists},
		// An index names an image already in an archive.
		{"index", "docker-archive:" + filepath.Join(dir, "x.tar") + ":@0", reference.ErrSelectorNotAllowed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst, err := archive.ParseReference(tc.ref)
			if err != nil {
				t.Fatal(err)
			}
			_, err = copy.Image(ctx, policyContext(t), dst, srcs["C"], wtCopyOptions(t.TempDir()))
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("got %v, want %v", err, tc.wantErr)
			}
		})
	}
	t.Run("failed copy leaves nothing", func(t *testing.T) {
		dir := t.TempDir()
		dst, err := archive.ParseReference("docker-archive:" + filepath.Join(dir, "x.tar"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := copy.Image(ctx, policyContext(t), dst, &wtFailingRef{ImageReference: srcs["C"], failLayer: 1, after: 5}, wtCopyOptions(t.TempDir())); !errors.Is(err, errWtSource) {
			t.Fatalf("got %v, want the injected failure", err)
		}
		wtNoLeftovers(t, dir)
	})
	t.Run("additional tags", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "tags.tar")
		dst, err := archive.ParseReference("docker-archive:" + path + ":localhost/c:v1")
		if err != nil {
			t.Fatal(err)
		}
		extra, err := wtCITags("example.com/extra:9")
		if err != nil {
			t.Fatal(err)
		}
		opts := wtCopyOptions(t.TempDir())
		opts.DestinationCtx.DockerArchiveAdditionalTags = extra
		wtCopy(t, ctx, opts, dst, srcs["C"])
		if got := wtReadBack(t, path); len(got) != 1 || !slices.Equal(got[0].Tags, []string{"localhost/c:v1", "example.com/extra:9"}) {
			t.Errorf("got %v", got)
		}
	})
}

// TestWriteOCILayoutSource copies from an OCI layout directory (oci: transport) in both
// layouts.
func TestWriteOCILayoutSource(t *testing.T) {
	srcs := wtSources(t)
	ctx := context.Background()
	ociDir := t.TempDir()
	opts := wtCopyOptions(t.TempDir())
	var ociRefs []types.ImageReference
	for i, name := range []string{"A.gz", "B", "C.gz"} {
		ref, err := layout.NewReference(ociDir, fmt.Sprintf("img%d", i))
		if err != nil {
			t.Fatal(err)
		}
		wtCopy(t, ctx, opts, ref, srcs[name])
		ociRefs = append(ociRefs, ref)
	}
	for _, l := range []archive.Layout{archive.LayoutDocker, archive.LayoutOCI} {
		t.Run(string(l), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "out.tar")
			a, err := archive.Create(path, archive.WithLayout(l))
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			for i, src := range ociRefs {
				dst, err := a.NewReference(wtTag(t, fmt.Sprintf("example.com/oci:%d", i)))
				if err != nil {
					t.Fatal(err)
				}
				wtCopy(t, ctx, opts, dst, src)
			}
			if err := a.Commit(); err != nil {
				t.Fatal(err)
			}
			got := wtReadBack(t, path)
			if len(got) != 3 || got[0].ID != wtIDA || got[1].ID != wtIDB || got[2].ID != wtIDC {
				t.Errorf("got %v", got)
			}
			if got := wtCIReadBack(t, path); len(got) != 3 {
				t.Errorf("containers/image reads %v", got)
			}
		})
	}
}

// wtCITags parses tags into containers/image's own reference type.
func wtCITags(tags ...string) ([]cireference.NamedTagged, error) {
	var out []cireference.NamedTagged
	for _, s := range tags {
		n, err := cireference.ParseNormalizedNamed(s)
		if err != nil {
			return nil, err
		}
		nt, ok := n.(cireference.NamedTagged)
		if !ok {
			return nil, fmt.Errorf("%q has no tag", s)
		}
		out = append(out, nt)
	}
	return out, nil
}

// TestWriteReferences covers the life of references: Commit while a destination is open is
// ErrBusy; a reference never used does not hold the archive back; tags are normalized.
func TestWriteReferences(t *testing.T) {
	srcs := wtSources(t)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "out.tar")
	a, err := archive.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	unused, err := a.NewReference(wtTag(t, "example.com/never:1"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := unused.StringWithinTransport(), path+":example.com/never:1"; got != want {
		t.Errorf("StringWithinTransport = %q, want %q", got, want)
	}
	// "busybox-like" is stored as docker.io/library/busybox-like:latest.
	used, err := a.NewReference(wtTag(t, "busybox-like"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.NewReference(nil); err == nil {
		t.Error("NewReference(nil) succeeded")
	}
	dest, err := used.NewImageDestination(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Commit(); !errors.Is(err, archive.ErrBusy) {
		t.Errorf("Commit with an open destination: got %v, want ErrBusy", err)
	}
	if err := dest.Close(); err != nil {
		t.Fatal(err)
	}
	// The reference was used by a destination that gave up: copying to it again is a retry.
	st := a.Stats()
	wtCopy(t, ctx, wtCopyOptions(t.TempDir()), used, srcs["B"])
	if a.Stats().Spooled == st.Spooled {
		t.Error("an image behind an unused reference was not spooled")
	}
	if err := a.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := a.Commit(); !errors.Is(err, archive.ErrClosed) {
		t.Errorf("second Commit: got %v, want ErrClosed", err)
	}
	got := wtReadBack(t, path)
	if len(got) != 1 || !slices.Equal(got[0].Tags, []string{"docker.io/library/busybox-like:latest"}) {
		t.Errorf("got %v", got)
	}
}

// TestWriteReferenceComparable: references are compared with == by some callers, which
// panics for a type that holds a slice.
func TestWriteReferenceComparable(t *testing.T) {
	a, err := archive.NewWriter(io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	r1, _ := a.NewReference(wtTags(t, "example.com/a:1", "example.com/a:2")...)
	r2, _ := a.NewReference(wtTags(t, "example.com/a:1", "example.com/a:2")...)
	again := r1
	if r1 == r2 || r1 != again {
		t.Error("references of two images compare equal, or a reference differs from itself")
	}
}

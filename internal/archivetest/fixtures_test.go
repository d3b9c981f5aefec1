package archivetest

// The strongest faithfulness check: rebuild each archive that a real tool wrote (the fixtures in
// testdata/archives at the repository root, see its README) from the images inside it, and
// compare the bytes. podman save -m, skopeo copy, buildah push, docker 20.10 save by ID,
// crane pull and crane pull --format legacy are reproduced byte for byte; docker 20.10 save of
// several images differs only in the mtimes Docker leaves at the wall clock.

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"testing"
)

const fixtureDir = "../../testdata/archives"

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(path.Join(fixtureDir, name))
	if errors.Is(err, fs.ErrNotExist) {
		t.Skipf("fixture %s not present", name)
	}
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// imagesFrom reconstructs the Images in a fixture. byMembers orders them as their config
// members appear in the tar (the order the tool processed them) instead of manifest.json order;
// it also merges entries that share a config. registry, if set, supplies the compressed blobs.
func imagesFrom(t *testing.T, data []byte, byMembers bool, registry *tarIndex) []Image {
	t.Helper()
	a, err := readArchive(data)
	if err != nil {
		t.Fatal(err)
	}
	items, err := a.manifest()
	if err != nil {
		t.Fatal(err)
	}
	if byMembers {
		first := func(name string) int {
			return slices.IndexFunc(a.order, func(m tarMember) bool { return path.Clean(m.hdr.Name) == name })
		}
		slices.SortStableFunc(items, func(x, y rawItem) int { return first(x.Config) - first(y.Config) })
	}
	blobsByDiffID := map[string][]byte{}
	if registry != nil {
		ritems, err := registry.manifest()
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range ritems {
			for _, l := range it.Layers {
				b, _ := registry.read(l)
				raw, _ := decompress(b)
				blobsByDiffID[string(raw)] = b
			}
		}
	}
	var images []Image
	for _, it := range items {
		cfg, err := a.read(it.Config)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(images); byMembers && n > 0 && bytes.Equal(images[n-1].Config, cfg) {
			images[n-1].Tags = append(images[n-1].Tags, it.RepoTags...)
			continue
		}
		img := Image{Tags: it.RepoTags, Config: cfg}
		for _, l := range it.Layers {
			stored, err := a.read(l)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := decompress(stored)
			if err != nil {
				t.Fatal(err)
			}
			img.Layers = append(img.Layers, raw)
			if !bytes.Equal(raw, stored) {
				img.Blobs = append(img.Blobs, stored)
			} else if b, ok := blobsByDiffID[string(raw)]; ok {
				img.Blobs = append(img.Blobs, b)
			}
		}
		if len(img.Blobs) != len(img.Layers) {
			img.Blobs = nil
		}
		images = append(images, img)
	}
	return images
}

func TestRealFixtures(t *testing.T) {
	tests := []struct {
		file      string
		layout    Layout
		byMembers bool
		registry  string // fixture holding the registry blobs crane --format legacy hashed
	}{
		{"podman-save-m.tar", ContainersImage, true, ""},
		{"podman-save-m-untagged.tar", ContainersImage, true, ""},
		{"skopeo-copy.tar", ContainersImage, true, ""},
		{"buildah-push.tar", ContainersImage, true, ""},
		{"docker20-save-by-id.tar", Docker24, false, ""},
		{"docker20-save-multi.tar", Docker24, false, ""}, // manifest.json order = Docker's map order
		{"crane-pull-multi.tar", Crane, true, ""},        // member order = crane's map order
		{"crane-pull-zstd.tar", Crane, true, ""},
		{"crane-pull-digest.tar", Crane, true, ""},
		{"crane-legacy.tar", CraneLegacy, false, "crane-pull-multi.tar"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			want := readFixture(t, tt.file)
			var registry *tarIndex
			if tt.registry != "" {
				var err error
				if registry, err = readArchive(readFixture(t, tt.registry)); err != nil {
					t.Fatal(err)
				}
			}
			got := build(t, imagesFrom(t, want, tt.byMembers, registry), Options{Layout: tt.layout})
			if bytes.Equal(got, want) {
				return
			}
			compareTars(t, got, want)
		})
	}
}

// compareTars reports member-level differences. The one difference allowed: Docker leaves
// the mtimes of a v1 directory whose layer.tar is a symlink at the wall clock, while Build
// uses the image's creation time.
func compareTars(t *testing.T, got, want []byte) {
	t.Helper()
	g, w := tarMembers(t, got), tarMembers(t, want)
	if len(g) != len(w) {
		t.Fatalf("%d members, the real tool wrote %d", len(g), len(w))
	}
	symlinkDirs := map[string]bool{}
	for _, m := range w {
		if m.hdr.Typeflag == tar.TypeSymlink {
			symlinkDirs[path.Dir(m.hdr.Name)] = true
		}
	}
	for i := range w {
		gh, wh := *g[i].hdr, *w[i].hdr
		if symlinkDirs[path.Dir(path.Clean(wh.Name))] || symlinkDirs[path.Clean(wh.Name)] {
			gh.ModTime = wh.ModTime
		}
		if !headersEqual(gh, wh) || !bytes.Equal(g[i].body, w[i].body) {
			t.Errorf("member %d: got %q %c %o %s/%s %v %d bytes, real tool %q %c %o %s/%s %v %d bytes",
				i, gh.Name, gh.Typeflag, gh.Mode, gh.Uname, gh.Gname, gh.ModTime.Unix(), len(g[i].body),
				wh.Name, wh.Typeflag, wh.Mode, wh.Uname, wh.Gname, wh.ModTime.Unix(), len(w[i].body))
		}
	}
}

func headersEqual(a, b tar.Header) bool {
	return a.Name == b.Name && a.Typeflag == b.Typeflag && a.Linkname == b.Linkname && a.Mode == b.Mode &&
		a.Uid == b.Uid && a.Gid == b.Gid && a.Uname == b.Uname && a.Gname == b.Gname &&
		a.Size == b.Size && a.ModTime.Equal(b.ModTime)
}

func tarMembers(t *testing.T, data []byte) []tarMember {
	t.Helper()
	var out []tarMember
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tarMember{hdr: h, body: body})
	}
}

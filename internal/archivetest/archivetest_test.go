package archivetest

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// standardImages covers the cases the layouts treat differently.
func standardImages() []Image {
	l1, l2, l3, l4 := Layer(1, 3, 700), Layer(2, 1, 100), Layer(3, 2, 1500), Layer(4, 1, 10)
	return []Image{
		// two tags, a docker.io short name and another registry
		{Tags: []string{"busybox:latest", "example.com/a:1"}, Layers: [][]byte{l1, l2}},
		// shares its base layer with the first image
		{Tags: []string{"docker.io/library/alpine:3"}, Layers: [][]byte{l1, l3}},
		// untagged; its only layer is another image's top layer (another v1 id, same diffID)
		{Layers: [][]byte{l2}},
		// the same layer twice in one image; a registry with a port
		{Tags: []string{"localhost:5000/repo/d:v1"}, Layers: [][]byte{l4, l4}},
		// the same image as the first (same generated config), tagged once more
		{Tags: []string{"example.com/a:2"}, Layers: [][]byte{l1, l2}},
	}
}

func build(t *testing.T, images []Image, opts Options) []byte {
	t.Helper()
	b, err := BuildBytes(images, opts)
	if err != nil {
		t.Fatalf("BuildBytes(%v): %v", opts.Layout, err)
	}
	return b
}

func readImages(t *testing.T, data []byte, l Layout) (*tarIndex, []ExpectedImage) {
	t.Helper()
	a, err := readArchive(data)
	if err != nil {
		t.Fatalf("reading the archive: %v", err)
	}
	var got []ExpectedImage
	if l == Legacy {
		got, err = a.legacyImages()
	} else {
		got, err = a.images()
	}
	if err != nil {
		t.Fatalf("reading images: %v", err)
	}
	return a, got
}

// compareExpected checks that what the archive holds is what Expect says.
func compareExpected(t *testing.T, got, want []ExpectedImage, layout Layout) {
	t.Helper()
	if layout == Legacy { // no manifest.json: no ID, no order
		key := func(x ExpectedImage) string { return fmt.Sprint(x.DiffIDs) }
		got, want = slices.Clone(got), slices.Clone(want)
		sort.Slice(got, func(i, j int) bool { return key(got[i]) < key(got[j]) })
		sort.Slice(want, func(i, j int) bool { return key(want[i]) < key(want[j]) })
		for i := range got {
			got[i].ID = ""
			sort.Strings(got[i].Tags)
		}
		for i := range want {
			want[i].Tags = slices.Clone(want[i].Tags)
			sort.Strings(want[i].Tags)
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("archive content differs from Expect:\n got: %+v\nwant: %+v", got, want)
	}
}

func TestLayouts(t *testing.T) {
	images := standardImages()
	for _, layout := range Layouts() {
		t.Run(layout.String(), func(t *testing.T) {
			opts := Options{Layout: layout, Seed: 7}
			data := build(t, images, opts)
			a, got := readImages(t, data, layout)
			want := Expect(images, opts)
			compareExpected(t, got, want, layout)

			wantCount := 4 // distinct images
			if layout == Crane {
				wantCount = 6 // one per reference, plus the untagged image
			}
			if len(want) != wantCount {
				t.Errorf("Expect returned %d images, want %d", len(want), wantCount)
			}
			checkLayout(t, a, layout, want)
		})
	}
}

// checkLayout checks the facts specific to each tool's output.
func checkLayout(t *testing.T, a *tarIndex, layout Layout, want []ExpectedImage) {
	t.Helper()
	names := make([]string, len(a.order))
	for i, m := range a.order {
		names[i] = m.hdr.Name
	}
	has := func(n string) bool { _, ok := a.byName[n]; return ok }
	count := func(pred func(tarMember) bool) int {
		n := 0
		for _, m := range a.order {
			if pred(m) {
				n++
			}
		}
		return n
	}
	isDir := func(m tarMember) bool { return m.hdr.Typeflag == tar.TypeDir }
	isSymlink := func(m tarMember) bool { return m.hdr.Typeflag == tar.TypeSymlink }
	rawManifest, _ := a.read("manifest.json")
	items, _ := a.manifest()

	for _, m := range a.order {
		if m.hdr.Uid != 0 || m.hdr.Gid != 0 {
			t.Errorf("%s: uid/gid %d/%d", m.hdr.Name, m.hdr.Uid, m.hdr.Gid)
		}
	}

	switch layout {
	case ContainersImage:
		if count(isDir) != 0 {
			t.Errorf("directory entries present")
		}
		for _, m := range a.order {
			wantMode := int64(0o444)
			if isSymlink(m) {
				wantMode = 0
				if !strings.HasSuffix(m.hdr.Name, "/layer.tar") || !strings.HasPrefix(m.hdr.Linkname, "../") || !strings.HasSuffix(m.hdr.Linkname, ".tar") {
					t.Errorf("symlink %s → %s", m.hdr.Name, m.hdr.Linkname)
				}
			}
			if m.hdr.Mode != wantMode || !m.hdr.ModTime.Equal(time.Unix(0, 0)) {
				t.Errorf("%s: mode %o mtime %v", m.hdr.Name, m.hdr.Mode, m.hdr.ModTime)
			}
		}
		if n := len(names); names[n-2] != "manifest.json" || names[n-1] != "repositories" {
			t.Errorf("manifest.json and repositories are not last: %v", names[n-2:])
		}
		// layers and configs once each
		if n := count(func(m tarMember) bool { return len(m.hdr.Name) == 64+4 && strings.HasSuffix(m.hdr.Name, ".tar") }); n != 4 {
			t.Errorf("%d layer members, want 4", n)
		}
		if !bytes.Contains(rawManifest, []byte(`"RepoTags":[]`)) {
			t.Errorf("untagged image without \"RepoTags\": []: %s", rawManifest)
		}
		if !slices.Contains(items[0].RepoTags, "docker.io/library/busybox:latest") {
			t.Errorf("tags not fully qualified: %q", items[0].RepoTags)
		}
		repos, _ := a.read("repositories")
		if !bytes.HasPrefix(repos, []byte(`{"docker.io/library/alpine":{"3":"`)) {
			t.Errorf("repositories: %s", repos)
		}

	case Docker24, Docker25, Legacy:
		if !slices.IsSortedFunc(names, func(x, y string) int {
			if walkLess(x, y) {
				return -1
			}
			if walkLess(y, x) {
				return 1
			}
			return 0
		}) {
			t.Errorf("members not in walk order: %q", names)
		}
		for _, m := range a.order {
			want, typeBits := int64(0o644), int64(0o100000)
			switch m.hdr.Typeflag {
			case tar.TypeDir:
				want, typeBits = 0o755, 0o40000
				if !strings.HasSuffix(m.hdr.Name, "/") {
					t.Errorf("directory %q without trailing slash", m.hdr.Name)
				}
			case tar.TypeSymlink:
				want, typeBits = 0o777, 0o120000
			}
			uname := "root" // Docker 20.10 and pre-1.10 Docker look the names up and set type bits
			if layout == Docker25 {
				typeBits, uname = 0, ""
			}
			if m.hdr.Mode != want|typeBits || m.hdr.Uname != uname || m.hdr.Gname != uname {
				t.Errorf("%s: mode %o %s/%s, want %o %s", m.hdr.Name, m.hdr.Mode, m.hdr.Uname, m.hdr.Gname, want|typeBits, uname)
			}
		}
		if layout == Legacy {
			if has("manifest.json") {
				t.Errorf("Legacy archive has manifest.json")
			}
			if !has("repositories") {
				t.Errorf("no repositories")
			}
			break
		}
		if !bytes.HasSuffix(rawManifest, []byte("]\n")) {
			t.Errorf("manifest.json is not json.Encoder output")
		}
		if !bytes.Contains(rawManifest, []byte(`"RepoTags":null`)) {
			t.Errorf("untagged image without \"RepoTags\": null")
		}
		if items[0].RepoTags[0] != "busybox:latest" {
			t.Errorf("docker.io name not familiar: %q", items[0].RepoTags)
		}
		if layout == Docker24 {
			if count(isDir) != count(func(m tarMember) bool { return path.Base(m.hdr.Name) == "VERSION" }) {
				t.Errorf("not one directory entry per v1 layer")
			}
			// l1 under 3 v1 ids? no: l2 is saved under 2 ids, l4 under 2 ids → 2 symlinks
			if n := count(isSymlink); n != 2 {
				t.Errorf("%d symlinks, want 2", n)
			}
			for _, m := range a.order {
				if isSymlink(m) && !(strings.HasPrefix(m.hdr.Linkname, "../") && strings.HasSuffix(m.hdr.Linkname, "/layer.tar")) {
					t.Errorf("symlink %s → %s", m.hdr.Name, m.hdr.Linkname)
				}
			}
		} else {
			checkDocker25(t, a, items, want)
		}

	case Crane:
		if has("repositories") || count(isDir) > 0 || count(isSymlink) > 0 {
			t.Errorf("unexpected repositories, directories or symlinks: %q", names)
		}
		if names[len(names)-1] != "manifest.json" {
			t.Errorf("manifest.json not last")
		}
		cfgs := count(func(m tarMember) bool { return strings.HasPrefix(m.hdr.Name, "sha256:") })
		if cfgs != len(want) {
			t.Errorf("%d config members, want one per reference (%d)", cfgs, len(want))
		}
		if len(uniq(names)) == len(names) {
			t.Errorf("no duplicate config member for the image with several references")
		}
		for _, m := range a.order {
			if strings.HasSuffix(m.hdr.Name, ".tar.gz") {
				if !bytes.HasPrefix(m.body, []byte{0x1f, 0x8b}) {
					t.Errorf("%s not gzip", m.hdr.Name)
				}
				if d := digest.FromBytes(m.body).Encoded() + ".tar.gz"; d != m.hdr.Name {
					t.Errorf("%s: named after %s", m.hdr.Name, d)
				}
			}
			if m.hdr.Mode != 0o644 {
				t.Errorf("%s: mode %o", m.hdr.Name, m.hdr.Mode)
			}
		}
		var joined []string
		for _, it := range items {
			joined = append(joined, strings.Join(it.RepoTags, ","))
			if len(it.RepoTags) > 1 {
				t.Errorf("crane entry with several tags: %q", it.RepoTags)
			}
		}
		if !slices.IsSorted(joined) {
			t.Errorf("manifest.json not sorted by RepoTags: %q", joined)
		}
		if !bytes.Contains(rawManifest, []byte(`"RepoTags":["busybox:latest"]`)) || bytes.Contains(rawManifest, []byte("LayerSources")) {
			t.Errorf("manifest.json: %s", rawManifest)
		}

	case CraneLegacy:
		if count(isSymlink) != 0 || count(isDir) != 0 {
			t.Errorf("symlinks or directories in crane legacy output")
		}
		// 6 v1 ids (the alpine and busybox bases share one); l2 and l4 are under two ids
		// each and stored in full under both.
		if n := count(func(m tarMember) bool { return path.Base(m.hdr.Name) == "layer.tar" }); n != 6 {
			t.Errorf("%d layer.tar members, want 6", n)
		}
		if n := len(names); names[n-2] != "manifest.json" || names[n-1] != "repositories" {
			t.Errorf("manifest.json and repositories are not last")
		}
		var cfgOrder []string
		for _, it := range items {
			cfgOrder = append(cfgOrder, it.Config)
			if !slices.IsSorted(it.RepoTags) {
				t.Errorf("tags not sorted: %q", it.RepoTags)
			}
		}
		if !slices.IsSorted(cfgOrder) {
			t.Errorf("images not sorted by config digest")
		}

	case BuildKit:
		if !slices.IsSorted(names) {
			t.Errorf("members not sorted by name: %q", names)
		}
		if has("repositories") || bytes.Contains(rawManifest, []byte("LayerSources")) {
			t.Errorf("repositories or LayerSources present")
		}
		idx, _ := a.read("index.json")
		var index map[string]json.RawMessage
		if err := json.Unmarshal(idx, &index); err != nil {
			t.Fatal(err)
		}
		if _, ok := index["mediaType"]; ok {
			t.Errorf("containerd's index.json has no mediaType: %s", idx)
		}
		checkOCIIndex(t, a, want, mediaTypeDockerManifest, mediaTypeDockerLayerGzip)
		layout, _ := a.read("oci-layout")
		if string(layout) != `{"imageLayoutVersion":"1.0.0"}` {
			t.Errorf("oci-layout: %s", layout)
		}
	}
}

func uniq(s []string) []string { return slices.Compact(slices.Sorted(slices.Values(s))) }

func checkDocker25(t *testing.T, a *tarIndex, items []rawItem, want []ExpectedImage) {
	t.Helper()
	for i, it := range items {
		if !strings.HasPrefix(it.Config, "blobs/sha256/") {
			t.Errorf("item %d: config %q", i, it.Config)
		}
		if len(it.LayerSources) == 0 {
			t.Errorf("item %d: no LayerSources", i)
		}
		for _, l := range it.Layers {
			d := digest.NewDigestFromEncoded(digest.SHA256, path.Base(l))
			src, ok := it.LayerSources[d]
			if !ok || src.Digest != d || src.MediaType != ocispec.MediaTypeImageLayer {
				t.Errorf("item %d: LayerSources[%s] = %+v", i, d, src)
			}
		}
	}
	layout, _ := a.read("oci-layout")
	if string(layout) != `{"imageLayoutVersion": "1.0.0"}` {
		t.Errorf("oci-layout: %s", layout)
	}
	if _, ok := a.byName["blobs"]; !ok {
		t.Errorf("no blobs/ directory entry")
	}
	checkOCIIndex(t, a, want, ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageLayer)
}

// checkOCIIndex checks that index.json's descriptors lead to the expected images.
func checkOCIIndex(t *testing.T, a *tarIndex, want []ExpectedImage, manifestMT, layerMT string) {
	t.Helper()
	idx, err := a.read("index.json")
	if err != nil {
		t.Fatal(err)
	}
	var index ocispec.Index
	if err := json.Unmarshal(idx, &index); err != nil {
		t.Fatal(err)
	}
	var tags []string
	for _, d := range index.Manifests {
		if d.MediaType != manifestMT {
			t.Errorf("descriptor media type %q", d.MediaType)
		}
		mb, err := a.read("blobs/sha256/" + d.Digest.Encoded())
		if err != nil || digest.FromBytes(mb) != d.Digest || int64(len(mb)) != d.Size {
			t.Errorf("manifest blob %s: %v", d.Digest, err)
			continue
		}
		var m ocispec.Manifest
		if err := json.Unmarshal(mb, &m); err != nil {
			t.Fatal(err)
		}
		var x *ExpectedImage
		for i := range want {
			if want[i].ID == m.Config.Digest {
				x = &want[i]
			}
		}
		if x == nil {
			t.Errorf("index.json names an unexpected config %s", m.Config.Digest)
			continue
		}
		if name := d.Annotations["io.containerd.image.name"]; name != "" {
			tags = append(tags, name)
			if !slices.Contains(x.Tags, name) {
				t.Errorf("annotation %q not a tag of %s", name, m.Config.Digest)
			}
			if ref := d.Annotations[ocispec.AnnotationRefName]; !strings.HasSuffix(name, ":"+ref) {
				t.Errorf("ref.name %q for %q", ref, name)
			}
		}
		for k, l := range m.Layers {
			lb, err := a.read("blobs/sha256/" + l.Digest.Encoded())
			if err != nil || digest.FromBytes(lb) != l.Digest || int64(len(lb)) != l.Size || l.MediaType != layerMT {
				t.Errorf("layer %d of %s: %+v: %v", k, d.Digest, l, err)
			}
			raw, _ := decompress(lb)
			if digest.FromBytes(raw) != x.DiffIDs[k] {
				t.Errorf("layer %d of %s does not decompress to its diffID", k, d.Digest)
			}
		}
	}
	var wantTags []string
	for _, x := range want {
		wantTags = append(wantTags, x.Tags...)
	}
	if !reflect.DeepEqual(uniq(tags), uniq(wantTags)) {
		t.Errorf("index.json names %q, want %q", tags, wantTags)
	}
}

func TestDeterministic(t *testing.T) {
	images := standardImages()
	for _, layout := range Layouts() {
		for _, comp := range []string{"", "gzip", "zstd", "xz"} {
			opts := Options{Layout: layout, Compression: comp, Seed: 3}
			first := build(t, images, opts)
			for i := 0; i < 3; i++ {
				if again := build(t, images, opts); !bytes.Equal(first, again) {
					t.Fatalf("%v %q: output differs between runs", layout, comp)
				}
			}
		}
	}
	if !bytes.Equal(Layer(5, 3, 1000), Layer(5, 3, 1000)) || bytes.Equal(Layer(5, 3, 1000), Layer(6, 3, 1000)) {
		t.Errorf("Layer is not a function of its seed")
	}
}

var update = flag.Bool("update", false, "rewrite testdata/digests.golden")

// TestGolden pins the exact bytes of every layout and edge case across runs, processes and
// refactors. After an intended change, regenerate with `go test ./internal/archivetest -update`.
func TestGolden(t *testing.T) {
	images := standardImages()
	var out strings.Builder
	for _, layout := range Layouts() {
		fmt.Fprintf(&out, "%-16s %s\n", layout, digest.FromBytes(build(t, images, Options{Layout: layout, Seed: 1})))
	}
	for _, c := range []struct {
		name string
		data []byte
	}{
		{"gzip-members", build(t, images, Options{Layout: ContainersImage, GzipMembers: true})},
		{"crane-zstd", build(t, images, Options{Layout: Crane, ZstdLayers: true})},
		{"buildkit-zstd", build(t, images, Options{Layout: BuildKit, ZstdLayers: true})},
		{"SymlinkChain", SymlinkChain()},
		{"HardlinkLayer", HardlinkLayer()},
		{"DuplicateMember", DuplicateMember()},
		{"EscapingSymlink", EscapingSymlink()},
		{"SymlinkCycle", SymlinkCycle()},
		{"LongChain(41)", LongChain(41)},
		{"ManifestDotDot", ManifestDotDot()},
		{"ManifestAbsolute", ManifestAbsolute()},
		{"NotATar", NotATar()},
		{"ExportedFS", ExportedFS()},
		{"BZhMember", BZhMember()},
	} {
		fmt.Fprintf(&out, "%-16s %s\n", c.name, digest.FromBytes(c.data))
	}
	const golden = "testdata/digests.golden"
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got := out.String(); got != string(want) {
		t.Errorf("output changed; if intended, run with -update.\n got:\n%s\nwant:\n%s", got, want)
	}
}

func TestOptions(t *testing.T) {
	images := standardImages()
	tests := []struct {
		name string
		opts Options
	}{
		{"gzip members, containers/image", Options{Layout: ContainersImage, GzipMembers: true}},
		{"gzip members, Docker24", Options{Layout: Docker24, GzipMembers: true}},
		{"gzip members, crane legacy", Options{Layout: CraneLegacy, GzipMembers: true}},
		{"gzip members, legacy", Options{Layout: Legacy, GzipMembers: true}},
		{"zstd crane layers", Options{Layout: Crane, ZstdLayers: true}},
		{"zstd BuildKit layers", Options{Layout: BuildKit, ZstdLayers: true}},
		{"manifest first, containers/image", Options{Layout: ContainersImage, ManifestFirst: true}},
		{"manifest first, Docker25", Options{Layout: Docker25, ManifestFirst: true}},
		{"./ prefix, Docker24", Options{Layout: Docker24, DotSlash: true}},
		{"./ prefix, crane", Options{Layout: Crane, DotSlash: true}},
		{"gzip archive", Options{Layout: Docker25, Compression: "gzip"}},
		{"zstd archive", Options{Layout: ContainersImage, Compression: "zstd"}},
		{"xz archive", Options{Layout: Crane, Compression: "xz"}},
		{"everything", Options{Layout: ContainersImage, GzipMembers: true, ManifestFirst: true, DotSlash: true, Compression: "gzip"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := build(t, images, tt.opts)
			a, got := readImages(t, data, tt.opts.Layout)
			compareExpected(t, got, Expect(images, tt.opts), tt.opts.Layout)
			switch tt.opts.Compression {
			case "gzip":
				if !bytes.HasPrefix(data, []byte{0x1f, 0x8b}) {
					t.Errorf("not gzip")
				}
			case "zstd":
				if !bytes.HasPrefix(data, []byte{0x28, 0xb5, 0x2f, 0xfd}) {
					t.Errorf("not zstd")
				}
			case "xz":
				if !bytes.HasPrefix(data, []byte("\xfd7zXZ\x00")) {
					t.Errorf("not xz")
				}
			}
			if tt.opts.ManifestFirst && path.Clean(a.order[0].hdr.Name) != "manifest.json" {
				t.Errorf("first member is %q", a.order[0].hdr.Name)
			}
			for _, m := range a.order {
				if tt.opts.DotSlash != strings.HasPrefix(m.hdr.Name, "./") {
					t.Errorf("member %q (DotSlash %v)", m.hdr.Name, tt.opts.DotSlash)
				}
			}
			if tt.opts.GzipMembers || tt.opts.ZstdLayers {
				rawSize := map[digest.Digest]int64{}
				for _, img := range images {
					for _, l := range img.Layers {
						rawSize[digest.FromBytes(l)] = int64(len(l))
					}
				}
				for _, x := range Expect(images, tt.opts) {
					for k, d := range x.DiffIDs {
						if rawSize[d] == x.Sizes[k] {
							t.Errorf("layer %s: size %d is the uncompressed size", d, x.Sizes[k])
						}
					}
				}
			}
		})
	}
}

func TestErrors(t *testing.T) {
	good := standardImages()
	tests := []struct {
		name   string
		images []Image
		opts   Options
		want   error
	}{
		{"bzip2 archive", good, Options{Compression: "bzip2"}, ErrUnsupportedCompression},
		{"unknown compression", good, Options{Compression: "lz4"}, ErrUnsupportedCompression},
		{"gzip members with crane", good, Options{Layout: Crane, GzipMembers: true}, ErrInvalidOptions},
		{"gzip members with Docker25", good, Options{Layout: Docker25, GzipMembers: true}, ErrInvalidOptions},
		{"zstd layers with Docker24", good, Options{Layout: Docker24, ZstdLayers: true}, ErrInvalidOptions},
		{"unknown layout", good, Options{Layout: Layout(99)}, ErrInvalidOptions},
		{"bad tag", []Image{{Tags: []string{"Busybox:latest"}, Layers: [][]byte{Layer(1, 1, 1)}}}, Options{}, ErrInvalidImage},
		{"digest reference", []Image{{Tags: []string{"busybox@sha256:" + strings.Repeat("a", 64)}, Layers: [][]byte{Layer(1, 1, 1)}}}, Options{}, ErrInvalidImage},
		{"config not JSON", []Image{{Config: []byte("{"), Layers: [][]byte{Layer(1, 1, 1)}}}, Options{}, ErrInvalidImage},
		{"config diff_ids mismatch", []Image{{Config: GenerateConfig(nil), Layers: [][]byte{Layer(1, 1, 1)}}}, Options{}, ErrInvalidImage},
		{"blob count differs from layer count", []Image{{Layers: [][]byte{Layer(1, 1, 1)}, Blobs: [][]byte{}}}, Options{Layout: Crane}, ErrInvalidImage},
		{"blob is not the layer", []Image{{Layers: [][]byte{Layer(1, 1, 1)}, Blobs: [][]byte{GzipBytes(Layer(2, 1, 1))}}}, Options{Layout: Crane}, ErrInvalidImage},
		{"docker cannot save a layerless image", []Image{{}}, Options{Layout: Docker24}, ErrInvalidImage},
		{"crane refuses an empty archive", nil, Options{Layout: Crane}, ErrInvalidImage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := BuildBytes(tt.images, tt.opts)
			if !errors.Is(err, tt.want) {
				t.Errorf("BuildBytes: %v, want %v", err, tt.want)
			}
			if Expect(tt.images, tt.opts) != nil {
				t.Errorf("Expect is not nil for a failing Build")
			}
		})
	}
}

func TestEdgeCases(t *testing.T) {
	want := EdgeExpected()
	valid := []struct {
		name string
		data []byte
	}{
		{"symlink chain", SymlinkChain()},
		{"hard link", HardlinkLayer()},
		{"duplicate member, last wins", DuplicateMember()},
		{"manifest path with .. inside", ManifestDotDotInside()},
		{"chain of 40", LongChain(40)},
		{"BZh member name", BZhMember()},
	}
	for _, tt := range valid {
		t.Run(tt.name, func(t *testing.T) {
			a, err := readArchive(tt.data)
			if err != nil {
				t.Fatal(err)
			}
			got, err := a.images()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, []ExpectedImage{want}) {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
	invalid := []struct {
		name string
		data []byte
		want string
	}{
		{"escaping symlink", EscapingSymlink(), errEscape.Error()},
		{"symlink cycle", SymlinkCycle(), "too many links"},
		{"chain of 41", LongChain(41), "too many links"},
		{"manifest ..", ManifestDotDot(), errEscape.Error()},
		{"manifest absolute", ManifestAbsolute(), errEscape.Error()},
		{"docker export", ExportedFS(), "no such member"},
	}
	for _, tt := range invalid {
		t.Run(tt.name, func(t *testing.T) {
			a, err := readArchive(tt.data)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := a.images(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
	t.Run("not a tar", func(t *testing.T) {
		if _, err := readArchive(NotATar()); err == nil {
			t.Errorf("NotATar reads as a tar")
		}
	})
	t.Run("hostile names kept verbatim", func(t *testing.T) {
		data := Tar([]Entry{{Name: "../x"}, {Name: "/abs"}, {Name: "dup", Body: []byte("1")}, {Name: "dup", Body: []byte("2")}})
		a, err := readArchive(data)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, m := range a.order {
			names = append(names, m.hdr.Name)
		}
		if !reflect.DeepEqual(names, []string{"../x", "/abs", "dup", "dup"}) {
			t.Errorf("names %q", names)
		}
		if string(a.byName["dup"].body) != "2" {
			t.Errorf("last duplicate not kept")
		}
	})
	t.Run("BZh", func(t *testing.T) {
		if !bytes.HasPrefix(BZhMember(), []byte("BZh91AY&SY")) {
			t.Errorf("BZhMember does not start with bzip2 magic")
		}
	})
	t.Run("empty layer", func(t *testing.T) {
		if d := digest.FromBytes(Layer(0, 0, 0)); d != "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef" {
			t.Errorf("empty layer digest %s", d)
		}
	})
}

func TestBigArchive(t *testing.T) {
	tests := []struct{ images, members int }{
		{0, 0},
		{1, 1},
		{2, 100},
		{1000, 10000},
	}
	if !testing.Short() {
		tests = append(tests, struct{ images, members int }{10000, 100000})
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d/%d", tt.images, tt.members), func(t *testing.T) {
			pr, pw := io.Pipe()
			errc := make(chan error, 1)
			go func() {
				n, err := BigArchive(pw, tt.images, tt.members)
				if err == nil && n != tt.images {
					err = fmt.Errorf("BigArchive returned %d images", n)
				}
				pw.CloseWithError(err)
				errc <- err
			}()
			tr := tar.NewReader(pr)
			members := 0
			var manifest []byte
			for {
				h, err := tr.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				members++
				if h.Name == "manifest.json" {
					manifest, _ = io.ReadAll(tr)
				}
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			if want := BigArchiveMembers(tt.images, tt.members); members != want {
				t.Errorf("%d members, BigArchiveMembers says %d", members, want)
			}
			if tt.members > 5*tt.images+14 && (members > tt.members || members < tt.members-3) {
				t.Errorf("%d members, asked for about %d", members, tt.members)
			}
			var items []ManifestItem
			if err := json.Unmarshal(manifest, &items); err != nil || len(items) != tt.images {
				t.Errorf("manifest.json: %d items, %v", len(items), err)
			}
		})
	}
	t.Run("valid", func(t *testing.T) {
		var buf bytes.Buffer
		if _, err := BigArchive(&buf, 50, 400); err != nil {
			t.Fatal(err)
		}
		_, got := readImages(t, buf.Bytes(), ContainersImage)
		if len(got) != 50 {
			t.Fatalf("%d images", len(got))
		}
		for _, x := range got {
			if len(x.Tags) != 1 || len(x.DiffIDs) < 2 {
				t.Errorf("image %+v", x)
			}
		}
	})
}

func BenchmarkBigArchive(b *testing.B) {
	var cw countingWriter
	for i := 0; i < b.N; i++ {
		cw = 0
		if _, err := BigArchive(&cw, 1000, 10000); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(cw))
}

type countingWriter int64

func (c *countingWriter) Write(p []byte) (int, error) {
	*c += countingWriter(len(p))
	return len(p), nil
}

// TestVariantsBuild: Variants promises that Build accepts each of them.
func TestVariantsBuild(t *testing.T) {
	for _, v := range Variants() {
		if _, err := BuildBytes([]Image{{Tags: []string{"a:1"}, Layers: [][]byte{Layer(1, 1, 10)}}}, v.Opts); err != nil {
			t.Errorf("%s: %v", v.Name, err)
		}
	}
}

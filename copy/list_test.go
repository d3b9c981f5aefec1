package copy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/darc-dev/darc/archive"
	dcopy "github.com/darc-dev/darc/copy"
	"github.com/darc-dev/darc/internal/archivetest"
	"github.com/darc-dev/darc/internal/testtools"
)

const ctrFixtures = "../testdata/archives/ctr"

// ctrList returns the manifest list of a containerd-exported fixture, from expected.json.
func ctrList(t *testing.T, file string) archivetest.CtrImage {
	t.Helper()
	all, err := archivetest.CtrFixtures(ctrFixtures)
	if err != nil {
		t.Fatal(err)
	}
	f, ok := archivetest.Fixture(all, file)
	if !ok || len(f.Images) == 0 || f.Images[0].Kind != "index" {
		t.Fatalf("%s: no manifest list in expected.json", file)
	}
	return f.Images[0]
}

// loadCtr loads a containerd-exported fixture into dest with opts.
func loadCtr(t *testing.T, file, dest string, opts ...dcopy.Option) ([]dcopy.Result, error) {
	t.Helper()
	a, err := archive.Open(filepath.Join(ctrFixtures, file))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	d, err := dcopy.ParseDestination(dest)
	if err != nil {
		t.Fatal(err)
	}
	return dcopy.Load(context.Background(), a, d, nil, opts...)
}

// layoutTop returns the descriptor index.json of an OCI layout names first.
func layoutTop(t *testing.T, dir string) imgspecv1.Descriptor {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx imgspecv1.Index
	if err := json.Unmarshal(data, &idx); err != nil || len(idx.Manifests) == 0 {
		t.Fatalf("index.json: %v %s", err, data)
	}
	return idx.Manifests[0]
}

// TestLoadKeepsManifestList: an image that is one platform of a manifest list goes into an
// OCI layout as the list, its digest unchanged when the archive holds every manifest of it.
// (A Docker manifest list becomes an OCI index there, as containers/image converts it: see
// TestLoadManifestListRegistry for it.)
func TestLoadKeepsManifestList(t *testing.T) {
	want := ctrList(t, "all-platforms.tar")
	dir := filepath.Join(t.TempDir(), "layout")
	res, err := loadCtr(t, "all-platforms.tar", "oci:"+dir)
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Manifest != want.Digest || res[0].List != want.Digest || len(res[0].Left) != 0 || len(res[0].Platforms) != 3 {
		t.Errorf("result %+v, want the list %s with 3 platforms", res[0], want.Digest)
	}
	if got := layoutTop(t, dir); got.Digest != want.Digest {
		t.Errorf("the layout names %s, want the list %s", got.Digest, want.Digest)
	}
}

// TestLoadTrimsManifestList: a list whose other platforms the archive lacks goes in without
// them, and the result says which were left out.
func TestLoadTrimsManifestList(t *testing.T) {
	want := ctrList(t, "one-platform.tar")
	dir := filepath.Join(t.TempDir(), "layout")
	res, err := loadCtr(t, "one-platform.tar", "oci:"+dir)
	if err != nil {
		t.Fatal(err)
	}
	r := res[0]
	if r.List != want.Digest || r.Manifest == want.Digest || strings.Join(r.Platforms, ",") != "linux/amd64" ||
		strings.Join(r.Left, ",") != "linux/arm64/v8 (absent),linux/arm/v7 (absent)" {
		t.Fatalf("result %+v", r)
	}
	top := layoutTop(t, dir)
	if top.Digest != r.Manifest {
		t.Fatalf("the layout names %s, the result %s", top.Digest, r.Manifest)
	}
	data, err := os.ReadFile(filepath.Join(dir, "blobs", "sha256", top.Digest.Encoded()))
	if err != nil {
		t.Fatal(err)
	}
	var idx imgspecv1.Index
	if err := json.Unmarshal(data, &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 1 || idx.Manifests[0].Digest != want.Children[0].Digest {
		t.Errorf("the list written holds %+v, want the amd64 manifest %s alone", idx.Manifests, want.Children[0].Digest)
	}
}

// TestLoadPlatformChoices: --platform takes one platform, or fails naming what the archive
// holds; all insists on lists and fails for dir:, which holds one manifest per image.
func TestLoadPlatformChoices(t *testing.T) {
	arm64 := dcopy.Platform{OS: "linux", Architecture: "arm64"}
	res, err := loadCtr(t, "all-platforms.tar", "oci:"+filepath.Join(t.TempDir(), "l"), dcopy.WithPlatform(arm64))
	if err != nil {
		t.Fatal(err)
	}
	if want := ctrList(t, "all-platforms.tar").Children[1].Config.Digest; res[0].ImageID != want || len(res[0].Left) != 0 {
		t.Errorf("result %+v, want the arm64 image %s", res[0], want)
	}
	_, err = loadCtr(t, "one-platform.tar", "oci:"+filepath.Join(t.TempDir(), "l"), dcopy.WithPlatform(arm64))
	if !errors.Is(err, archive.ErrPlatformNotFound) || !strings.Contains(err.Error(), "linux/arm64/v8 (absent)") {
		t.Errorf("arm64 of one-platform.tar: got %v, want ErrPlatformNotFound naming it absent", err)
	}
	dir := t.TempDir()
	if _, err := loadCtr(t, "all-platforms.tar", "dir:"+dir, dcopy.WithAllPlatforms()); err == nil || !strings.Contains(err.Error(), "holds one manifest per image") {
		t.Errorf("all platforms into dir: got %v", err)
	}
	if _, err := loadCtr(t, "all-platforms.tar", "dir:"+dir, dcopy.WithAllPlatforms(), dcopy.WithPlatform(arm64)); !errors.Is(err, dcopy.ErrInvalidOption) {
		t.Errorf("both options: got %v, want ErrInvalidOption", err)
	}
}

// TestLoadStreamKeepsManifestList: a single pass writes a manifest list as Load does from
// the file: the same list, with the same digest, or the same trimmed list.
func TestLoadStreamKeepsManifestList(t *testing.T) {
	for _, file := range []string{"all-platforms.tar", "one-platform.tar"} {
		t.Run(file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(ctrFixtures, file))
			if err != nil {
				t.Fatal(err)
			}
			fromFile, err := loadCtr(t, file, "oci:"+filepath.Join(t.TempDir(), "l"))
			if err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(t.TempDir(), "l")
			d, err := dcopy.ParseDestination("oci:" + dir)
			if err != nil {
				t.Fatal(err)
			}
			res, err := dcopy.LoadStream(context.Background(), bytes.NewReader(data), d, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, want := res[0], fromFile[0]
			if got.Manifest != want.Manifest || got.List != want.List || !slices.Equal(got.Platforms, want.Platforms) || !slices.Equal(got.Left, want.Left) {
				t.Errorf("single pass %+v\nfrom the file %+v", got, want)
			}
			if top := layoutTop(t, dir); top.Digest != want.Manifest {
				t.Errorf("the layout names %s, want %s", top.Digest, want.Manifest)
			}
			arm64 := dcopy.WithPlatform(dcopy.Platform{OS: "linux", Architecture: "arm64"})
			if _, err := dcopy.LoadStream(context.Background(), bytes.NewReader(data), d, nil, arm64); !errors.Is(err, dcopy.ErrStreamUnsupported) {
				t.Errorf("WithPlatform: got %v, want ErrStreamUnsupported", err)
			}
		})
	}
}

// TestLoadManifestListRegistry: into a registry an OCI index and a Docker manifest list keep
// their digests, loaded from the file or in a single pass, as skopeo reads them back.
func TestLoadManifestListRegistry(t *testing.T) {
	skopeo := testtools.Require(t, "skopeo")
	reg := testtools.StartRegistry(t, "")
	for file, repo := range map[string]string{"all-platforms.tar": "darc/multi:1", "manifest-list.tar": "darc/list:1"} {
		want := ctrList(t, file)
		if _, err := loadCtr(t, file, "docker://"+reg.Addr+"/team", dcopy.WithSystemContext(insecureSys())); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join(ctrFixtures, file))
		if err != nil {
			t.Fatal(err)
		}
		d, err := dcopy.ParseDestination("docker://" + reg.Addr + "/stream")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dcopy.LoadStream(context.Background(), bytes.NewReader(data), d, nil, dcopy.WithSystemContext(insecureSys())); err != nil {
			t.Fatal(err)
		}
		for _, prefix := range []string{"team", "stream"} {
			raw, err := testtools.Run(context.Background(), skopeo, "inspect", "--raw", "--tls-verify=false", "docker://"+reg.Addr+"/"+prefix+"/"+repo)
			if err != nil {
				t.Fatal(err)
			}
			if got := digest.FromBytes(raw); got != want.Digest {
				t.Errorf("%s under %s: skopeo inspect --raw: %s, want the archive's list %s\n%s", file, prefix, got, want.Digest, raw)
			}
		}
	}
}

// TestLoadForeignLayer: a foreign layer the archive lacks goes into an OCI layout as
// containers/image copies one: a reference with its URLs, no blob.
func TestLoadForeignLayer(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "layout")
	if _, err := loadCtr(t, "foreign-layer.tar", "oci:"+dir); err != nil {
		t.Fatal(err)
	}
	top := layoutTop(t, dir)
	data, err := os.ReadFile(filepath.Join(dir, "blobs", "sha256", top.Digest.Encoded()))
	if err != nil {
		t.Fatal(err)
	}
	var m imgspecv1.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Layers) != 2 || strings.Join(m.Layers[1].URLs, ",") != "https://example.com/darc/foreign/layer.tar.gz" {
		t.Fatalf("manifest written: %s", data)
	}
	if _, err := os.Stat(filepath.Join(dir, "blobs", "sha256", m.Layers[1].Digest.Encoded())); err == nil {
		t.Errorf("the foreign layer's blob is in the layout")
	}
}

// mergeCtr merges a containerd-exported fixture into a new archive of layout l and opens the
// result.
func mergeCtr(t *testing.T, file string, l archive.Layout, opts ...dcopy.Option) ([]dcopy.Result, *archive.ReadableArchive) {
	t.Helper()
	in, err := archive.Open(filepath.Join(ctrFixtures, file))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	path := filepath.Join(t.TempDir(), "out.tar")
	w, err := archive.Create(path, archive.WithLayout(l))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	res, err := dcopy.Merge(context.Background(), w, []*archive.ReadableArchive{in}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	out, err := archive.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	return res, out
}

// TestMergeKeepsManifestList: into layout oci an image that is one platform of a list goes
// as the list (its digest kept when the archive holds all of it, trimmed otherwise), with
// manifest.json naming the host's platform; layout docker takes that platform alone and says
// so.
func TestMergeKeepsManifestList(t *testing.T) {
	want := ctrList(t, "all-platforms.tar")
	t.Run("whole list", func(t *testing.T) {
		_, out := mergeCtr(t, "all-platforms.tar", archive.LayoutOCI)
		img := out.Images()[0]
		if img.List == nil || img.List.Digest != want.Digest || len(img.List.Complete) != 4 || img.ID != want.Children[0].Config.Digest {
			t.Fatalf("image %+v, list %+v: want list %s, 4 manifests complete, amd64's image listed", img, img.List, want.Digest)
		}
		for _, p := range out.Verify(context.Background(), 2) {
			t.Errorf("verify: %v", p)
		}
	})
	t.Run("trimmed list", func(t *testing.T) {
		res, out := mergeCtr(t, "one-platform.tar", archive.LayoutOCI)
		l := out.Images()[0].List
		if l == nil || l.Digest != res[0].Manifest || l.Digest == want.Digest || len(l.Platforms) != 1 || !l.Platforms[0].Complete() {
			t.Fatalf("list %+v, result %+v: want a new list of linux/amd64 alone", l, res[0])
		}
	})
	t.Run("layout docker", func(t *testing.T) {
		res, out := mergeCtr(t, "all-platforms.tar", archive.LayoutDocker)
		if img := out.Images()[0]; img.List != nil || img.ID != want.Children[0].Config.Digest {
			t.Fatalf("image %+v: want amd64's image, no list", img)
		}
		if len(res[0].Left) != 2 || !strings.Contains(res[0].Left[0], "holds one platform per image") {
			t.Errorf("result %+v: want the other platforms noted", res[0])
		}
	})
}

// TestLoadPlatformList: several platforms go as a list of them (with the attestation of the
// ones taken), or fail when the archive does not hold one of them completely.
func TestLoadPlatformList(t *testing.T) {
	want := ctrList(t, "all-platforms.tar")
	two := dcopy.WithPlatforms(dcopy.Platform{OS: "linux", Architecture: "amd64"}, dcopy.Platform{OS: "linux", Architecture: "arm64"})
	dir := filepath.Join(t.TempDir(), "layout")
	res, err := loadCtr(t, "all-platforms.tar", "oci:"+dir, two)
	if err != nil {
		t.Fatal(err)
	}
	if r := res[0]; strings.Join(r.Platforms, ",") != "linux/amd64,linux/arm64/v8" || strings.Join(r.Left, ",") != "linux/arm/v7 (not asked for)" {
		t.Errorf("result %+v", r)
	}
	data, err := os.ReadFile(filepath.Join(dir, "blobs", "sha256", layoutTop(t, dir).Digest.Encoded()))
	if err != nil {
		t.Fatal(err)
	}
	var idx imgspecv1.Index
	if err := json.Unmarshal(data, &idx); err != nil {
		t.Fatal(err)
	}
	var got []digest.Digest
	for _, d := range idx.Manifests {
		got = append(got, d.Digest)
	}
	// amd64, arm64 and amd64's attestation, in the list's order.
	if exp := []digest.Digest{want.Children[0].Digest, want.Children[1].Digest, want.Children[3].Digest}; !slices.Equal(got, exp) {
		t.Errorf("the list written holds %v, want %v", got, exp)
	}
	_, err = loadCtr(t, "one-platform.tar", "oci:"+filepath.Join(t.TempDir(), "l"), two)
	if !errors.Is(err, archive.ErrPlatformNotFound) {
		t.Errorf("one-platform.tar: got %v, want ErrPlatformNotFound", err)
	}
}

// TestManifestListRoundTrip: a multi-platform image goes registry → archive → registry with
// its index digest, which signatures and @sha256 pins refer to, unchanged. skopeo copies
// containerd's all-platforms.tar into the registry (`copy --all`); copy.Save with
// WithAllPlatforms writes it into a LayoutOCI archive, which holds the index and every
// platform completely; copy.Load pushes that archive under another prefix, and skopeo
// reads back the same index there, and every manifest it names.
func TestManifestListRoundTrip(t *testing.T) {
	skopeo := testtools.Require(t, "skopeo")
	reg := testtools.StartRegistry(t, "")
	ctx := context.Background()
	want := ctrList(t, "all-platforms.tar")
	fixture, err := filepath.Abs(filepath.Join(ctrFixtures, "all-platforms.tar"))
	if err != nil {
		t.Fatal(err)
	}
	orig := reg.Addr + "/orig/multi:1"
	if _, err := testtools.Run(ctx, skopeo, "--insecure-policy", "copy", "-q", "--all", "--dest-tls-verify=false",
		"oci-archive:"+fixture, "docker://"+orig); err != nil {
		t.Fatalf("skopeo copy --all: %v", err)
	}
	inspectRaw := func(ref string) digest.Digest {
		t.Helper()
		raw, err := testtools.Run(ctx, skopeo, "inspect", "--raw", "--tls-verify=false", "docker://"+ref)
		if err != nil {
			t.Fatalf("skopeo inspect --raw %s: %v", ref, err)
		}
		return digest.FromBytes(raw)
	}
	if got := inspectRaw(orig); got != want.Digest {
		t.Fatalf("skopeo copy --all pushed %s, want the fixture's index %s", got, want.Digest)
	}

	// Registry → archive.
	path := filepath.Join(t.TempDir(), "multi.tar")
	w, err := archive.Create(path, archive.WithLayout(archive.LayoutOCI))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	src, err := dcopy.ParseSource("docker://" + orig)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dcopy.Save(ctx, w, []dcopy.Source{{Ref: src}}, dcopy.WithAllPlatforms(), dcopy.WithSystemContext(insecureSys())); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	a, err := archive.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	imgs := a.Images()
	if len(imgs) != 1 || imgs[0].List == nil {
		t.Fatalf("archive images %+v, want one image of a manifest list", imgs)
	}
	list := imgs[0].List
	if list.Digest != want.Digest {
		t.Errorf("archive list %s, want the registry's index %s", list.Digest, want.Digest)
	}
	if list.Manifests != len(want.Children) || len(list.Complete) != len(want.Children) {
		t.Errorf("archive holds %d of the list's %d manifests completely, want all %d", len(list.Complete), list.Manifests, len(want.Children))
	}
	for _, p := range list.Platforms {
		if !p.Complete() {
			t.Errorf("platform %s", p)
		}
	}
	for _, p := range a.Verify(ctx, 2) {
		if !p.Warning {
			t.Errorf("verify: %v", p)
		}
	}

	// Archive → registry, under another prefix.
	dest, err := dcopy.ParseDestination("docker://" + reg.Addr + "/copy")
	if err != nil {
		t.Fatal(err)
	}
	res, err := dcopy.Load(ctx, a, dest, nil, dcopy.WithSystemContext(insecureSys()))
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].Manifest != want.Digest || len(res[0].Left) != 0 {
		t.Errorf("load results %+v, want the list %s whole", res, want.Digest)
	}
	if got := inspectRaw(reg.Addr + "/copy/orig/multi:1"); got != want.Digest {
		t.Errorf("skopeo inspect --raw after load: %s, want the index %s", got, want.Digest)
	}
	for _, c := range want.Children {
		if got := inspectRaw(reg.Addr + "/copy/orig/multi@" + c.Digest.String()); got != c.Digest {
			t.Errorf("manifest %s of the list: registry serves %s", c.Digest, got)
		}
	}
}

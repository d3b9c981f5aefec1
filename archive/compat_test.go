package archive_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	distref "github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/copy"
	ciarchive "go.podman.io/image/v5/docker/archive"
	"go.podman.io/image/v5/image"
	"go.podman.io/image/v5/types"

	"github.com/darc-dev/darc/archive"
	dcopy "github.com/darc-dev/darc/copy"
	"github.com/darc-dev/darc/internal/archivetest"
	"github.com/darc-dev/darc/internal/testtools"
	"github.com/darc-dev/darc/reference"
)

// wantImage is what every reader must find for one image of an archive: tags normalized
// (empty for untagged), ID and diffIDs.
type wantImage = wtImage

// normalizeAll normalizes tags as written by some tool ("busybox:1", "localhost/x:1").
func normalizeAll(t *testing.T, tags []string) []string {
	t.Helper()
	out := []string{}
	for _, s := range tags {
		if s == "" || strings.Contains(s, "<none>") {
			continue
		}
		nt, err := reference.NormalizeTag(s)
		if err != nil {
			t.Fatalf("tag %q: %v", s, err)
		}
		out = append(out, nt.String())
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func sortedCopy(s []string) []string {
	c := append([]string{}, s...)
	slices.Sort(c)
	if c == nil {
		c = []string{}
	}
	return c
}

type configDoc struct {
	RootFS struct {
		DiffIDs []digest.Digest `json:"diff_ids"`
	} `json:"rootfs"`
}

func diffIDsOf(t *testing.T, config []byte) []digest.Digest {
	t.Helper()
	var c configDoc
	if err := json.Unmarshal(config, &c); err != nil {
		t.Fatal(err)
	}
	return c.RootFS.DiffIDs
}

// checkExternalReaders has every reader we can run here read the archive at path and compare
// images, tags and diffIDs with want (in archive order).
func checkExternalReaders(t *testing.T, path string, want []wantImage) {
	t.Run("containers-image", func(t *testing.T) { checkContainersImage(t, path, want) })
	t.Run("go-containerregistry", func(t *testing.T) { checkGGCR(t, path, want) })
	t.Run("skopeo", func(t *testing.T) { checkSkopeo(t, path, want) })
	t.Run("podman-load", func(t *testing.T) { checkPodman(t, path, want) })
	t.Run("docker-load", func(t *testing.T) { checkDocker(t, path, want) })
}

// checkContainersImage uses containers/image's own docker-archive reader, in process.
func checkContainersImage(t *testing.T, path string, want []wantImage) {
	ctx := context.Background()
	r, err := ciarchive.NewReader(&types.SystemContext{}, path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	lists, err := r.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(lists) != len(want) {
		t.Fatalf("listed %d images, want %d", len(lists), len(want))
	}
	for i, refs := range lists {
		var tags []string
		for _, ref := range refs {
			if n := ref.DockerReference(); n != nil {
				tags = append(tags, n.String())
			}
		}
		if got := normalizeAll(t, tags); !slices.Equal(got, sortedCopy(want[i].Tags)) {
			t.Errorf("@%d tags %q, want %q", i, got, want[i].Tags)
		}
		img, err := refs[0].NewImage(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := img.ConfigBlob(ctx)
		img.Close()
		if err != nil {
			t.Fatal(err)
		}
		if id := digest.FromBytes(cfg); id != want[i].ID {
			t.Errorf("@%d ID %s, want %s", i, id, want[i].ID)
		}
		if got := diffIDsOf(t, cfg); !slices.Equal(got, want[i].DiffIDs) {
			t.Errorf("@%d diffIDs %v, want %v", i, got, want[i].DiffIDs)
		}
		// Read every layer through containers/image's source: this checks blob lookups.
		src, err := refs[0].NewImageSource(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		uimg, err := image.FromUnparsedImage(ctx, nil, image.UnparsedInstance(src, nil))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range uimg.LayerInfos() {
			rc, _, err := src.GetBlob(ctx, l, nil)
			if err != nil {
				t.Fatalf("@%d layer %s: %v", i, l.Digest, err)
			}
			rc.Close()
		}
		src.Close()
	}
}

// checkGGCR uses go-containerregistry's tarball reader (what crane uses), in process. It can
// only address tagged images, so untagged ones are checked by the tagged ones' absence of
// surprises only.
func checkGGCR(t *testing.T, path string, want []wantImage) {
	opener := func() (io.ReadCloser, error) { return os.Open(path) }
	for i, w := range want {
		for _, tg := range w.Tags {
			tag, err := name.NewTag(tg)
			if err != nil {
				t.Fatal(err)
			}
			img, err := tarball.Image(opener, &tag)
			if err != nil {
				t.Fatalf("@%d %s: %v", i, tg, err)
			}
			cfgName, err := img.ConfigName()
			if err != nil {
				t.Fatal(err)
			}
			if cfgName.String() != w.ID.String() {
				t.Errorf("@%d %s: config %s, want %s", i, tg, cfgName, w.ID)
			}
			layers, err := img.Layers()
			if err != nil {
				t.Fatal(err)
			}
			var diffIDs []digest.Digest
			for _, l := range layers {
				d, err := l.DiffID()
				if err != nil {
					t.Fatal(err)
				}
				diffIDs = append(diffIDs, digest.Digest(d.String()))
				rc, err := l.Compressed()
				if err != nil {
					t.Fatal(err)
				}
				rc.Close()
			}
			if !slices.Equal(diffIDs, w.DiffIDs) {
				t.Errorf("@%d %s: diffIDs %v, want %v", i, tg, diffIDs, w.DiffIDs)
			}
		}
	}
}

// checkSkopeo reads each image's config with `skopeo inspect --config --raw` and copies each
// image to an OCI layout with `skopeo copy`.
func checkSkopeo(t *testing.T, path string, want []wantImage) {
	skopeo := testtools.Require(t, "skopeo")
	ctx := context.Background()
	for i, w := range want {
		ref := fmt.Sprintf("docker-archive:%s:@%d", path, i)
		cfg, err := testtools.Run(ctx, skopeo, "--insecure-policy", "inspect", "--config", "--raw", ref)
		if err != nil {
			t.Fatal(err)
		}
		if id := digest.FromBytes(cfg); id != w.ID {
			t.Errorf("@%d ID %s, want %s", i, id, w.ID)
		}
		if got := diffIDsOf(t, cfg); !slices.Equal(got, w.DiffIDs) {
			t.Errorf("@%d diffIDs %v, want %v", i, got, w.DiffIDs)
		}
		dst := fmt.Sprintf("oci:%s:img", filepath.Join(t.TempDir(), "layout"))
		if _, err := testtools.Run(ctx, skopeo, "--insecure-policy", "copy", "-q", ref, dst); err != nil {
			t.Errorf("@%d skopeo copy: %v", i, err)
		}
	}
}

// checkPodman loads the archive into a fresh podman store and compares what it lists.
func checkPodman(t *testing.T, path string, want []wantImage) {
	p := testtools.NewPodman(t)
	p.Run(t, "load", "-q", "-i", path)
	var imgs []struct {
		ID    string   `json:"Id"`
		Names []string `json:"Names"`
	}
	if err := json.Unmarshal(p.Run(t, "images", "--format", "json"), &imgs); err != nil {
		t.Fatal(err)
	}
	for i, w := range want {
		found := false
		for _, img := range imgs {
			if "sha256:"+img.ID != w.ID.String() {
				continue
			}
			found = true
			if got := normalizeAll(t, img.Names); !slices.Equal(got, sortedCopy(w.Tags)) {
				t.Errorf("@%d names %q, want %q", i, got, w.Tags)
			}
			var rootfs struct {
				Layers []digest.Digest `json:"Layers"`
			}
			if err := json.Unmarshal(p.Run(t, "image", "inspect", "--format", "{{json .RootFS}}", img.ID), &rootfs); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(rootfs.Layers, w.DiffIDs) {
				t.Errorf("@%d layers %v, want %v", i, rootfs.Layers, w.DiffIDs)
			}
		}
		if !found {
			t.Errorf("@%d: podman has no image %s after load", i, w.ID)
		}
	}
}

// checkDocker loads the archive into dockerd 20.10 and compares its images.
func checkDocker(t *testing.T, path string, want []wantImage) {
	d := testtools.StartDockerd(t)
	d.Run(t, "load", "-q", "-i", path)
	checkDockerImages(t, d, want)
}

// checkDockerImages compares the images docker has with want.
func checkDockerImages(t *testing.T, d *testtools.Docker, want []wantImage) {
	for i, w := range want {
		var insp []struct {
			ID       string
			RepoTags []string
			RootFS   struct{ Layers []digest.Digest }
		}
		if err := json.Unmarshal(d.Run(t, "image", "inspect", w.ID.String()), &insp); err != nil {
			t.Fatal(err)
		}
		if len(insp) != 1 {
			t.Fatalf("@%d: docker image inspect returned %d images", i, len(insp))
		}
		if got := normalizeAll(t, insp[0].RepoTags); !slices.Equal(got, sortedCopy(w.Tags)) {
			t.Errorf("@%d tags %q, want %q", i, got, w.Tags)
		}
		if !slices.Equal(insp[0].RootFS.Layers, w.DiffIDs) {
			t.Errorf("@%d layers %v, want %v", i, insp[0].RootFS.Layers, w.DiffIDs)
		}
	}
}

// TestExternalReadersOnFixture runs the harness on an archive podman wrote, which every
// reader accepts: it shows the checks themselves work before they judge what darc writes.
func TestExternalReadersOnFixture(t *testing.T) {
	if testing.Short() {
		t.Skip("starts dockerd and podman")
	}
	path, err := filepath.Abs(filepath.Join(fixtureDir, "podman-save-m.tar"))
	if err != nil {
		t.Fatal(err)
	}
	checkExternalReaders(t, path, wtReadBack(t, path))
}

// TestCompatibilityMatrix writes archives with darc in both layouts (three images sharing
// layers, one of them under two tags, one untagged) and has every reader here read them.
func TestCompatibilityMatrix(t *testing.T) {
	if testing.Short() {
		t.Skip("starts dockerd and podman")
	}
	ctx := context.Background()
	pc := policyContext(t)
	tagged, err := archive.Open(filepath.Join(fixtureDir, "podman-save-m.tar"))
	if err != nil {
		t.Fatal(err)
	}
	defer tagged.Close()
	untagged, err := archive.Open(filepath.Join(fixtureDir, "podman-save-m-untagged.tar"))
	if err != nil {
		t.Fatal(err)
	}
	defer untagged.Close()
	type input struct {
		src  types.ImageReference
		tags []string
	}
	inputs := []input{
		{tagged.References()[0], []string{"example.com/darc/a:1", "example.com/darc/a:latest"}},
		{tagged.References()[1], []string{"docker.io/library/busybox-like:1"}},
		{untagged.References()[0], nil},
	}
	for _, layout := range []archive.Layout{archive.LayoutDocker, archive.LayoutOCI} {
		t.Run(string(layout), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "darc.tar")
			w, err := archive.Create(path, archive.WithLayout(layout))
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			var want []wantImage
			for _, in := range inputs {
				var tags []distref.NamedTagged
				for _, s := range in.tags {
					tags = append(tags, wtTag(t, s))
				}
				dst, err := w.NewReference(tags...)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := copy.Image(ctx, pc, dst, in.src, &copy.Options{}); err != nil {
					t.Fatal(err)
				}
				d := wtImageOf(t, in.src)
				d.Tags = append([]string{}, in.tags...)
				want = append(want, d)
			}
			if err := w.Commit(); err != nil {
				t.Fatal(err)
			}
			if got := wtReadBack(t, path); !wtEqual(got, want) {
				t.Fatalf("darc reads back %+v, want %+v", got, want)
			}
			checkExternalReaders(t, path, want)
		})
	}
}

// TestCompatibilityManifestList: an archive darc writes in LayoutOCI from containerd's
// exports (copy.Merge of all-platforms.tar, whose list is whole, and of one-platform.tar,
// whose list darc trims to the one platform it holds) is read by the real tools as each of
// them reads a Docker 25+ save:
//   - the docker-archive readers (containers/image, go-containerregistry, skopeo, podman load,
//     docker 20.10 load) read manifest.json and get the default platform, the host's, with
//     its tag;
//   - skopeo's oci-archive: reads index.json and gets the list darc wrote: for all-platforms
//     the exporter's list, digest unchanged; for one-platform the trimmed list;
//   - `ctr images import --all-platforms` (containerd 1.6) imports the image as that list, and
//     every manifest of it with its config and layers lands in containerd's content store.
//     (containerd's own one-platform.tar fails there: its list names manifests it lacks.)
func TestCompatibilityManifestList(t *testing.T) {
	if testing.Short() {
		t.Skip("starts dockerd, containerd and podman")
	}
	fixtures, err := archivetest.CtrFixtures(ctrDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{"all-platforms.tar", "one-platform.tar"} {
		t.Run(strings.TrimSuffix(file, ".tar"), func(t *testing.T) {
			f, ok := archivetest.Fixture(fixtures, file)
			if !ok || len(f.Images) != 1 || f.Images[0].Kind != "index" {
				t.Fatalf("%s: expected.json has no one manifest list", file)
			}
			orig := f.Images[0]
			path := mergeOCI(t, filepath.Join(ctrDir, file))

			// What darc wrote, as darc reads it: the list and the default platform.
			list := writtenList(t, path)
			var complete []archivetest.CtrChild
			for _, c := range orig.Children {
				if c.State == "complete" {
					complete = append(complete, c)
				}
			}
			if got, want := list.Complete, childDigests(complete); !slices.Equal(got, want) {
				t.Fatalf("list %s holds %v completely, want %v (the fixture's complete children)", list.Digest, got, want)
			}
			if list.Manifests != len(complete) {
				t.Errorf("list %s names %d manifests, want %d: only those the archive holds", list.Digest, list.Manifests, len(complete))
			}
			if wholeList := len(complete) == len(orig.Children); wholeList && list.Digest != orig.Digest {
				t.Errorf("list digest %s, want the exporter's %s: every manifest was copied", list.Digest, orig.Digest)
			} else if !wholeList && list.Digest == orig.Digest {
				t.Errorf("list digest %s is the exporter's, which names manifests the archive lacks", list.Digest)
			}
			def := defaultChild(t, complete)
			images := wtReadBack(t, path)
			if len(images) != 1 || images[0].ID != def.Config.Digest || !slices.Equal(images[0].Tags, orig.Tags) {
				t.Fatalf("darc reads back %v, want one image %s (%s) tagged %q", images, def.Config.Digest, platformOf(def.Platform), orig.Tags)
			}

			checkExternalReaders(t, path, images)
			t.Run("skopeo-oci-archive", func(t *testing.T) { checkSkopeoList(t, path, list.Digest) })
			t.Run("ctr-import-all-platforms", func(t *testing.T) {
				checkCtrImport(t, path, orig.Tags[0], list.Digest, complete)
			})
		})
	}
}

// mergeOCI merges the archive at src alone into a new LayoutOCI archive and returns its path.
func mergeOCI(t *testing.T, src string) string {
	t.Helper()
	in, err := archive.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	path := filepath.Join(t.TempDir(), "darc-oci.tar")
	w, err := archive.Create(path, archive.WithLayout(archive.LayoutOCI))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := dcopy.Merge(context.Background(), w, []*archive.ReadableArchive{in}); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	return path
}

// writtenList returns the manifest list of the only image of the archive at path.
func writtenList(t *testing.T, path string) *archive.ListInfo {
	t.Helper()
	a, err := archive.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	imgs := a.Images()
	if len(imgs) != 1 || imgs[0].List == nil {
		t.Fatalf("%s: images %+v, want one image of a manifest list", path, imgs)
	}
	return imgs[0].List
}

func childDigests(cs []archivetest.CtrChild) []digest.Digest {
	var out []digest.Digest
	for _, c := range cs {
		out = append(out, c.Digest)
	}
	return out
}

// defaultChild is the platform manifest.json names in an archive darc writes: the host's,
// else the first.
func defaultChild(t *testing.T, cs []archivetest.CtrChild) archivetest.CtrChild {
	t.Helper()
	var first *archivetest.CtrChild
	for i, c := range cs {
		if c.Attestation || c.Platform == nil {
			continue
		}
		if c.Platform.OS == runtime.GOOS && c.Platform.Architecture == runtime.GOARCH {
			return c
		}
		if first == nil {
			first = &cs[i]
		}
	}
	if first == nil {
		t.Fatal("no platform manifest among the complete children")
	}
	return *first
}

// checkSkopeoList reads the archive's index.json image with skopeo's oci-archive transport,
// without a ref name (the archive's only image) and by its ref name ("1"), and wants the list.
func checkSkopeoList(t *testing.T, path string, list digest.Digest) {
	skopeo := testtools.Require(t, "skopeo")
	for _, ref := range []string{"oci-archive:" + path, "oci-archive:" + path + ":1"} {
		raw, err := testtools.Run(context.Background(), skopeo, "inspect", "--raw", ref)
		if err != nil {
			t.Errorf("skopeo inspect --raw %s: %v", ref, err)
			continue
		}
		if got := digest.FromBytes(raw); got != list {
			t.Errorf("skopeo inspect --raw %s: %s, want the list %s\n%s", ref, got, list, raw)
		}
	}
}

// checkCtrImport imports the archive into a fresh containerd with `ctr images import
// --all-platforms --no-unpack` and wants the image name to point at the list, and the list
// and every complete child's manifest, config and layers in the content store.
func checkCtrImport(t *testing.T, path, name string, list digest.Digest, complete []archivetest.CtrChild) {
	c := testtools.StartContainerd(t)
	c.Run(t, "-n", "darc", "images", "import", "--all-platforms", "--no-unpack", path)
	found := false
	for _, line := range strings.Split(string(c.Run(t, "-n", "darc", "images", "ls")), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != name {
			continue
		}
		found = true
		if f[2] != list.String() {
			t.Errorf("ctr images ls: %s points at %s, want the list %s", name, f[2], list)
		}
	}
	if !found {
		t.Fatalf("ctr images ls has no %s after import", name)
	}
	content := map[digest.Digest]bool{}
	for _, d := range strings.Fields(string(c.Run(t, "-n", "darc", "content", "ls", "-q"))) {
		content[digest.Digest(d)] = true
	}
	want := []digest.Digest{list}
	for _, ch := range complete {
		want = append(want, ch.Blobs()...)
	}
	for _, d := range want {
		if !content[d] {
			t.Errorf("ctr content ls: %s is missing after import", d)
		}
	}
}

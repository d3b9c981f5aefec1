package layout

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"

	distref "github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
)

func mustTag(t *testing.T, s string) distref.NamedTagged {
	t.Helper()
	n, err := distref.ParseNormalizedNamed(s)
	if err != nil {
		t.Fatal(err)
	}
	nt, ok := n.(distref.NamedTagged)
	if !ok {
		t.Fatalf("%q has no tag", s)
	}
	return nt
}

// TestCompose checks the metadata files of a small OCI archive: their order, one index.json
// descriptor per tag pointing at the tag's manifest, a manifest no tag points at listed once,
// LayerSources, and an image without a top id left out of repositories.
func TestCompose(t *testing.T) {
	layer := digest.FromString("layer")
	m1 := imgspecv1.Descriptor{MediaType: imgspecv1.MediaTypeImageManifest, Digest: digest.FromString("m1"), Size: 10}
	m2 := imgspecv1.Descriptor{MediaType: imgspecv1.MediaTypeImageManifest, Digest: digest.FromString("m2"), Size: 20}
	images := []Image{
		{
			Config:    BlobName(digest.FromString("c1")),
			Layers:    []Layer{{Name: BlobName(layer), DiffID: layer, Blob: imgspecv1.Descriptor{Digest: layer, Size: 5}}},
			Tags:      []Tag{{mustTag(t, "a:1"), m1}, {mustTag(t, "example.com/b:2"), m1}},
			TopID:     layer.Encoded(),
			Manifests: []imgspecv1.Descriptor{m1, m2, m2},
		},
		{Config: BlobName(digest.FromString("c2"))},
	}
	files, err := Compose(images, true)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	byName := map[string][]byte{}
	for _, f := range files {
		names = append(names, f.Name)
		byName[f.Name] = f.Data
	}
	if want := []string{OCILayoutFile, IndexFile, ManifestFile, RepositoriesFile}; !slices.Equal(names, want) {
		t.Fatalf("files %v, want %v", names, want)
	}
	idx, err := ParseIndex(byName[IndexFile], 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range idx.Manifests {
		got = append(got, d.Digest.Encoded()[:6]+" "+d.Annotations[imgspecv1.AnnotationRefName])
	}
	if want := []string{m1.Digest.Encoded()[:6] + " 1", m1.Digest.Encoded()[:6] + " 2", m2.Digest.Encoded()[:6] + " "}; !slices.Equal(got, want) {
		t.Errorf("index.json descriptors %q, want %q", got, want)
	}
	items, _, err := ParseManifest(byName[ManifestFile], 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 2 || !slices.Equal(items[0].RepoTags, []string{"docker.io/library/a:1", "example.com/b:2"}) ||
		items[0].LayerSources[layer].Size != 5 || items[1].RepoTags == nil || items[1].Layers == nil {
		t.Errorf("manifest.json %s", byName[ManifestFile])
	}
	if want := `{"docker.io/library/a":{"1":"` + layer.Encoded() + `"},"example.com/b":{"2":"` + layer.Encoded() + `"}}`; string(byName[RepositoriesFile]) != want {
		t.Errorf("repositories %s, want %s", byName[RepositoriesFile], want)
	}

	files, err = Compose(images, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 || files[0].Name != ManifestFile {
		t.Fatalf("docker layout files %v", files)
	}
	if items, _, _ := ParseManifest(files[0].Data, 0); items[0].LayerSources != nil {
		t.Errorf("docker layout manifest.json has LayerSources: %s", files[0].Data)
	}
}

// TestLegacyDirs checks the v1 directories: three members per layer, layer.tar linking to the
// root-level layer, parents chained, the top id covering the config (two images on one stack
// share their lower directories, not their tops) and the output stable.
func TestLegacyDirs(t *testing.T) {
	config := []byte(`{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":[]}}`)
	diffIDs := []digest.Digest{digest.FromString("base"), digest.FromString("top")}
	files, top, err := LegacyDirs(config, digest.FromBytes(config), diffIDs)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 6 || files[0].Link != "../"+LayerName(diffIDs[0]) || files[3].Link != "../"+LayerName(diffIDs[1]) {
		t.Fatalf("files %+v", files)
	}
	var v1 struct {
		ID, Parent, OS, Architecture string
	}
	if err := json.Unmarshal(files[5].Data, &v1); err != nil {
		t.Fatal(err)
	}
	if files[5].Name != V1JSONName(top) || v1.ID != top || v1.Parent+"/layer.tar" != files[0].Name || v1.OS != "linux" || v1.Architecture != "amd64" {
		t.Errorf("top v1 JSON %s (%s), top %s", files[5].Data, files[5].Name, top)
	}
	other, otherTop, err := LegacyDirs(config, digest.FromString("another config"), diffIDs)
	if err != nil {
		t.Fatal(err)
	}
	if other[0].Name != files[0].Name || otherTop == top {
		t.Errorf("another config: base %s (want %s), top %s (want not %s)", other[0].Name, files[0].Name, otherTop, top)
	}
	again, _, _ := LegacyDirs(config, digest.FromBytes(config), diffIDs)
	for i := range again {
		if string(again[i].Data) != string(files[i].Data) || again[i].Name != files[i].Name {
			t.Errorf("member %d differs between runs", i)
		}
	}
	if _, _, err := LegacyDirs([]byte("{"), "", diffIDs); !errors.Is(err, ErrInvalidManifest) {
		t.Errorf("a config that is not JSON: got %v, want ErrInvalidManifest", err)
	}
}

package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/darc-dev/darc/internal/archivetest"
)

// The metadata class: manifest.json read as docker load reads it (one JSON value decoded with
// encoding/json: field names matched case-insensitively, unknown fields ignored).
var _ = registerTruth("metadata", metadataCases)

func TestTruthMetadata(t *testing.T) { checkTruth(t, metadataCases(t)) }

// oneImage is a small image's members: its layer and config, named as containers/image names
// them, and its ID.
type oneImage struct {
	layer, config archivetest.Entry
	id            string
}

func newOneImage(seed int64) oneImage {
	layer := archivetest.Layer(seed, 2, 100)
	diffID := digest.FromBytes(layer)
	cfg := archivetest.GenerateConfig([]digest.Digest{diffID})
	id := digest.FromBytes(cfg)
	return oneImage{
		layer:  archivetest.Entry{Name: diffID.Encoded() + ".tar", Body: layer},
		config: archivetest.Entry{Name: id.Encoded() + ".json", Body: cfg},
		id:     id.String(),
	}
}

// archiveWith is a tar of the image's members and the given manifest.json text.
func (o oneImage) archiveWith(manifest string) []byte {
	return archivetest.Tar([]archivetest.Entry{o.layer, o.config, {Name: "manifest.json", Body: []byte(manifest)}})
}

// item is a manifest.json entry for the image with the given RepoTags JSON.
func (o oneImage) item(repoTags string) string {
	return `{"Config":"` + o.config.Name + `","RepoTags":` + repoTags + `,"Layers":["` + o.layer.Name + `"]}`
}

func metadataCases(t *testing.T) []truthCase {
	img, other := newOneImage(1), newOneImage(2)
	tagged := []truthImage{{id: img.id, tags: []string{"docker.io/library/busybox:1"}}}
	return []truthCase{
		{
			name:   "plain",
			data:   img.archiveWith("[" + img.item(`["busybox:1"]`) + "]"),
			docker: true, verify: true, load: true, images: tagged,
		},
		{
			name:   "field names in lower case",
			data:   img.archiveWith(`[{"config":"` + img.config.Name + `","repotags":["busybox:1"],"layers":["` + img.layer.Name + `"]}]`),
			docker: true, verify: true, load: true, images: tagged,
		},
		{
			name:   "unknown fields",
			data:   img.archiveWith(`[{"Config":"` + img.config.Name + `","RepoTags":["busybox:1"],"Layers":["` + img.layer.Name + `"],"Extra":{"a":[1,2]}}]`),
			docker: true, verify: true, load: true, images: tagged,
		},
		{
			name:   "trailing data after the JSON",
			data:   img.archiveWith("[" + img.item(`["busybox:1"]`) + "]\n}garbage"),
			docker: true, verify: true, load: true, images: tagged,
			says: []string{"warning: manifest.json holds data after its JSON value"},
		},
		{
			name:   "RepoTags null",
			data:   img.archiveWith("[" + img.item(`null`) + "]"),
			docker: true, verify: true, load: true, images: []truthImage{{id: img.id, tags: []string{}}},
		},
		{
			name:   "tag with a digest",
			data:   img.archiveWith("[" + img.item(`["busybox@sha256:`+img.id[7:]+`"]`) + "]"),
			docker: false, verify: false, load: false,
			says: []string{"not a valid reference"},
		},
		{
			name:   "Parent names an image that is nowhere",
			data:   img.archiveWith(`[{"Config":"` + img.config.Name + `","RepoTags":["busybox:1"],"Layers":["` + img.layer.Name + `"],"Parent":"sha256:` + strings.Repeat("ab", 32) + `"}]`),
			docker: true, verify: true, load: true, images: tagged,
		},
		withConfig(img, "an image of no layers", archivetest.GenerateConfig(nil), nil, true),
		withConfig(img, "an empty layer member", archivetest.GenerateConfig([]digest.Digest{digest.FromBytes(nil)}), []byte{}, true),
		func() truthCase {
			c := withConfig(img, "a windows image", bytes.Replace(img.config.Body, []byte(`"os":"linux"`), []byte(`"os":"windows"`), 1), img.layer.Body, true)
			c.docker = false
			c.why = "docker load on Linux refuses another OS (\"cannot load windows image on linux\"); darc loads into registries and layouts, where it is valid, and warns"
			c.says = []string{`warning: image @0: the image's OS is "windows"`}
			return c
		}(),
		{
			name: "the same tag on two images",
			data: archivetest.Tar([]archivetest.Entry{img.layer, img.config, other.layer, other.config,
				{Name: "manifest.json", Body: []byte("[" + img.item(`["busybox:1"]`) + "," + other.item(`["busybox:1"]`) + "]")}}),
			docker: true, verify: true, load: true,
			images: []truthImage{{id: img.id, tags: []string{}}, {id: other.id, tags: []string{"docker.io/library/busybox:1"}}},
			says:   []string{"warning: image @0: tag busybox:1 is also on image @1"},
		},
		{
			name:   "empty list",
			data:   img.archiveWith("[]"),
			docker: true, verify: false, load: false,
			why: "an archive that names no image is refused: docker load loads nothing and says nothing",
		},
	}
}

// withConfig is an archive of one image with the given config and layer (nil: none), tagged
// busybox:1, which every reader loads when ok.
func withConfig(img oneImage, name string, cfg, layer []byte, ok bool) truthCase {
	entries := []archivetest.Entry{{Name: digest.FromBytes(cfg).Encoded() + ".json", Body: cfg}}
	layers := "[]"
	if layer != nil {
		entries = append(entries, archivetest.Entry{Name: "layer.tar", Body: layer})
		layers = `["layer.tar"]`
	}
	entries = append(entries, archivetest.Entry{Name: "manifest.json", Body: []byte(`[{"Config":"` + entries[0].Name + `","RepoTags":["busybox:1"],"Layers":` + layers + `}]`)})
	return truthCase{
		name: name, data: archivetest.Tar(entries), docker: ok, verify: ok, load: ok,
		images: []truthImage{{id: digest.FromBytes(cfg).String(), tags: []string{"docker.io/library/busybox:1"}}},
	}
}

// TestTruthTagOnTwoImagesSelects: a tag that two images carry names the later one, the image
// docker load leaves it on, wherever darc takes a selector.
func TestTruthTagOnTwoImagesSelects(t *testing.T) {
	img, other := newOneImage(1), newOneImage(2)
	path := filepath.Join(t.TempDir(), "archive.tar")
	data := archivetest.Tar([]archivetest.Entry{img.layer, img.config, other.layer, other.config,
		{Name: "manifest.json", Body: []byte("[" + img.item(`["busybox:1"]`) + "," + other.item(`["busybox:1"]`) + "]")}})
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := run(t, "inspect", "--json", path+":busybox:1")
	if err != nil {
		t.Fatalf("darc inspect: %v\n%s", err, errOut)
	}
	var d struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatal(err)
	}
	if d.ID != other.id {
		t.Errorf("busybox:1 selects %s, want the later image %s", d.ID, other.id)
	}
}

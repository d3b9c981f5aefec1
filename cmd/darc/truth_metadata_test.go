package main

import (
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
	img := newOneImage(1)
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
			name:   "empty list",
			data:   img.archiveWith("[]"),
			docker: true, verify: false, load: false,
			why: "an archive that names no image is refused: docker load loads nothing and says nothing",
		},
	}
}

package archivetest

import (
	"encoding/json"
	"os"
	"path/filepath"

	digest "github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// CtrFixture is one archive of testdata/archives/ctr, written by containerd's exporter, as
// its expected.json describes it (computed from the content the generator made, not read
// back from the tar).
type CtrFixture struct {
	File         string     `json:"file"`
	ManifestJSON bool       `json:"manifest_json"`
	Images       []CtrImage `json:"images"`
}

// CtrImage is one entry of a fixture's index.json: a manifest list ("index") or a manifest.
type CtrImage struct {
	Kind      string        `json:"kind"`
	Digest    digest.Digest `json:"digest"`
	MediaType string        `json:"mediaType"`
	Tags      []string      `json:"tags"`
	Children  []CtrChild    `json:"children"`
}

// CtrChild is one manifest of a list, with what the archive holds of it.
type CtrChild struct {
	Digest      digest.Digest       `json:"digest"`
	Platform    *imgspecv1.Platform `json:"platform"`
	Attestation bool                `json:"attestation"`
	State       string              `json:"state"` // "complete", "manifest-only" or "absent"
	Config      CtrBlob             `json:"config"`
	Layers      []CtrBlob           `json:"layers"`
}

// CtrBlob is a config or a layer of a manifest.
type CtrBlob struct {
	Digest digest.Digest `json:"digest"`
}

// Blobs are the digests of the manifest, its config and its layers: what a store holding the
// manifest completely holds of it.
func (c CtrChild) Blobs() []digest.Digest {
	out := []digest.Digest{c.Digest, c.Config.Digest}
	for _, l := range c.Layers {
		out = append(out, l.Digest)
	}
	return out
}

// CtrFixtures reads dir/expected.json.
func CtrFixtures(dir string) ([]CtrFixture, error) {
	data, err := os.ReadFile(filepath.Join(dir, "expected.json"))
	if err != nil {
		return nil, err
	}
	var v struct {
		Fixtures []CtrFixture `json:"fixtures"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	return v.Fixtures, nil
}

// Fixture returns the fixture of that file name, or false.
func Fixture(fixtures []CtrFixture, file string) (CtrFixture, bool) {
	for _, f := range fixtures {
		if f.File == file {
			return f, true
		}
	}
	return CtrFixture{}, false
}

package tarfile

import (
	"errors"
	"testing"

	"github.com/klauspost/compress/zstd"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/darc-dev/darc/internal/archivetest"
)

// TestOwnManifestChecked: the archive's own OCI manifest is served when it describes the
// config and its blobs, and makes Resolve fail, from the file and from a stream, when it lies,
// rather than being replaced by a manifest built from the config. A compressed blob that is
// not the config's layer fails when it is read.
func TestOwnManifestChecked(t *testing.T) {
	layer := archivetest.Layer(31, 1, 200)
	other := archivetest.Layer(32, 1, 200)
	gz := archivetest.GzipBytes(layer)
	zenc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	zst := zenc.EncodeAll(layer, nil)
	tests := []struct {
		name    string
		o       archivetest.OwnManifest
		resolve error // Resolve's error, or nil
		read    error // reading the layer (full verification), when Resolve succeeds
	}{
		{"uncompressed, true", archivetest.OwnManifest{Layer: layer, Stored: layer}, nil, nil},
		{"gzip, true", archivetest.OwnManifest{Layer: layer, Stored: gz}, nil, nil},
		{"config size lies", archivetest.OwnManifest{Layer: layer, Stored: layer, Edit: func(m *imgspecv1.Manifest) { m.Config.Size++ }}, ErrSizeMismatch, nil},
		{"layer size lies", archivetest.OwnManifest{Layer: layer, Stored: gz, Edit: func(m *imgspecv1.Manifest) { m.Layers[0].Size-- }}, ErrSizeMismatch, nil},
		{"two layers for one diffID", archivetest.OwnManifest{Layer: layer, Stored: layer, Edit: func(m *imgspecv1.Manifest) { m.Layers = append(m.Layers, m.Layers[0]) }}, ErrInvalidManifest, nil},
		{"gzip media type, uncompressed blob", archivetest.OwnManifest{Layer: layer, Stored: layer, OCIMediaType: imgspecv1.MediaTypeImageLayerGzip}, ErrInvalidManifest, nil},
		{"gzip media type, zstd blob", archivetest.OwnManifest{Layer: layer, Stored: layer, OCIBlob: zst, OCIMediaType: imgspecv1.MediaTypeImageLayerGzip}, ErrInvalidManifest, nil},
		{"tar media type, gzip blob", archivetest.OwnManifest{Layer: layer, Stored: gz, OCIMediaType: imgspecv1.MediaTypeImageLayer}, ErrInvalidManifest, nil},
		{"not a layer media type", archivetest.OwnManifest{Layer: layer, Stored: layer, OCIMediaType: "application/octet-stream"}, ErrInvalidManifest, nil},
		{"uncompressed blob of another layer", archivetest.OwnManifest{Layer: layer, Stored: layer, OCIBlob: other}, ErrDigestMismatch, nil},
		{"gzip blob of another layer", archivetest.OwnManifest{Layer: layer, Stored: gz, OCIBlob: archivetest.GzipBytes(other)}, nil, ErrDigestMismatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data, _ := archivetest.OwnManifestArchive(tc.o)
			r, err := openRandom(t, data)
			if err != nil {
				t.Fatal(err)
			}
			s, _, err := readStream(t, data, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			for how, img := range map[string]*Image{"file": r.Images()[0], "stream": s.Images()[0]} {
				res, err := img.Resolve()
				if !errors.Is(err, tc.resolve) || (tc.resolve == nil) != (err == nil) {
					t.Fatalf("%s: Resolve: got %v, want %v", how, err, tc.resolve)
				}
				if err != nil {
					continue
				}
				if !res.OwnManifest {
					t.Errorf("%s: served a manifest built from the config", how)
				}
				if how == "stream" {
					err = img.VerifyStreamed()
				} else {
					err = readBlob(img, res.Layers[0].Digest, true)
				}
				if !errors.Is(err, tc.read) || (tc.read == nil) != (err == nil) {
					t.Errorf("%s: reading the layer: got %v, want %v", how, err, tc.read)
				}
				if how == "file" && tc.read != nil {
					// Served (not full verification): the diffID is checked too, so that load
					// fails as verify does.
					if err := readBlob(img, res.Layers[0].Digest, false); !errors.Is(err, tc.read) {
						t.Errorf("served: got %v, want %v", err, tc.read)
					}
				}
			}
		})
	}
}

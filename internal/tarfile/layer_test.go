package tarfile

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/darc-dev/darc/internal/archivetest"
)

// TestLayerNotATar: a layer whose uncompressed content is not a tar (docker fails to apply it)
// fails full verification with ErrInvalidLayer, from the file and from a stream, stored
// uncompressed or gzip; so does serving an uncompressed one. An empty layer and a tar that
// ends without its end-of-archive blocks are tars, as archive/tar (and so docker) reads them.
func TestLayerNotATar(t *testing.T) {
	notTar := bytes.Repeat([]byte("not a tar "), 200)
	full := archivetest.Layer(21, 1, 100)
	tests := []struct {
		name   string
		layer  []byte
		layout archivetest.Layout
		want   error
	}{
		{"uncompressed, not a tar", notTar, archivetest.ContainersImage, ErrInvalidLayer},
		{"gzip blob, not a tar", notTar, archivetest.Crane, ErrInvalidLayer},
		{"uncompressed, 100 bytes", notTar[:100], archivetest.ContainersImage, ErrInvalidLayer},
		// Controls.
		{"uncompressed, a tar", full, archivetest.ContainersImage, nil},
		{"gzip blob, a tar", full, archivetest.Crane, nil},
		{"empty", []byte{}, archivetest.ContainersImage, nil},
		{"tar without end-of-archive blocks", bytes.TrimRight(full, "\x00"), archivetest.ContainersImage, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img := archivetest.Image{Tags: []string{"example.com/x:1"}, Layers: [][]byte{tc.layer}}
			if tc.layout == archivetest.Crane {
				img.Blobs = [][]byte{gzipBytes(t, tc.layer)}
			}
			data, err := archivetest.BuildBytes([]archivetest.Image{img}, archivetest.Options{Layout: tc.layout})
			if err != nil {
				t.Fatal(err)
			}
			r, err := openRandom(t, data)
			if err != nil {
				t.Fatal(err)
			}
			res, err := r.Images()[0].Resolve()
			if err != nil {
				t.Fatal(err)
			}
			l := res.Layers[0]
			if err := readBlob(r.Images()[0], l.Digest, true); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Errorf("full verification: got %v, want %v", err, tc.want)
			}
			if l.Compression == Uncompressed {
				if err := readBlob(r.Images()[0], l.Digest, false); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
					t.Errorf("served: got %v, want %v", err, tc.want)
				}
			}
			s, _, err := readStream(t, data, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Images()[0].VerifyStreamed(); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Errorf("streamed: got %v, want %v", err, tc.want)
			}
		})
	}
}

func readBlob(img *Image, d digest.Digest, full bool) error {
	rc, _, err := img.OpenBlob(d, full)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, rc)
	if cerr := rc.Close(); err == nil {
		err = cerr
	}
	return err
}

func gzipBytes(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

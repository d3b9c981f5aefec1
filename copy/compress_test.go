package copy

import (
	"testing"

	"go.podman.io/image/v5/pkg/compression"
	compressiontypes "go.podman.io/image/v5/pkg/compression/types"
)

// TestPlanLayer: what happens to a layer's compression on its way to a destination, as
// containers/image's copy.Image decides it.
func TestPlanLayer(t *testing.T) {
	none := compressiontypes.Algorithm{}
	for _, tc := range []struct {
		name         string
		format       compressiontypes.Algorithm
		compressed   bool
		destCompress bool
		requested    *compressiontypes.Algorithm
		wantOp       blobOp
		wantAlg      string // "" for none
	}{
		{"uncompressed into a layout: gzip by default", none, false, true, nil, opCompress, "gzip"},
		{"uncompressed, zstd asked for", none, false, true, &compression.Zstd, opCompress, "zstd"},
		{"gzip stays gzip", compression.Gzip, true, true, nil, opPreserveCompressed, "gzip"},
		{"gzip stays gzip when gzip is asked for", compression.Gzip, true, true, &compression.Gzip, opPreserveCompressed, "gzip"},
		{"gzip recompressed when zstd is asked for", compression.Gzip, true, true, &compression.Zstd, opRecompress, "zstd"},
		{"zstd:chunked is zstd", compression.ZstdChunked, true, true, &compression.Zstd, opPreserveCompressed, "zstd:chunked"},
		{"a destination taking layers as they are", none, false, false, &compression.Zstd, opPreserveUncompressed, ""},
		{"compressed, destination taking layers as they are", compression.Zstd, true, false, &compression.Gzip, opPreserveCompressed, "zstd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			op, alg := planLayer(tc.format, tc.compressed, tc.destCompress, tc.requested)
			got := ""
			if alg != nil {
				got = alg.Name()
			}
			if op != tc.wantOp || got != tc.wantAlg {
				t.Errorf("planLayer = %d, %q; want %d, %q", op, got, tc.wantOp, tc.wantAlg)
			}
		})
	}
}

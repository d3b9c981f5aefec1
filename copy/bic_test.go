package copy

import (
	"testing"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/pkg/blobinfocache/memory"
	"go.podman.io/image/v5/types"
)

// v1Cache implements only the public types.BlobInfoCache.
type v1Cache struct{ types.BlobInfoCache }

// TestRecordCompressor: the memory cache of this containers/image accepts the compression of
// a blob (LoadStream's registry path depends on it); a cache without the method is an error,
// not a silent no-op.
func TestRecordCompressor(t *testing.T) {
	if err := recordCompressor(memory.New(), digest.FromString("x"), "gzip"); err != nil {
		t.Fatalf("memory cache: %v", err)
	}
	if err := recordCompressor(v1Cache{memory.New()}, digest.FromString("x"), "gzip"); err == nil {
		t.Fatal("a cache without RecordDigestCompressorData: no error")
	}
}

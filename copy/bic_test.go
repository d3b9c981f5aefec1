package copy

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	distref "github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/pkg/blobinfocache/memory"
	"go.podman.io/image/v5/pkg/compression"
	compressiontypes "go.podman.io/image/v5/pkg/compression/types"
	"go.podman.io/image/v5/types"
)

// mountRegistry is the part of a registry's API that a docker destination's TryReusingBlob
// uses: blob existence (HEAD) and cross-repository mounts (POST …/blobs/uploads/?mount=&from=).
// It holds one blob, in the repository "staging", and logs every mount it serves.
type mountRegistry struct {
	blob digest.Digest
	mu   sync.Mutex
	has  map[string]bool // repositories holding the blob
	log  []string        // "REPO<-FROM", one per mount served
}

func (r *mountRegistry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	w.Header().Set("Docker-Distribution-Api-Version", "registry/2.0")
	path, ok := strings.CutPrefix(req.URL.Path, "/v2/")
	if !ok {
		http.NotFound(w, req)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case path == "" && req.Method == http.MethodGet:
		w.WriteHeader(http.StatusOK)
	case req.Method == http.MethodHead && strings.HasSuffix(path, "/blobs/"+r.blob.String()):
		if !r.has[strings.TrimSuffix(path, "/blobs/"+r.blob.String())] {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Length", "3")
		w.Header().Set("Docker-Content-Digest", r.blob.String())
		w.WriteHeader(http.StatusOK)
	case req.Method == http.MethodPost && strings.HasSuffix(path, "/blobs/uploads/"):
		repo, from := strings.TrimSuffix(path, "/blobs/uploads/"), req.URL.Query().Get("from")
		if req.URL.Query().Get("mount") != r.blob.String() || !r.has[from] {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		r.has[repo] = true
		r.log = append(r.log, repo+"<-"+from)
		w.Header().Set("Location", "/v2/"+repo+"/blobs/"+r.blob.String())
		w.WriteHeader(http.StatusCreated)
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

// v1Cache implements only the public types.BlobInfoCache.
type v1Cache struct{ types.BlobInfoCache }

// TestRecordCompressor checks the adapter by its effect on the one consumer it is for: a
// docker destination asked to reuse a blob that its cache knows to be in another repository
// of the registry. With the compression recorded, it mounts the blob from there; without it,
// it does not — the premise of bic.go, so that a containers/image that stops needing the
// record fails here and tells us the adapter can go.
func TestRecordCompressor(t *testing.T) {
	blob := digest.FromString("abc")
	gzip := func(c types.BlobInfoCache) error { return recordCompressor(c, blob, &compression.Gzip) }
	for _, tc := range []struct {
		name   string
		record func(types.BlobInfoCache) error // nil: record nothing
		// publicOnly hands the destination the cache behind a type with only the public
		// methods, as a cache of our own would be.
		publicOnly bool
		mount      bool
	}{
		// What LoadStream records for a layer it compressed or passed on compressed.
		{"gzip", gzip, false, true},
		{"zstd:chunked", func(c types.BlobInfoCache) error { return recordCompressor(c, blob, &compression.ZstdChunked) }, false, true},
		// A layer passed on uncompressed (a destination that does not want compression).
		{"uncompressed", func(c types.BlobInfoCache) error { return recordCompressor(c, blob, nil) }, false, true},
		// The public API alone: the location is known, the compression is not.
		{"nothing recorded", nil, false, false},
		{"uncompressed pair only", func(c types.BlobInfoCache) error { c.RecordDigestUncompressedPair(blob, blob); return nil }, false, false},
		// containers/image wraps a cache without its internal methods in one that knows no
		// candidates, whatever the cache behind it recorded.
		{"public methods only", gzip, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := &mountRegistry{blob: blob, has: map[string]bool{"staging": true}}
			srv := httptest.NewServer(reg)
			defer srv.Close()
			host := strings.TrimPrefix(srv.URL, "http://")
			sys := &types.SystemContext{
				DockerInsecureSkipTLSVerify: types.OptionalBoolTrue,
				AuthFilePath:                filepath.Join(t.TempDir(), "auth.json"), // not the machine's
			}
			cache := memory.New()
			// The staging destination finds the blob at home and records its location, as
			// PutBlob does for a blob LoadStream sends there.
			if ok := tryReusing(t, sys, host+"/staging:latest", blob, cache); !ok {
				t.Fatal("staging: the blob is not found in its own repository")
			}
			if tc.record != nil {
				if err := tc.record(cache); err != nil {
					t.Fatal(err)
				}
			}
			if tc.publicOnly {
				cache = v1Cache{cache}
			}
			ok := tryReusing(t, sys, host+"/img/a:1", blob, cache)
			reg.mu.Lock()
			mounts := slices.Clone(reg.log)
			reg.mu.Unlock()
			var want []string
			if tc.mount {
				want = []string{"img/a<-staging"}
			}
			if ok != tc.mount || !slices.Equal(mounts, want) {
				t.Errorf("reused %v, mounts %q; want %v, %q", ok, mounts, tc.mount, want)
			}
		})
	}
}

// tryReusing asks a docker destination for ref to reuse blob, with cache.
func tryReusing(t *testing.T, sys *types.SystemContext, ref string, blob digest.Digest, cache types.BlobInfoCache) bool {
	t.Helper()
	named, err := distref.ParseNormalizedNamed(ref)
	if err != nil {
		t.Fatal(err)
	}
	r, err := docker.NewReference(distref.TagNameOnly(named))
	if err != nil {
		t.Fatal(err)
	}
	d, err := r.NewImageDestination(context.Background(), sys)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ok, _, err := d.TryReusingBlob(context.Background(), types.BlobInfo{Digest: blob, Size: -1}, cache, false)
	if err != nil {
		t.Fatalf("%s: %v", ref, err)
	}
	return ok
}

// TestRecordCompressorErrors: a cache without the internal method (one that implements only
// the public interface) is an error up front and on each call, never a silent no-op; so is a
// compression containers/image cannot look up by name.
func TestRecordCompressorErrors(t *testing.T) {
	blob := digest.FromString("x")
	if err := compressorRecordable(memory.New()); err != nil {
		t.Errorf("memory cache: %v", err)
	}
	if err := compressorRecordable(v1Cache{memory.New()}); err == nil {
		t.Error("a cache with only the public methods: compressorRecordable gave no error")
	}
	if err := recordCompressor(v1Cache{memory.New()}, blob, &compression.Gzip); err == nil {
		t.Error("a cache with only the public methods: recordCompressor gave no error")
	}
	if err := recordCompressor(memory.New(), blob, &compressiontypes.Algorithm{}); err == nil {
		t.Error("an algorithm without a name: no error")
	}
}

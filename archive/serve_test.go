package archive_test

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/darc-dev/darc/archive"
	"github.com/darc-dev/darc/internal/archivetest"
	"github.com/darc-dev/darc/reference"
)

// serveLog collects what a handler logs; it is safe for concurrent use.
type serveLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *serveLog) add(s string) { l.mu.Lock(); l.lines = append(l.lines, s); l.mu.Unlock() }

// get returns what was logged so far.
func (l *serveLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lines)
}

// loggedHandler serves archives, collecting what the handler logs.
func loggedHandler(t testing.TB, archives ...*archive.ReadableArchive) (http.Handler, *serveLog) {
	t.Helper()
	l := &serveLog{}
	h, err := archive.NewHandler(archives, archive.WithServeLog(l.add))
	if err != nil {
		t.Fatal(err)
	}
	return h, l
}

// openServed opens path for a serve test and closes it when the test ends.
func openServed(t *testing.T, path string) *archive.ReadableArchive {
	t.Helper()
	a, err := archive.Open(path, archive.WithTempDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// tagSelector is the selector of a tag such as "example.com/darc/a:1".
func tagSelector(t testing.TB, tag string) reference.Selector {
	t.Helper()
	nt, err := reference.ParseRepoTag(tag)
	if err != nil {
		t.Fatal(err)
	}
	return reference.TagSelector(nt)
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func serveReq(t *testing.T, h http.Handler, method, path string, header map[string]string) response {
	t.Helper()
	req := httptest.NewRequest(method, "http://registry.test"+path, nil)
	// NewRequest parses the target: keep the raw path (with "..") as a client sends it.
	req.URL.Path = path
	if i := strings.IndexByte(path, '?'); i >= 0 {
		req.URL.Path, req.URL.RawQuery = path[:i], path[i+1:]
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return response{rec.Code, rec.Header(), rec.Body.Bytes()}
}

// errorCode is the code of a spec error body, or "" when the body is not one.
func errorCode(body []byte) string {
	var e struct {
		Errors []struct {
			Code string `json:"code"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &e) != nil || len(e.Errors) != 1 {
		return ""
	}
	return e.Errors[0].Code
}

// TestServeEndpoints walks the pull and content-discovery endpoints of the distribution
// spec over a docker-layout archive (podman save -m) and a multi-platform one (containerd's
// exporter), checking status, headers and bodies against what the archive itself says.
func TestServeEndpoints(t *testing.T) {
	plain := openServed(t, filepath.Join(fixtureDir, "podman-save-m.tar"))
	multi := openServed(t, filepath.Join(fixtureDir, "ctr", "all-platforms.tar"))
	h := archive.Handler(plain, multi)

	a1, err := plain.Inspect(tagSelector(t, "example.com/darc/a:1"))
	if err != nil {
		t.Fatal(err)
	}
	a1Digest := digest.FromBytes(a1.Manifest)
	layer := a1.Layers[0]
	layerBytes := readBlob(t, plain, "example.com/darc/a:1", layer.Digest)
	if int64(len(layerBytes)) != layer.Size || len(layerBytes) < 20 {
		t.Fatalf("layer %s: %d bytes, size %d", layer.Digest, len(layerBytes), layer.Size)
	}
	c, err := plain.Inspect(tagSelector(t, "localhost/c:v1"))
	if err != nil {
		t.Fatal(err)
	}
	const indexDigest = "sha256:40a6e72b64e4381f26a01f34c1bb12eeb85dc3712f846227243fa93eff2bbd58"
	const amd64Digest = "sha256:770c68e081acf6cdd25d002d400b3c6e27e14c01d94b6b87a72dc210dcb06c05"
	const amd64Config = "sha256:171a5b702392fa84966f5b1515c4005947b8b437e0d1b145ce43d426eb496963"
	missing := digest.FromString("not in the archive")

	type check struct {
		name        string
		method      string
		path        string
		header      map[string]string
		status      int
		code        string            // error code of the body
		body        string            // exact body, when set
		bodyDigest  digest.Digest     // digest of the body, when set
		headers     map[string]string // exact response headers
		noBody      bool
		contentType string
	}
	layerPath := "/v2/darc/a/blobs/" + layer.Digest.String()
	checks := []check{
		// The base endpoint answers 200 with an empty object and the API version header.
		{name: "base", method: "GET", path: "/v2/", status: 200, body: "{}", headers: map[string]string{"Docker-Distribution-API-Version": "registry/2.0"}},
		{name: "base-no-slash", method: "GET", path: "/v2", status: 200, body: "{}"},
		{name: "base-head", method: "HEAD", path: "/v2/", status: 200, noBody: true, headers: map[string]string{"Content-Length": "2"}},
		// The catalog lists repository names (not aliases), sorted, paginated by n and last.
		{name: "catalog", method: "GET", path: "/v2/_catalog", status: 200, body: `{"repositories":["c","darc/a","darc/multi","library/busybox-like"]}`},
		{name: "catalog-page1", method: "GET", path: "/v2/_catalog?n=2", status: 200, body: `{"repositories":["c","darc/a"]}`,
			headers: map[string]string{"Link": `</v2/_catalog?last=darc%2Fa&n=2>; rel="next"`}},
		{name: "catalog-page2", method: "GET", path: "/v2/_catalog?n=2&last=darc/a", status: 200, body: `{"repositories":["darc/multi","library/busybox-like"]}`, headers: map[string]string{"Link": ""}},
		{name: "catalog-n0", method: "GET", path: "/v2/_catalog?n=0", status: 200, body: `{"repositories":[]}`},
		{name: "catalog-bad-n", method: "GET", path: "/v2/_catalog?n=x", status: 400, code: "PAGINATION_NUMBER_INVALID"},
		// Tags of a repository, sorted and paginated.
		{name: "tags", method: "GET", path: "/v2/darc/a/tags/list", status: 200, body: `{"name":"darc/a","tags":["1","latest"]}`, contentType: "application/json"},
		{name: "tags-page", method: "GET", path: "/v2/darc/a/tags/list?n=1", status: 200, body: `{"name":"darc/a","tags":["1"]}`,
			headers: map[string]string{"Link": `</v2/darc/a/tags/list?last=1&n=1>; rel="next"`}},
		{name: "tags-last", method: "GET", path: "/v2/darc/a/tags/list?n=1&last=1", status: 200, body: `{"name":"darc/a","tags":["latest"]}`, headers: map[string]string{"Link": ""}},
		{name: "tags-negative-n", method: "GET", path: "/v2/darc/a/tags/list?n=-1", status: 400, code: "PAGINATION_NUMBER_INVALID"},
		// docker.io's short name and the name with its registry are aliases.
		{name: "tags-docker-short-alias", method: "GET", path: "/v2/busybox-like/tags/list", status: 200, body: `{"name":"busybox-like","tags":["1"]}`},
		{name: "tags-registry-alias", method: "GET", path: "/v2/example.com/darc/a/tags/list", status: 200, body: `{"name":"example.com/darc/a","tags":["1","latest"]}`},
		{name: "tags-unknown", method: "GET", path: "/v2/nothing/here/tags/list", status: 404, code: "NAME_UNKNOWN"},
		// Manifests by tag and by digest: the image source's bytes, media type, digest.
		{name: "manifest-tag", method: "GET", path: "/v2/darc/a/manifests/1", status: 200, bodyDigest: a1Digest, contentType: a1.ManifestType,
			headers: map[string]string{"Docker-Content-Digest": a1Digest.String(), "ETag": `"` + a1Digest.String() + `"`, "Content-Length": fmt.Sprint(len(a1.Manifest))}},
		{name: "manifest-head", method: "HEAD", path: "/v2/darc/a/manifests/latest", status: 200, noBody: true, contentType: a1.ManifestType,
			headers: map[string]string{"Docker-Content-Digest": a1Digest.String(), "Content-Length": fmt.Sprint(len(a1.Manifest))}},
		{name: "manifest-digest", method: "GET", path: "/v2/darc/a/manifests/" + a1Digest.String(), status: 200, bodyDigest: a1Digest},
		{name: "manifest-alias", method: "GET", path: "/v2/localhost/c/manifests/v1", status: 200, bodyDigest: digest.FromBytes(c.Manifest)},
		{name: "manifest-not-modified", method: "GET", path: "/v2/darc/a/manifests/1", header: map[string]string{"If-None-Match": `"` + a1Digest.String() + `"`}, status: 304, noBody: true},
		{name: "manifest-unknown-tag", method: "GET", path: "/v2/darc/a/manifests/2", status: 404, code: "MANIFEST_UNKNOWN"},
		{name: "manifest-invalid-tag", method: "GET", path: "/v2/darc/a/manifests/-x", status: 404, code: "MANIFEST_UNKNOWN"},
		{name: "manifest-unknown-digest", method: "GET", path: "/v2/darc/a/manifests/" + missing.String(), status: 404, code: "MANIFEST_UNKNOWN"},
		{name: "manifest-other-repo-digest", method: "GET", path: "/v2/c/manifests/" + a1Digest.String(), status: 404, code: "MANIFEST_UNKNOWN"},
		{name: "manifest-bad-digest", method: "GET", path: "/v2/darc/a/manifests/sha256:xyz", status: 400, code: "DIGEST_INVALID"},
		{name: "manifest-unknown-name", method: "HEAD", path: "/v2/nothing/manifests/1", status: 404, noBody: true},
		// A multi-platform image is served as its index; its manifests by digest.
		{name: "index-tag", method: "GET", path: "/v2/darc/multi/manifests/1", status: 200, bodyDigest: indexDigest, contentType: "application/vnd.oci.image.index.v1+json",
			headers: map[string]string{"Docker-Content-Digest": indexDigest}},
		{name: "index-child", method: "GET", path: "/v2/darc/multi/manifests/" + amd64Digest, status: 200, bodyDigest: amd64Digest, contentType: "application/vnd.oci.image.manifest.v1+json"},
		{name: "index-child-config", method: "GET", path: "/v2/darc/multi/blobs/" + amd64Config, status: 200, bodyDigest: amd64Config},
		// Accept: a tag's list the client does not admit is answered with its linux/amd64
		// manifest, or 404 if that is not admitted either; a Docker schema 2 manifest, and
		// a manifest by digest, are served whatever the client admits.
		{name: "index-tag-no-index-accepted", method: "GET", path: "/v2/darc/multi/manifests/1", header: map[string]string{"Accept": "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"},
			status: 200, bodyDigest: amd64Digest, contentType: "application/vnd.oci.image.manifest.v1+json", headers: map[string]string{"Docker-Content-Digest": amd64Digest}},
		{name: "index-tag-nothing-accepted", method: "GET", path: "/v2/darc/multi/manifests/1", header: map[string]string{"Accept": "application/vnd.docker.distribution.manifest.v2+json"}, status: 404, code: "MANIFEST_UNKNOWN"},
		{name: "schema2-tag-not-accepted", method: "GET", path: "/v2/darc/a/manifests/1", header: map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"}, status: 200, bodyDigest: a1Digest},
		{name: "manifest-tag-any-accepted", method: "GET", path: "/v2/darc/a/manifests/1", header: map[string]string{"Accept": "text/html;q=0.9, */*;q=0.8"}, status: 200, bodyDigest: a1Digest},
		{name: "index-digest-whatever-accepted", method: "GET", path: "/v2/darc/multi/manifests/" + indexDigest, header: map[string]string{"Accept": "application/vnd.docker.distribution.manifest.v2+json"}, status: 200, bodyDigest: indexDigest},
		// Blobs, whole and by range.
		{name: "blob-config", method: "GET", path: "/v2/darc/a/blobs/" + a1.ID.String(), status: 200, bodyDigest: a1.ID, contentType: "application/octet-stream"},
		{name: "blob-layer", method: "GET", path: layerPath, status: 200, bodyDigest: layer.Digest,
			headers: map[string]string{"Docker-Content-Digest": layer.Digest.String(), "Content-Length": fmt.Sprint(layer.Size), "Accept-Ranges": "bytes", "ETag": `"` + layer.Digest.String() + `"`}},
		{name: "blob-head", method: "HEAD", path: layerPath, status: 200, noBody: true, headers: map[string]string{"Content-Length": fmt.Sprint(layer.Size)}},
		{name: "blob-range", method: "GET", path: layerPath, header: map[string]string{"Range": "bytes=10-19"}, status: 206, body: string(layerBytes[10:20]),
			headers: map[string]string{"Content-Range": fmt.Sprintf("bytes 10-19/%d", layer.Size), "Content-Length": "10"}},
		{name: "blob-range-open", method: "GET", path: layerPath, header: map[string]string{"Range": fmt.Sprintf("bytes=%d-", layer.Size-3)}, status: 206, body: string(layerBytes[layer.Size-3:])},
		{name: "blob-range-suffix", method: "GET", path: layerPath, header: map[string]string{"Range": "bytes=-4"}, status: 206, body: string(layerBytes[layer.Size-4:])},
		{name: "blob-range-past-end-clipped", method: "GET", path: layerPath, header: map[string]string{"Range": fmt.Sprintf("bytes=5-%d", layer.Size+100)}, status: 206, body: string(layerBytes[5:])},
		{name: "blob-range-unsatisfiable", method: "GET", path: layerPath, header: map[string]string{"Range": fmt.Sprintf("bytes=%d-", layer.Size)}, status: 416, code: "RANGE_INVALID",
			headers: map[string]string{"Content-Range": fmt.Sprintf("bytes */%d", layer.Size)}},
		{name: "blob-range-huge", method: "GET", path: layerPath, header: map[string]string{"Range": "bytes=99999999999999999999999999-"}, status: 416},
		{name: "blob-range-garbage-ignored", method: "GET", path: layerPath, header: map[string]string{"Range": "bytes=a-b"}, status: 200, bodyDigest: layer.Digest},
		{name: "blob-range-multi-ignored", method: "GET", path: layerPath, header: map[string]string{"Range": "bytes=0-1,5-6"}, status: 200, bodyDigest: layer.Digest},
		{name: "blob-range-long-ignored", method: "GET", path: layerPath, header: map[string]string{"Range": "bytes=" + strings.Repeat("1", 5000) + "-"}, status: 200, bodyDigest: layer.Digest},
		{name: "blob-unknown", method: "GET", path: "/v2/darc/a/blobs/" + missing.String(), status: 404, code: "BLOB_UNKNOWN"},
		{name: "blob-other-repo", method: "GET", path: "/v2/darc/multi/blobs/" + layer.Digest.String(), status: 404, code: "BLOB_UNKNOWN"},
		{name: "blob-bad-digest", method: "GET", path: "/v2/darc/a/blobs/sha256:1234", status: 400, code: "DIGEST_INVALID"},
		{name: "blob-not-a-digest", method: "GET", path: "/v2/darc/a/blobs/latest", status: 400, code: "DIGEST_INVALID"},
		// Referrers: an empty index when the archive holds none.
		{name: "referrers", method: "GET", path: "/v2/darc/a/referrers/" + a1Digest.String(), status: 200, contentType: "application/vnd.oci.image.index.v1+json",
			body: `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`},
		{name: "referrers-filter", method: "GET", path: "/v2/darc/a/referrers/" + a1Digest.String() + "?artifactType=application/x.test", status: 200,
			headers: map[string]string{"OCI-Filters-Applied": "artifactType"}},
		{name: "referrers-bad-digest", method: "GET", path: "/v2/darc/a/referrers/nope", status: 400, code: "DIGEST_INVALID"},
		// Every write method is refused.
		{name: "post-upload", method: "POST", path: "/v2/darc/a/blobs/uploads/", status: 405, code: "UNSUPPORTED", headers: map[string]string{"Allow": "GET, HEAD"}},
		{name: "put-manifest", method: "PUT", path: "/v2/darc/a/manifests/2", status: 405, code: "UNSUPPORTED"},
		{name: "patch-upload", method: "PATCH", path: "/v2/darc/a/blobs/uploads/x", status: 405, code: "UNSUPPORTED"},
		{name: "delete-manifest", method: "DELETE", path: "/v2/darc/a/manifests/" + a1Digest.String(), status: 405, code: "UNSUPPORTED"},
		{name: "delete-blob", method: "DELETE", path: layerPath, status: 405, code: "UNSUPPORTED"},
		// Hostile paths.
		{name: "dotdot", method: "GET", path: "/v2/../darc/a/manifests/1", status: 400, code: "NAME_INVALID"},
		{name: "dotdot-inside", method: "GET", path: "/v2/darc/../a/manifests/1", status: 400, code: "NAME_INVALID"},
		{name: "overlong-name", method: "GET", path: "/v2/" + strings.Repeat("a", 300) + "/manifests/1", status: 400, code: "NAME_INVALID"},
		{name: "overlong-tag", method: "GET", path: "/v2/darc/a/manifests/" + strings.Repeat("t", 200), status: 404, code: "MANIFEST_UNKNOWN"},
		{name: "uppercase-name", method: "GET", path: "/v2/Darc/A/manifests/1", status: 400, code: "NAME_INVALID"},
		{name: "not-v2", method: "GET", path: "/v1/_ping", status: 404},
		{name: "unknown-endpoint", method: "GET", path: "/v2/darc/a/nothing/1", status: 404},
		{name: "uploads-get", method: "GET", path: "/v2/darc/a/blobs/uploads/", status: 404},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			r := serveReq(t, h, c.method, c.path, c.header)
			if r.status != c.status {
				t.Fatalf("status %d, want %d; body %s", r.status, c.status, truncateBody(r.body))
			}
			if got := r.header.Get("Docker-Distribution-API-Version"); got != "registry/2.0" {
				t.Errorf("Docker-Distribution-API-Version %q", got)
			}
			if c.code != "" {
				if got := errorCode(r.body); got != c.code {
					t.Errorf("error code %q, want %q; body %s", got, c.code, truncateBody(r.body))
				}
				if ct := r.header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("error Content-Type %q", ct)
				}
			}
			if c.body != "" && string(r.body) != c.body {
				t.Errorf("body %s, want %s", truncateBody(r.body), truncateBody([]byte(c.body)))
			}
			if c.bodyDigest != "" {
				if got := digest.FromBytes(r.body); got != c.bodyDigest {
					t.Errorf("body digest %s, want %s", got, c.bodyDigest)
				}
			}
			if c.noBody && len(r.body) != 0 {
				t.Errorf("body of %d bytes, want none", len(r.body))
			}
			if c.contentType != "" && r.header.Get("Content-Type") != c.contentType {
				t.Errorf("Content-Type %q, want %q", r.header.Get("Content-Type"), c.contentType)
			}
			for k, v := range c.headers {
				if got := r.header.Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
		})
	}
}

func truncateBody(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}

// readBlob reads blob d of the image tag names through the archive's image source.
func readBlob(t *testing.T, a *archive.ReadableArchive, tag string, d digest.Digest) []byte {
	t.Helper()
	ref, err := a.Reference(tagSelector(t, tag))
	if err != nil {
		t.Fatal(err)
	}
	src, err := ref.NewImageSource(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	rc, _, err := src.GetBlob(t.Context(), blobInfo(d, -1), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pullAll fetches, through the server at base, every tag of every repository in the
// catalog, its manifest and every blob it names (the config and layers, and for an index
// each platform's), checking every body against its digest; it returns the blob bytes
// fetched.
func pullAll(t testing.TB, client *http.Client, base string) int64 {
	get := func(path string, accept string) ([]byte, http.Header) {
		req, err := http.NewRequest("GET", base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %s %s", path, resp.Status, body)
		}
		return body, resp.Header
	}
	var cat struct{ Repositories []string }
	body, _ := get("/v2/_catalog", "")
	if err := json.Unmarshal(body, &cat); err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, name := range cat.Repositories {
		var tags struct{ Tags []string }
		body, _ := get("/v2/"+name+"/tags/list", "")
		if err := json.Unmarshal(body, &tags); err != nil {
			t.Fatal(err)
		}
		for _, tag := range tags.Tags {
			var walk func(path string)
			walk = func(path string) {
				body, hdr := get("/v2/"+name+"/manifests/"+path, "")
				if d := digest.FromBytes(body); d.String() != hdr.Get("Docker-Content-Digest") {
					t.Fatalf("%s:%s: manifest %s, header says %s", name, path, d, hdr.Get("Docker-Content-Digest"))
				}
				type desc struct {
					Digest digest.Digest
					Size   int64
				}
				var m struct {
					Config    *desc
					Layers    []desc
					Manifests []desc
				}
				if err := json.Unmarshal(body, &m); err != nil {
					t.Fatal(err)
				}
				var blobs []desc
				if m.Config != nil {
					blobs = append(blobs, *m.Config)
				}
				blobs = append(blobs, m.Layers...)
				for _, d := range blobs {
					b, _ := get("/v2/"+name+"/blobs/"+d.Digest.String(), "")
					if got := digest.FromBytes(b); got != d.Digest || int64(len(b)) != d.Size {
						t.Fatalf("%s: blob %s (%d bytes) reads as %s (%d bytes)", name, d.Digest, d.Size, got, len(b))
					}
					total += int64(len(b))
				}
				for _, child := range m.Manifests {
					if st := headStatus(t, client, base+"/v2/"+name+"/manifests/"+child.Digest.String()); st == 200 {
						walk(child.Digest.String())
					}
				}
			}
			walk(tag)
		}
	}
	return total
}

func headStatus(t testing.TB, client *http.Client, url string) int {
	resp, err := client.Head(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestServeBundleAndConcurrentPulls serves the same images from a plain archive and from a
// seekable bundle (read in place) over real HTTP, 32 pulls at once, every byte checked.
func TestServeBundleAndConcurrentPulls(t *testing.T) {
	dir := t.TempDir()
	plainPath, bundlePath := filepath.Join(dir, "b.tar"), filepath.Join(dir, "b.tar.zst")
	writeBundle(t, plainPath, archive.CompressNone)
	writeBundle(t, bundlePath, archive.CompressZstd)
	for _, path := range []string{plainPath, bundlePath} {
		t.Run(filepath.Base(path), func(t *testing.T) {
			spool := t.TempDir()
			a, err := archive.Open(path, archive.WithTempDir(spool))
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			h, serveLog := loggedHandler(t, a)
			srv := httptest.NewServer(h)
			defer srv.Close()
			var wg sync.WaitGroup
			totals := make([]int64, 32)
			for i := range totals {
				wg.Go(func() { totals[i] = pullAll(t, srv.Client(), srv.URL) })
			}
			wg.Wait()
			for _, n := range totals {
				if n == 0 || n != totals[0] {
					t.Fatalf("pulls read %v bytes, want the same non-zero amount each", totals)
				}
			}
			logged := serveLog.get()
			if len(logged) > 0 {
				t.Errorf("logged %q", logged)
			}
			if names, _ := os.ReadDir(spool); len(names) > 0 {
				t.Errorf("spooled %d files, want none (read in place)", len(names))
			}
		})
	}
}

// TestServeFirstArchiveWins: a NAME:TAG in two archives is served from the first given.
func TestServeFirstArchiveWins(t *testing.T) {
	skopeo := openServed(t, filepath.Join(fixtureDir, "skopeo-copy.tar"))
	podman := openServed(t, filepath.Join(fixtureDir, "docker20-save-multi.tar"))
	for _, order := range [][]*archive.ReadableArchive{{skopeo, podman}, {podman, skopeo}} {
		want, err := order[0].Inspect(tagSelector(t, "example.com/darc/a:1"))
		if err != nil {
			t.Fatal(err)
		}
		r := serveReq(t, archive.Handler(order...), "GET", "/v2/darc/a/manifests/1", nil)
		if r.status != 200 || !bytes.Equal(r.body, want.Manifest) {
			t.Errorf("first %s: got %d %s, want its manifest %s", order[0].Path(), r.status, truncateBody(r.body), want.Manifest)
		}
	}
}

// TestServePrefix: WithPrefix puts every repository (and alias) under the prefix; an
// invalid prefix is refused.
func TestServePrefix(t *testing.T) {
	a := openServed(t, filepath.Join(fixtureDir, "podman-save-m.tar"))
	h, err := archive.NewHandler([]*archive.ReadableArchive{a}, archive.WithPrefix("mirror/x"))
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]int{
		"/v2/mirror/x/library/busybox-like/manifests/1": 200,
		"/v2/mirror/x/busybox-like/manifests/1":         200,
		"/v2/library/busybox-like/manifests/1":          404,
		"/v2/mirror/x/darc/a/tags/list":                 200,
	} {
		if r := serveReq(t, h, "GET", path, nil); r.status != want {
			t.Errorf("GET %s: %d, want %d", path, r.status, want)
		}
	}
	r := serveReq(t, h, "GET", "/v2/_catalog", nil)
	if want := `{"repositories":["mirror/x/c","mirror/x/darc/a","mirror/x/library/busybox-like"]}`; string(r.body) != want {
		t.Errorf("catalog %s, want %s", r.body, want)
	}
	for _, bad := range []string{"/mirror", "mirror/", "Mirror", "a//b", "a/../b", strings.Repeat("a", 256)} {
		if _, err := archive.NewHandler([]*archive.ReadableArchive{a}, archive.WithPrefix(bad)); err == nil {
			t.Errorf("prefix %q accepted", bad)
		}
	}
}

// copyFixture copies a fixture to a temp file the test may change.
func copyFixture(t *testing.T, name string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, readFile(t, filepath.Join(fixtureDir, name)), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestServeArchiveChanged: once the archive file changes size or modification time, or (on
// Linux) is written in place with its modification time put back, its blobs (including one
// already sent) and manifests are answered 500 and the change is logged.
func TestServeArchiveChanged(t *testing.T) {
	for _, change := range []string{"append", "touch", "in-place"} {
		t.Run(change, func(t *testing.T) {
			if change == "in-place" && runtime.GOOS != "linux" {
				t.Skip("status change times are compared on Linux only")
			}
			path := copyFixture(t, "podman-save-m.tar")
			a := openServed(t, path)
			h, serveLog := loggedHandler(t, a)
			d, err := a.Inspect(tagSelector(t, "example.com/darc/a:1"))
			if err != nil {
				t.Fatal(err)
			}
			blob := "/v2/darc/a/blobs/" + d.Layers[0].Digest.String()
			if r := serveReq(t, h, "GET", blob, nil); r.status != 200 {
				t.Fatalf("before the change: %d", r.status)
			}
			switch change {
			case "append":
				f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				_, err = f.Write(make([]byte, 1024))
				if cerr := f.Close(); err == nil {
					err = cerr
				}
				if err != nil {
					t.Fatal(err)
				}
			case "touch":
				later := time.Now().Add(time.Hour)
				if err := os.Chtimes(path, later, later); err != nil {
					t.Fatal(err)
				}
			case "in-place":
				st, err := os.Stat(path)
				if err != nil {
					t.Fatal(err)
				}
				data := readFile(t, path)
				data[len(data)/2] ^= 0xff
				if err := os.WriteFile(path, data, 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.Chtimes(path, st.ModTime(), st.ModTime()); err != nil {
					t.Fatal(err)
				}
			}
			for _, p := range []string{blob, "/v2/darc/a/manifests/1"} {
				if r := serveReq(t, h, "GET", p, nil); r.status != 500 {
					t.Errorf("GET %s after the change: %d, want 500", p, r.status)
				}
			}
			logged := serveLog.get()
			if len(logged) == 0 || !strings.Contains(logged[0], "changed since it was opened") {
				t.Errorf("logged %q", logged)
			}
		})
	}
}

// TestServeDigestMismatch: a layer whose stored bytes do not match its digest (damaged
// before the archive was opened) is answered 500, whole or by range, and logged; the
// archive's other blobs are still served.
func TestServeDigestMismatch(t *testing.T) {
	path := copyFixture(t, "podman-save-m.tar")
	clean := openServed(t, path)
	d, err := clean.Inspect(tagSelector(t, "example.com/darc/a:1"))
	if err != nil {
		t.Fatal(err)
	}
	l := d.Layers[len(d.Layers)-1]
	content := readBlob(t, clean, "example.com/darc/a:1", l.Digest)
	data := readFile(t, path)
	at := bytes.Index(data, content)
	if at < 0 || bytes.Index(data[at+1:], content) >= 0 {
		t.Fatal("layer bytes not found once in the archive")
	}
	data[at+100] ^= 0xff
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	a := openServed(t, path)
	h, serveLog := loggedHandler(t, a)
	blob := "/v2/darc/a/blobs/" + l.Digest.String()
	for _, rg := range []map[string]string{nil, {"Range": "bytes=0-9"}} {
		if r := serveReq(t, h, "GET", blob, rg); r.status != 500 || errorCode(r.body) != "UNKNOWN" {
			t.Errorf("GET %v of the damaged layer: %d %s, want 500 UNKNOWN", rg, r.status, r.body)
		}
	}
	logged := serveLog.get()
	if len(logged) != 2 || !strings.Contains(logged[0], "digest") || !strings.Contains(logged[0], "not serving it") {
		t.Errorf("logged %q, want a digest mismatch per request", logged)
	}
	other := d.Layers[0].Digest
	if r := serveReq(t, h, "GET", "/v2/darc/a/blobs/"+other.String(), nil); r.status != 200 || digest.FromBytes(r.body) != other {
		t.Errorf("GET of an intact layer: %d", r.status)
	}
}

// TestServeRangesOverHTTP fetches every range of a layer over a real connection, where a
// plain tar's ranges go out by sendfile and a bundle's through a buffer, and compares them
// with the layer's bytes.
func TestServeRangesOverHTTP(t *testing.T) {
	dir := t.TempDir()
	plainPath, bundlePath := filepath.Join(dir, "b.tar"), filepath.Join(dir, "b.tar.zst")
	writeBundle(t, plainPath, archive.CompressNone)
	writeBundle(t, bundlePath, archive.CompressZstd)
	for _, path := range []string{plainPath, bundlePath} {
		t.Run(filepath.Base(path), func(t *testing.T) {
			a := openServed(t, path)
			d, err := a.Inspect(tagSelector(t, "docker.io/library/busybox-like:1"))
			if err != nil {
				t.Fatal(err)
			}
			l := d.Layers[len(d.Layers)-1]
			content := readBlob(t, a, "docker.io/library/busybox-like:1", l.Digest)
			srv := httptest.NewServer(archive.Handler(a))
			defer srv.Close()
			for _, rg := range [][2]int64{{0, 0}, {0, l.Size - 1}, {1, 511}, {512, 1023}, {l.Size - 1, l.Size - 1}, {100, l.Size + 50}} {
				req, err := http.NewRequest("GET", srv.URL+"/v2/library/busybox-like/blobs/"+l.Digest.String(), nil)
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", rg[0], rg[1]))
				resp, err := srv.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Fatal(err)
				}
				end := min(rg[1], l.Size-1)
				if resp.StatusCode != 206 || !bytes.Equal(body, content[rg[0]:end+1]) {
					t.Errorf("range %d-%d: %s, %d bytes, want 206 and bytes %d-%d", rg[0], rg[1], resp.Status, len(body), rg[0], end)
				}
			}
		})
	}
}

// TestServeBrokenImage: an image whose layer member is missing is answered 500 by tag (and
// logged), is left out of its repository's digests, and does not keep the archive's other
// images from being served.
func TestServeBrokenImage(t *testing.T) {
	a := openServed(t, filepath.Join(fixtureDir, "podman-save-m.tar"))
	d, err := a.Inspect(tagSelector(t, "localhost/c:v1"))
	if err != nil {
		t.Fatal(err)
	}
	own := d.Layers[len(d.Layers)-1] // c's own layer, not shared with the others
	broken := withoutMembers(t, readFile(t, filepath.Join(fixtureDir, "podman-save-m.tar")), own.Member)
	b := openServed(t, writeTemp(t, broken))
	h, serveLog := loggedHandler(t, b)
	for path, want := range map[string]int{
		"/v2/c/manifests/v1":                       500,
		"/v2/c/blobs/" + d.ID.String():             404,
		"/v2/darc/a/manifests/1":                   200,
		"/v2/library/busybox-like/manifests/1":     200,
		"/v2/c/manifests/" + own.Digest.String():   404,
		"/v2/c/tags/list":                          200,
		"/v2/library/busybox-like/blobs/" + "x:yz": 400,
	} {
		if r := serveReq(t, h, "GET", path, nil); r.status != want {
			t.Errorf("GET %s: %d, want %d (%s)", path, r.status, want, truncateBody(r.body))
		}
	}
	logged := serveLog.get()
	if len(logged) == 0 || !strings.Contains(strings.Join(logged, "\n"), "repository c") {
		t.Errorf("logged %q, want the broken image named", logged)
	}
}

// TestServeDecompressedLayers serves an archive whose layer members are xz-compressed, which
// the image source serves decompressed with no size in its manifest: the registry states
// their sizes (reading each once), serves them whole and by range, and the pull checks
// every size and digest.
func TestServeDecompressedLayers(t *testing.T) {
	data, err := archivetest.BuildBytes(archivetest.SharedImages(), archivetest.Options{Layout: archivetest.Docker24, XzMembers: true})
	if err != nil {
		t.Fatal(err)
	}
	a := openServed(t, writeTemp(t, data))
	d, err := a.Inspect(tagSelector(t, "busybox:latest"))
	if err != nil {
		t.Fatal(err)
	}
	l := d.Layers[0]
	if l.Size >= 0 || l.Compression != "xz" {
		t.Fatalf("layer %+v: want an xz member served decompressed, size -1", l)
	}
	content := readBlob(t, a, "busybox:latest", l.Digest)
	h, serveLog := loggedHandler(t, a)
	srv := httptest.NewServer(h)
	defer srv.Close()
	if n := pullAll(t, srv.Client(), srv.URL); n == 0 {
		t.Fatal("nothing pulled")
	}
	blob := "/v2/library/busybox/blobs/" + l.Digest.String()
	r := serveReq(t, h, "HEAD", blob, nil)
	if r.status != 200 || r.header.Get("Content-Length") != fmt.Sprint(len(content)) {
		t.Errorf("HEAD: %d, Content-Length %q, want %d", r.status, r.header.Get("Content-Length"), len(content))
	}
	r = serveReq(t, h, "GET", blob, map[string]string{"Range": "bytes=1000-1999"})
	if r.status != 206 || !bytes.Equal(r.body, content[1000:2000]) {
		t.Errorf("range: %d, %d bytes", r.status, len(r.body))
	}
	logged := serveLog.get()
	if len(logged) > 0 {
		t.Errorf("logged %q", logged)
	}
}

// readMember returns the bytes of tar member name in data.
func readMember(t *testing.T, data []byte, name string) []byte {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if err != nil {
			t.Fatalf("member %q: %v", name, err)
		}
		if hdr.Name == name {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
}

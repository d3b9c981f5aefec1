package archive_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/darc-dev/darc/archive"
)

// FuzzServe sends the handler arbitrary methods, paths and Range headers. Properties: it
// never panics (a response cut off on purpose is the only panic, and an intact archive never
// needs one); every answer has the API version header and a status the spec allows; every
// error has the spec's JSON body; a 200 blob body hashes to the digest it was asked for and a
// 206 one is as long as its Content-Range says; a 200 manifest body hashes to its
// Docker-Content-Digest.
//
//	go test -tags containers_image_openpgp -run '^$' -fuzz '^FuzzServe$' -fuzztime 5m ./archive/
func FuzzServe(f *testing.F) {
	a, err := archive.Open(filepath.Join(fixtureDir, "podman-save-m.tar"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { a.Close() })
	multi, err := archive.Open(filepath.Join(fixtureDir, "ctr", "all-platforms.tar"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { multi.Close() })
	var mu sync.Mutex
	var logged []string
	h, err := archive.NewHandler([]*archive.ReadableArchive{a, multi}, archive.WithServeLog(func(s string) { mu.Lock(); logged = append(logged, s); mu.Unlock() }))
	if err != nil {
		f.Fatal(err)
	}
	d, err := a.Inspect(tagSelector(f, "example.com/darc/a:1"))
	if err != nil {
		f.Fatal(err)
	}
	layer := d.Layers[0].Digest.String()
	for _, seed := range [][3]string{
		{"GET", "/v2/", ""},
		{"GET", "/v2/darc/a/manifests/1", ""},
		{"HEAD", "/v2/darc/multi/manifests/1", ""},
		{"GET", "/v2/darc/a/blobs/" + layer, "bytes=0-99"},
		{"GET", "/v2/darc/a/blobs/" + layer, "bytes=-1"},
		{"GET", "/v2/darc/a/blobs/" + d.ID.String(), "bytes=5-"},
		{"GET", "/v2/darc/a/tags/list?n=1&last=1", ""},
		{"GET", "/v2/_catalog?n=2&last=c", ""},
		{"GET", "/v2/darc/a/referrers/" + layer + "?artifactType=x", ""},
		{"PUT", "/v2/darc/a/manifests/x", ""},
		{"GET", "/v2/../../etc/passwd", ""},
		{"GET", "/v2/darc/a/blobs/sha256:" + strings.Repeat("0", 64), "bytes=1-0"},
	} {
		f.Add(seed[0], seed[1], seed[2])
	}
	f.Fuzz(func(t *testing.T, method, target, rangeHeader string) {
		if method == "" || strings.ContainsAny(method, " \t\r\n()<>@,;:\\\"/[]?={}") || len(target) > 4096 {
			return // not a request line net/http would parse
		}
		u, err := url.ParseRequestURI(target)
		if err != nil || !strings.HasPrefix(u.Path, "/") {
			return
		}
		req := &http.Request{Method: method, URL: u, Header: http.Header{}, Host: "registry.test", RequestURI: target}
		if rangeHeader != "" {
			req.Header.Set("Range", rangeHeader)
		}
		rec := httptest.NewRecorder()
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Fatalf("%s %q (Range %q): panic %v", method, target, rangeHeader, p)
				}
			}()
			h.ServeHTTP(rec, req)
		}()
		res := rec.Result()
		body := rec.Body.Bytes()
		switch res.StatusCode {
		case 200, 206, 304, 400, 404, 405, 416:
		default:
			t.Fatalf("%s %q: status %d", method, target, res.StatusCode)
		}
		if res.Header.Get("Docker-Distribution-API-Version") != "registry/2.0" && strings.HasPrefix(u.Path, "/v2") {
			t.Fatalf("%s %q: no API version header", method, target)
		}
		if res.StatusCode >= 400 && method != "HEAD" {
			// Registry errors carry the spec's body; only a path that is no registry
			// endpoint at all gets net/http's plain 404.
			var e struct{ Errors []struct{ Code string } }
			isSpec := json.Unmarshal(body, &e) == nil && len(e.Errors) == 1 && e.Errors[0].Code != ""
			if !isSpec && (res.StatusCode != 404 || res.Header.Get("Content-Type") == "application/json") {
				t.Fatalf("%s %q: %d with body %q", method, target, res.StatusCode, body)
			}
		}
		if method != "GET" {
			return
		}
		parts := strings.Split(u.Path, "/")
		kind := ""
		if len(parts) >= 3 {
			kind = parts[len(parts)-2]
		}
		switch {
		case res.StatusCode == 200 && kind == "blobs":
			if want := parts[len(parts)-1]; digest.FromBytes(body).String() != want {
				t.Fatalf("GET %q: body hashes to %s", target, digest.FromBytes(body))
			}
		case res.StatusCode == 206:
			var first, last, size int64
			if _, err := fmt.Sscanf(res.Header.Get("Content-Range"), "bytes %d-%d/%d", &first, &last, &size); err != nil {
				t.Fatalf("GET %q: Content-Range %q", target, res.Header.Get("Content-Range"))
			}
			if int64(len(body)) != last-first+1 || strconv.Itoa(len(body)) != res.Header.Get("Content-Length") || last >= size {
				t.Fatalf("GET %q (Range %q): %d bytes for %q", target, rangeHeader, len(body), res.Header.Get("Content-Range"))
			}
		case res.StatusCode == 200 && kind == "manifests":
			if got := digest.FromBytes(body).String(); got != res.Header.Get("Docker-Content-Digest") {
				t.Fatalf("GET %q: body %s, header %s", target, got, res.Header.Get("Docker-Content-Digest"))
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if len(logged) > 0 {
			t.Fatalf("the handler logged %q", logged)
		}
	})
}

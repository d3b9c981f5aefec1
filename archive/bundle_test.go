package archive_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/darc-dev/darc/archive"
	dcopy "github.com/darc-dev/darc/copy"
	"github.com/darc-dev/darc/internal/archivetest"
	"github.com/darc-dev/darc/internal/testtools"
)

// writeBundle merges the fixture podman-save-m.tar into a new archive at path, compressed c.
func writeBundle(t *testing.T, path string, c archive.Compression) {
	t.Helper()
	writeBundleFrom(t, filepath.Join(fixtureDir, "podman-save-m.tar"), path, c)
}

// writeBundleFrom merges the archive src into a new archive at path, compressed c, and
// returns what the writer counted.
func writeBundleFrom(t *testing.T, src, path string, c archive.Compression) archive.WriteStats {
	t.Helper()
	in, err := archive.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	w, err := archive.Create(path, archive.WithCompression(c, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := dcopy.Merge(context.Background(), w, []*archive.ReadableArchive{in}); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	return w.Stats()
}

// TestBundleReadInPlace: a seekable .tar.zst is opened, listed, verified and read without a
// temp file, and reads back as the plain archive does; the same bundle written twice has the
// same bytes.
func TestBundleReadInPlace(t *testing.T) {
	dir := t.TempDir()
	plain, bundle := filepath.Join(dir, "b.tar"), filepath.Join(dir, "b.tar.zst")
	writeBundle(t, plain, archive.CompressNone)
	writeBundle(t, bundle, archive.CompressZstd)
	if spool, err := archive.NeedsSpool(bundle); err != nil || spool {
		t.Errorf("NeedsSpool = %v, %v; want false", spool, err)
	}
	spoolDir := t.TempDir()
	a, err := archive.Open(bundle, archive.WithTempDir(spoolDir), archive.WithWarnings(func(s string) { t.Errorf("warning: %s", s) }))
	if err != nil {
		t.Fatal(err)
	}
	if probs := a.Verify(context.Background(), 2); len(probs) > 0 {
		t.Errorf("verify: %v", probs)
	}
	a.Close()
	if got := testtools.DirNames(t, spoolDir); len(got) > 0 {
		t.Errorf("temp files %q, want none", got)
	}
	if got, want := wtReadBack(t, bundle), wtReadBack(t, plain); !wtEqual(got, want) {
		t.Errorf("bundle reads back %+v, want %+v", got, want)
	}
	again := filepath.Join(dir, "again.tar.zst")
	writeBundle(t, again, archive.CompressZstd)
	if a, b := readFile(t, bundle), readFile(t, again); string(a) != string(b) {
		t.Error("two bundles of the same images differ")
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBundleCompatibility: the tools that read a .tar.zst read darc's seekable one as they
// read any (containers/image, skopeo, podman load, zstd -t); docker 20.10 reads no zstd, so
// it loads `zstd -dc bundle | docker load`, and go-containerregistry what `zstd -d` makes of it.
func TestBundleCompatibility(t *testing.T) {
	if testing.Short() {
		t.Skip("starts dockerd and podman")
	}
	zstd := testtools.Require(t, "zstd")
	dir := t.TempDir()
	plain, bundle := filepath.Join(dir, "b.tar"), filepath.Join(dir, "b.tar.zst")
	writeBundle(t, plain, archive.CompressNone)
	writeBundle(t, bundle, archive.CompressZstd)
	want := wtReadBack(t, plain)
	if _, err := testtools.Run(context.Background(), zstd, "-q", "-t", bundle); err != nil {
		t.Fatalf("zstd -t: %v", err)
	}
	t.Run("containers-image", func(t *testing.T) { checkContainersImage(t, bundle, want) })
	t.Run("skopeo", func(t *testing.T) { checkSkopeo(t, bundle, want) })
	t.Run("podman-load", func(t *testing.T) { checkPodman(t, bundle, want) })
	decoded := checkDecodesTo(t, zstd, bundle, plain)
	t.Run("go-containerregistry", func(t *testing.T) { checkGGCR(t, decoded, want) })
	t.Run("zstd-dc-docker-load", func(t *testing.T) { checkZstdDockerLoad(t, zstd, bundle, want) })
}

// TestBundleSpooledLayers: layers that arrive gzip-compressed are decompressed into the
// bundle, their size unknown until they end, so they are spooled, compressed as they arrive,
// and their frames copied in. The bundle still decodes to the tar of the plain archive of the
// same images, and podman, skopeo and docker (through zstd -dc) load it.
func TestBundleSpooledLayers(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "crane.tar")
	base, app, extra := textLayer(t, 1, 1<<20), textLayer(t, 2, 5<<20), textLayer(t, 3, 300<<10)
	images := []archivetest.Image{
		{Tags: []string{"example.com/big/a:1"}, Layers: [][]byte{base, app}},
		{Tags: []string{"example.com/big/b:1"}, Layers: [][]byte{base, extra}},
	}
	data, err := archivetest.BuildBytes(images, archivetest.Options{Layout: archivetest.Crane})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	plain, bundle := filepath.Join(dir, "b.tar"), filepath.Join(dir, "b.tar.zst")
	writeBundleFrom(t, src, plain, archive.CompressNone)
	// Every layer is spooled (a compressed output cannot patch headers), compressed.
	raw := int64(len(base) + len(app) + len(extra))
	if st := writeBundleFrom(t, src, bundle, archive.CompressZstd); st.Spooled == 0 || st.Spooled > raw/2 {
		t.Fatalf("spooled %d bytes of %d bytes of layers: want them spooled compressed", st.Spooled, raw)
	}
	zstd := testtools.Require(t, "zstd")
	checkDecodesTo(t, zstd, bundle, plain)
	want := wtReadBack(t, plain)
	if got := wtReadBack(t, bundle); !wtEqual(got, want) {
		t.Errorf("bundle reads back %+v, want %+v", got, want)
	}
	if testing.Short() {
		return
	}
	t.Run("skopeo", func(t *testing.T) { checkSkopeo(t, bundle, want) })
	t.Run("podman-load", func(t *testing.T) { checkPodman(t, bundle, want) })
	t.Run("zstd-dc-docker-load", func(t *testing.T) { checkZstdDockerLoad(t, zstd, bundle, want) })
}

// checkDecodesTo checks that the zstd command decodes bundle to the bytes of the file plain,
// and returns the path of the decoded tar.
func checkDecodesTo(t *testing.T, zstd, bundle, plain string) string {
	t.Helper()
	decoded := filepath.Join(t.TempDir(), "decoded.tar")
	if _, err := testtools.Run(context.Background(), zstd, "-q", "-d", "-o", decoded, bundle); err != nil {
		t.Fatalf("zstd -d: %v", err)
	}
	if string(readFile(t, decoded)) != string(readFile(t, plain)) {
		t.Fatal("zstd -d gives another tar than the plain archive")
	}
	return decoded
}

// checkZstdDockerLoad loads `zstd -dc bundle` into a new dockerd, as Docker 20.10, which
// reads no zstd, is given a bundle, and checks the images it holds then.
func checkZstdDockerLoad(t *testing.T, zstd, bundle string, want []wantImage) {
	d := testtools.StartDockerd(t)
	pipe := exec.Command("sh", "-c", `"$0" -dc "$1" | /usr/bin/docker -H "$2" load -q`, zstd, bundle, d.Host)
	if out, err := pipe.CombinedOutput(); err != nil {
		t.Fatalf("zstd -dc | docker load: %v\n%s", err, out)
	}
	checkDockerImages(t, d, want)
}

// textLayer is a layer tar of about size bytes of text, which compresses as a real layer
// does, in files of 64 KiB, from seed.
func textLayer(t *testing.T, seed uint64, size int) []byte {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 0))
	words := strings.Fields("the layer of an image holds files such as usr bin lib etc share doc with text")
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i := 0; buf.Len() < size; i++ {
		var body []byte
		for len(body) < 64<<10 {
			body = append(body, words[rng.IntN(len(words))]...)
			body = append(body, " \n"[rng.IntN(2)])
		}
		hdr := &tar.Header{Name: fmt.Sprintf("file-%04d.txt", i), Mode: 0o644, Size: int64(len(body)), Format: tar.FormatUSTAR}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

package main

import (
	"bytes"
	"crypto/rand"
	"os/exec"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/darc-dev/darc/internal/archivetest"
	"github.com/darc-dev/darc/internal/testtools"
)

// The bounds class: where the tar ends, and what follows it. docker load (archive/tar inside
// chrootarchive.Untar) stops at the end-of-archive blocks, or at the end of its input on a
// header boundary, and ignores the rest; darc reads the tar up to the same point, looks at
// most 1 MiB further, and warns about data (or more) there. And pzstd's output, which starts
// with a zstd skippable frame.
var _ = registerTruth("bounds", boundsCases)

func TestTruthBounds(t *testing.T) { checkTruth(t, boundsCases(t)) }

func boundsCases(t *testing.T) []truthCase {
	img := newOneImage(1)
	tagged := []truthImage{{id: img.id, tags: []string{"docker.io/library/busybox:1"}}}
	manifest := "[" + img.item(`["busybox:1"]`) + "]"
	tarData := img.archiveWith(manifest)
	garbage := make([]byte, 4096)
	_, _ = rand.Read(garbage)
	zeros := make([]byte, 8<<20)
	withZeros := append(bytes.Clone(tarData), zeros...)

	// A layer member written by pzstd: zstd behind a skippable frame.
	pzLayer := img.layer
	pzLayer.Body = pzstd(t, img.layer.Body)
	pzLayerArchive := archivetest.Tar([]archivetest.Entry{pzLayer, img.config, {Name: "manifest.json", Body: []byte(manifest)}})

	// One end-of-archive block, then data: archive/tar's ErrHeader.
	oneEndBlock := append(bytes.Clone(tarData[:len(tarData)-512]), garbage...)

	return []truthCase{
		{
			// Docker 20.10 reads no zstd: it is given the tar.
			name: "pzstd archive", data: pzstd(t, tarData), dockerData: tarData,
			docker: true, verify: true, load: true, images: tagged,
		},
		{
			// 8 MiB of zeros after the tar inside the zstd stream (a few KB compressed);
			// docker is given `zstd -dc` of it, zeros included.
			name: ".tar.zst with 8 MiB of zeros after the tar", data: zstdBytes(t, withZeros), dockerData: withZeros,
			docker: true, verify: true, load: true, images: tagged,
			says: []string{"warning: more than 1048576 bytes of zeros follow the end of the tar"},
		},
		{
			name: "tar with data after the end blocks", data: append(bytes.Clone(tarData), garbage...),
			docker: true, verify: true, load: true, images: tagged,
			says: []string{"warning: 4096 bytes of data follow the end of the tar"},
		},
		{
			name: "tar without end blocks", data: tarData[:len(tarData)-1024],
			docker: true, verify: true, load: true, images: tagged,
		},
		{
			// archive/tar's ErrHeader, for docker load and darc alike.
			name: "one end block, then data", data: oneEndBlock,
		},
		{
			name: "pzstd layer member", data: pzLayerArchive,
			verify: true, load: true, images: tagged,
			why: "Docker 20.10 reads no zstd layer; Docker 23+ and darc read zstd layers, pzstd's " +
				"skippable frame included (darc serves such a layer decompressed, since containers/image " +
				"does not recognize it as zstd)",
		},
	}
}

// pzstd compresses data with the real pzstd.
func pzstd(t *testing.T, data []byte) []byte {
	t.Helper()
	cmd := exec.Command(testtools.Require(t, "pzstd"), "-q", "-c", "-p", "2")
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("pzstd: %v", err)
	}
	return out
}

// zstdBytes compresses data with klauspost's zstd.
func zstdBytes(t *testing.T, data []byte) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(data, nil)
}

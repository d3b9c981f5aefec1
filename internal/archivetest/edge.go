package archivetest

import (
	"archive/tar"
	"encoding/binary"
	"fmt"
	"math/rand/v2"

	"github.com/opencontainers/go-digest"
)

// The edge-case archives below are small containers/image-style archives holding EdgeImage
// (config "<config-hex>.json", layer "<diffid-hex>.tar", manifest.json), each with one twist.
// Those a reader must accept must read as EdgeExpected.

const edgeTag = "example.com/edge:1"

// EdgeImage is the image inside the edge-case archives: one layer of two small files, tagged
// "example.com/edge:1".
func EdgeImage() Image {
	return Image{Tags: []string{edgeTag}, Layers: [][]byte{Layer(1, 2, 100)}}
}

// EdgeExpected is what a reader must report for the edge-case archives that are valid.
func EdgeExpected() ExpectedImage {
	p := edge()
	return ExpectedImage{
		Tags:    []string{edgeTag},
		ID:      digest.FromBytes(p.config),
		DiffIDs: []digest.Digest{p.diffID},
		Sizes:   []int64{int64(len(p.layer))},
	}
}

type edgeParts struct {
	config     []byte
	configName string
	layer      []byte
	diffID     digest.Digest
	layerName  string
}

func edge() edgeParts {
	img := EdgeImage()
	layer := img.Layers[0]
	d := digest.FromBytes(layer)
	cfg := GenerateConfig([]digest.Digest{d})
	return edgeParts{
		config:     cfg,
		configName: digest.FromBytes(cfg).Encoded() + ".json",
		layer:      layer,
		diffID:     d,
		layerName:  d.Encoded() + ".tar",
	}
}

func (p edgeParts) configEntry() Entry { return Entry{Name: p.configName, Body: p.config} }
func (p edgeParts) layerEntry() Entry  { return Entry{Name: p.layerName, Body: p.layer} }

// manifest is manifest.json for the edge image with its layer at layerPath.
func (p edgeParts) manifest(configPath, layerPath string) Entry {
	return Entry{Name: "manifest.json", Body: ManifestJSON([]ManifestItem{{
		Config: configPath, RepoTags: []string{edgeTag}, Layers: []string{layerPath},
	}})}
}

// SymlinkChain is a valid archive whose manifest.json names the layer as "a/layer.tar", which
// reaches the real "<diffid>.tar" through three symlinks with relative targets, one of them
// not clean ("a/layer.tar" → "../b/layer.tar" → "../x/../c/layer.tar" → "../<diffid>.tar").
// The links come before their targets. A correct reader resolves the chain (each target
// relative to the link's directory) and reports EdgeExpected, with the layer's real size.
func SymlinkChain() []byte {
	p := edge()
	return Tar([]Entry{
		{Name: "a/layer.tar", Type: tar.TypeSymlink, Linkname: "../b/layer.tar"},
		{Name: "b/layer.tar", Type: tar.TypeSymlink, Linkname: "../x/../c/layer.tar"},
		{Name: "c/layer.tar", Type: tar.TypeSymlink, Linkname: "../" + p.layerName},
		p.layerEntry(),
		p.configEntry(),
		p.manifest(p.configName, "a/layer.tar"),
	})
}

// HardlinkLayer is a valid archive whose manifest.json names the layer as "h/layer.tar", a
// hard link (tar.TypeLink; the link name is relative to the archive root) to the earlier
// regular member "<diffid>.tar". A hard link member has no body of its own: a correct reader
// reads the target's content and size and reports EdgeExpected.
func HardlinkLayer() []byte {
	p := edge()
	return Tar([]Entry{
		p.layerEntry(),
		{Name: "h/layer.tar", Type: tar.TypeLink, Linkname: p.layerName},
		p.configEntry(),
		p.manifest(p.configName, "h/layer.tar"),
	})
}

// DuplicateMember is a valid archive in which the layer member "<diffid>.tar" appears twice:
// first with bogus content (another layer, so a different digest and size), last with the
// right content. Extraction, and therefore docker load, keeps the last one; a correct reader
// does the same and reports EdgeExpected (no digest mismatch).
func DuplicateMember() []byte {
	p := edge()
	return Tar([]Entry{
		{Name: p.layerName, Body: Layer(999, 1, 333)},
		p.configEntry(),
		p.layerEntry(),
		p.manifest(p.configName, p.layerName),
	})
}

// EscapingSymlink is an archive whose layer "l/layer.tar" is a symlink to
// "../../etc/passwd", climbing out of the archive. Docker extracts in a chroot and resolves
// paths inside the root, so the climb stops at the root and the link leads to "etc/passwd" in
// the archive, which is not there: a correct reader never opens a host file and fails
// (ErrBadLink), as docker load does. The real layer is present under its usual name.
func EscapingSymlink() []byte {
	p := edge()
	return Tar([]Entry{
		p.layerEntry(),
		{Name: "l/layer.tar", Type: tar.TypeSymlink, Linkname: "../../etc/passwd"},
		p.configEntry(),
		p.manifest(p.configName, "l/layer.tar"),
	})
}

// SymlinkCycle is an archive whose layer "a/layer.tar" is a symlink to "../b/layer.tar",
// which links back to "../a/layer.tar". A correct reader detects the cycle and fails with an
// error; it must not loop or recurse without bound.
func SymlinkCycle() []byte {
	p := edge()
	return Tar([]Entry{
		p.layerEntry(),
		{Name: "a/layer.tar", Type: tar.TypeSymlink, Linkname: "../b/layer.tar"},
		{Name: "b/layer.tar", Type: tar.TypeSymlink, Linkname: "../a/layer.tar"},
		p.configEntry(),
		p.manifest(p.configName, "a/layer.tar"),
	})
}

// LongChain is an archive whose layer "l0/layer.tar" reaches "<diffid>.tar" through n
// symlinks ("l0/layer.tar" → "../l1/layer.tar" → … → "l<n-1>/layer.tar" → "../<diffid>.tar").
// There is no cycle. Docker's FollowSymlinkInScope gives up after 255 path components, which
// each link here takes 3 of: LongChain(84) loads and reads as EdgeExpected, LongChain(85)
// fails with a clean error.
func LongChain(n int) []byte {
	p := edge()
	var entries []Entry
	for i := 0; i < n; i++ {
		target := fmt.Sprintf("../l%d/layer.tar", i+1)
		if i == n-1 {
			target = "../" + p.layerName
		}
		entries = append(entries, Entry{Name: fmt.Sprintf("l%d/layer.tar", i), Type: tar.TypeSymlink, Linkname: target})
	}
	first := "l0/layer.tar"
	if n <= 0 {
		first = p.layerName
	}
	entries = append(entries, p.layerEntry(), p.configEntry(), p.manifest(p.configName, first))
	return Tar(entries)
}

// ManifestDotDot is an archive whose manifest.json names the layer "../<diffid>.tar", outside
// the archive root. To catch readers that match names without checking them, the tar also has a
// member literally named "../<diffid>.tar" (as well as the normal one). A correct reader refuses
// the archive (ErrInsecurePath).
func ManifestDotDot() []byte {
	p := edge()
	return Tar([]Entry{
		p.layerEntry(),
		{Name: "../" + p.layerName, Body: p.layer},
		p.configEntry(),
		p.manifest(p.configName, "../"+p.layerName),
	})
}

// ManifestDotDotInside is a valid archive whose manifest.json names the layer
// "x/../<diffid>.tar": not clean, but local (it cleans to "<diffid>.tar"). A correct reader
// cleans the path and reports EdgeExpected.
func ManifestDotDotInside() []byte {
	p := edge()
	return Tar([]Entry{
		p.layerEntry(),
		p.configEntry(),
		p.manifest(p.configName, "x/../"+p.layerName),
	})
}

// ManifestAbsolute is an archive whose manifest.json names the config as an absolute path
// "/<config-hex>.json" and the layer as "/<diffid>.tar". The tar also has members literally
// named so (besides the normal ones, which extraction puts at the same place). Docker joins
// manifest paths to the archive root, so a correct reader reads them inside it, never a host
// path, and reports EdgeExpected.
func ManifestAbsolute() []byte {
	p := edge()
	return Tar([]Entry{
		p.layerEntry(),
		{Name: "/" + p.layerName, Body: p.layer},
		p.configEntry(),
		{Name: "/" + p.configName, Body: p.config},
		p.manifest("/"+p.configName, "/"+p.layerName),
	})
}

// NotATar is 4 KiB of pseudo-random bytes: no compression magic, no valid tar header. A
// correct reader fails with a clean error (ErrNotDockerArchive), without panicking.
func NotATar() []byte {
	b := make([]byte, 4096)
	rng := rand.New(rand.NewPCG(42, 42))
	for i := 0; i < len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], rng.Uint64())
	}
	copy(b, "NOTATAR\x00") // rules out any compression magic
	return b
}

// ExportedFS is a plain filesystem tar as `docker export` writes it (directories, files, a
// symlink, /.dockerenv), with no manifest.json and no repositories. A correct reader fails
// with ErrNotDockerArchive.
func ExportedFS() []byte {
	return Tar([]Entry{
		{Name: ".dockerenv", Body: nil, Mode: 0o755},
		{Name: "bin/", Type: tar.TypeDir},
		{Name: "bin/busybox", Body: []byte("\x7fELF busybox stand-in\n"), Mode: 0o755},
		{Name: "bin/sh", Type: tar.TypeLink, Linkname: "bin/busybox"},
		{Name: "dev/", Type: tar.TypeDir},
		{Name: "etc/", Type: tar.TypeDir},
		{Name: "etc/hostname", Body: []byte("")},
		{Name: "etc/passwd", Body: []byte("root:x:0:0:root:/root:/bin/sh\n")},
		{Name: "etc/mtab", Type: tar.TypeSymlink, Linkname: "/proc/mounts"},
		{Name: "proc/", Type: tar.TypeDir},
		{Name: "root/", Type: tar.TypeDir, Mode: 0o700},
		{Name: "tmp/", Type: tar.TypeDir, Mode: 0o1777},
	})
}

// BZhMember is a valid, uncompressed archive whose first member is named "BZh91AY&SY.txt", so
// its first bytes are those of a bzip2 stream ("BZh9" and the block magic "1AY&SY"). A correct
// reader does not take it for bzip2 (a valid tar header checksum wins over magic bytes) and
// reports EdgeExpected.
func BZhMember() []byte {
	p := edge()
	return Tar([]Entry{
		{Name: "BZh91AY&SY.txt", Body: []byte("not a bzip2 stream\n")},
		p.layerEntry(),
		p.configEntry(),
		p.manifest(p.configName, p.layerName),
	})
}

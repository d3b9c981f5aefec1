package archive_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/darc-dev/darc/archive"
	"github.com/darc-dev/darc/internal/archivetest"
)

// hostileParts is a one-image archive's pieces, for building hostile variants by hand.
type hostileParts struct {
	layer     []byte
	diffID    digest.Digest
	config    []byte
	id        digest.Digest
	layerName string
	cfgName   string
}

func newHostileParts() hostileParts {
	layer := archivetest.Layer(21, 2, 100)
	d := digest.FromBytes(layer)
	cfg := archivetest.GenerateConfig([]digest.Digest{d})
	id := digest.FromBytes(cfg)
	return hostileParts{layer: layer, diffID: d, config: cfg, id: id, layerName: d.Encoded() + ".tar", cfgName: id.Encoded() + ".json"}
}

func (p hostileParts) layerEntry() archivetest.Entry {
	return archivetest.Entry{Name: p.layerName, Body: p.layer}
}
func (p hostileParts) configEntry() archivetest.Entry {
	return archivetest.Entry{Name: p.cfgName, Body: p.config}
}

// manifestEntry is manifest.json with one image.
func manifestEntry(config string, layers ...string) archivetest.Entry {
	return archivetest.Entry{Name: "manifest.json", Body: archivetest.ManifestJSON([]archivetest.ManifestItem{
		{Config: config, RepoTags: []string{"example.com/hostile:1"}, Layers: layers}})}
}

// with returns the valid archive's entries with extra ones before manifest.json and the
// manifest naming the given config and layer paths.
func (p hostileParts) with(config string, layers []string, extra ...archivetest.Entry) []byte {
	entries := append([]archivetest.Entry{p.layerEntry(), p.configEntry()}, extra...)
	return archivetest.Tar(append(entries, manifestEntry(config, layers...)))
}

// valid is the untouched archive with extra members.
func (p hostileParts) valid(extra ...archivetest.Entry) []byte {
	return p.with(p.cfgName, []string{p.layerName}, extra...)
}

// configWith is a config (and its digest-named member) listing the given diffIDs.
func configWith(diffIDs ...digest.Digest) (archivetest.Entry, string) {
	cfg := archivetest.GenerateConfig(diffIDs)
	name := digest.FromBytes(cfg).Encoded() + ".json"
	return archivetest.Entry{Name: name, Body: cfg}, name
}

// rawHeader returns a tar header block for name with the given type flag and size field
// contents, with a correct checksum, written by hand so that archive/tar's writer cannot
// refuse it.
func rawHeader(name string, typ byte, sizeField []byte) []byte {
	blk := make([]byte, 512)
	copy(blk[0:100], name)
	copy(blk[100:108], "0000644\x00")
	copy(blk[108:116], "0000000\x00")
	copy(blk[116:124], "0000000\x00")
	copy(blk[124:136], sizeField)
	copy(blk[136:148], "00000000000\x00")
	blk[156] = typ
	copy(blk[257:265], "ustar\x0000")
	setChecksum(blk)
	return blk
}

func setChecksum(blk []byte) {
	copy(blk[148:156], "        ")
	var sum int64
	for _, c := range blk {
		sum += int64(c)
	}
	copy(blk[148:156], fmt.Sprintf("%06o\x00 ", sum))
}

// base256 encodes n (negative too) in a 12-byte base-256 size field.
func base256(n int64) []byte {
	f := make([]byte, 12)
	for i := 11; i >= 4; i-- {
		f[i] = byte(n)
		n >>= 8
	}
	fill := byte(0)
	if n < 0 {
		fill = 0xff
	}
	for i := 1; i < 4; i++ {
		f[i] = fill
	}
	f[0] = 0x80 | fill&0x7f
	return f
}

// appendBlocks appends raw blocks and an end-of-archive marker to the members of a tar made
// by archivetest.Tar (whose last member's data is padded to a block).
func appendBlocks(members []byte, blocks ...[]byte) []byte {
	out := bytes.Clone(members[:len(members)-1024]) // drop the two zero blocks
	for _, b := range blocks {
		out = append(out, b...)
	}
	return append(out, make([]byte, 1024)...)
}

// paxRecord formats one PAX extended-header record.
func paxRecord(k, v string) string {
	rec := " " + k + "=" + v + "\n"
	n := len(rec)
	for {
		s := fmt.Sprint(n) + rec
		if len(s) == n {
			return s
		}
		n = len(s)
	}
}

// legacyArchive is a pre-1.10 archive: repositories naming top, and v1 JSON members.
func legacyArchive(top string, jsons map[string]string, layers ...string) []byte {
	var entries []archivetest.Entry
	for _, id := range layers {
		entries = append(entries, archivetest.Entry{Name: id + "/layer.tar", Body: archivetest.Layer(int64(len(id)), 1, 10)})
	}
	for _, id := range slices.Sorted(maps.Keys(jsons)) {
		entries = append(entries, archivetest.Entry{Name: id + "/json", Body: []byte(jsons[id])})
	}
	entries = append(entries, archivetest.Entry{Name: "repositories", Body: []byte(`{"example.com/legacy":{"1":"` + top + `"}}`)})
	return archivetest.Tar(entries)
}

// ociIndexChain is an OCI-only archive (index.json, no manifest.json) whose index.json points
// at an index that points at an index … depth deep before the image manifest.
func ociIndexChain(depth int) []byte {
	p := newHostileParts()
	manifest := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}`,
		p.id, len(p.config), p.diffID, len(p.layer)))
	entries := []archivetest.Entry{
		{Name: "blobs/sha256/" + p.diffID.Encoded(), Body: p.layer},
		{Name: "blobs/sha256/" + p.id.Encoded(), Body: p.config},
		{Name: "blobs/sha256/" + digest.FromBytes(manifest).Encoded(), Body: manifest},
		{Name: "oci-layout", Body: []byte(`{"imageLayoutVersion":"1.0.0"}`)},
	}
	child, mt := manifest, "application/vnd.oci.image.manifest.v1+json"
	for i := 0; i < depth; i++ {
		idx := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"%s","digest":"%s","size":%d}]}`,
			mt, digest.FromBytes(child), len(child)))
		entries = append(entries, archivetest.Entry{Name: "blobs/sha256/" + digest.FromBytes(idx).Encoded(), Body: idx})
		child, mt = idx, "application/vnd.oci.image.index.v1+json"
	}
	top := fmt.Sprintf(`{"schemaVersion":2,"manifests":[{"mediaType":"%s","digest":"%s","size":%d,"annotations":{"io.containerd.image.name":"example.com/oci:1"}}]}`,
		mt, digest.FromBytes(child), len(child))
	return archivetest.Tar(append(entries, archivetest.Entry{Name: "index.json", Body: []byte(top)}))
}

// hostileCase is one row of TestHostileArchives.
type hostileCase struct {
	name string
	data []byte
	opts []archive.OpenOption
	// wantErr is what open, or failing that verify, must report; nil means the archive is
	// harmless and must open and verify cleanly.
	wantErr error
}

func hostileCases(t *testing.T) []hostileCase {
	t.Helper()
	p := newHostileParts()
	reg := func(name string, body []byte) archivetest.Entry { return archivetest.Entry{Name: name, Body: body} }
	sym := func(name, target string) archivetest.Entry {
		return archivetest.Entry{Name: name, Type: tar.TypeSymlink, Linkname: target}
	}
	hard := func(name, target string) archivetest.Entry {
		return archivetest.Entry{Name: name, Type: tar.TypeLink, Linkname: target}
	}
	var longChain []archivetest.Entry
	const chainLen = 10_000
	for i := 0; i < chainLen; i++ {
		target := fmt.Sprintf("c%d", i+1)
		if i == chainLen-1 {
			target = p.layerName
		}
		longChain = append(longChain, sym(fmt.Sprintf("c%d", i), target))
	}
	moreDiffIDs, moreName := configWith(p.diffID, p.diffID)
	noDiffIDs, noName := configWith()
	paxNUL := reg("PaxHeaders/x", []byte(paxRecord("path", "a\x00b.tar")))
	paxNULData := archivetest.Tar([]archivetest.Entry{paxNUL})
	paxNULBlocks := paxNULData[:len(paxNULData)-1024]
	paxNULBlocks[156] = tar.TypeXHeader
	setChecksum(paxNULBlocks[:512])
	valid := p.valid()
	// A member of zeros: zeros alone would be the end-of-archive blocks, after which nothing
	// is spooled.
	gzipBomb := archivetest.GzipBytes(archivetest.Tar([]archivetest.Entry{{Name: "zeros", Body: make([]byte, 2<<20)}}))

	return []hostileCase{
		// Member names.
		// Docker extracts in a chroot: a name climbing out of the root lands inside it (a
		// warning), and the archive loads.
		{"member name ../evil beside a valid image", p.valid(reg("../evil", []byte("x"))), nil, nil},
		{"member name a/../../evil", p.valid(reg("a/../../evil", []byte("x"))), nil, nil},
		// An absolute member name is relative to the archive root, as tar extraction treats it.
		{"absolute member name, normalized", p.with(p.cfgName, []string{p.layerName}, reg("/abs/"+p.layerName, p.layer)), nil, nil},
		{"layer member stored as /name", archivetest.Tar([]archivetest.Entry{reg("/"+p.layerName, p.layer), p.configEntry(), manifestEntry(p.cfgName, p.layerName)}), nil, nil},
		// archive/tar refuses a NUL in a PAX path record.
		{"NUL in a PAX path record", appendBlocks(p.valid(), paxNULBlocks, rawHeader("a", tar.TypeReg, []byte("00000000000\x00"))), nil, tar.ErrHeader},
		// Manifest paths.
		{"manifest layer path ../x", archivetest.ManifestDotDot(), nil, archive.ErrInsecurePath},
		// Docker joins manifest paths to the root: a leading "/" stays inside it.
		{"manifest paths absolute", archivetest.ManifestAbsolute(), nil, nil},
		{"manifest config path ../x", p.with("../"+p.cfgName, []string{p.layerName}), nil, archive.ErrInsecurePath},
		{"manifest layer path with NUL", p.with(p.cfgName, []string{p.layerName + "\x00.tar"}), nil, archive.ErrInsecurePath},
		{"manifest layer path is the root", p.with(p.cfgName, []string{"./"}), nil, archive.ErrInsecurePath},
		{"manifest layer path is a directory", p.with(p.cfgName, []string{"d"}, archivetest.Entry{Name: "d/", Type: tar.TypeDir}), nil, archive.ErrBadLink},
		{"manifest layer path missing", p.with(p.cfgName, []string{"missing.tar"}), nil, archive.ErrMemberNotFound},
		{"repositories naming v1 id ../x", legacyArchive("../x", map[string]string{"x": `{"id":"x"}`}, "x"), nil, archive.ErrInsecurePath},
		// Links.
		// Link targets resolve inside the root, as docker resolves them: never a host file.
		{"symlink to ../../etc/passwd", archivetest.EscapingSymlink(), nil, archive.ErrBadLink},
		{"symlink to /etc/passwd", p.with(p.cfgName, []string{"l"}, sym("l", "/etc/passwd")), nil, archive.ErrBadLink},
		{"hardlink to ../x, inside the root", p.with(p.cfgName, []string{"h"}, hard("h", "../"+p.layerName)), nil, nil},
		// A hardlink target is a member name, so "/x" is the member "x".
		{"hardlink to /name, normalized", p.with(p.cfgName, []string{"h"}, hard("h", "/"+p.layerName)), nil, nil},
		{"symlink loop", archivetest.SymlinkCycle(), nil, archive.ErrBadLink},
		{"hardlink loop", p.with(p.cfgName, []string{"a"}, hard("a", "b"), hard("b", "a")), nil, archive.ErrBadLink},
		{"symlink to itself", p.with(p.cfgName, []string{"a"}, sym("a", "a")), nil, archive.ErrBadLink},
		{"symlink to a directory", p.with(p.cfgName, []string{"l"}, archivetest.Entry{Name: "d/", Type: tar.TypeDir}, sym("l", "d")), nil, archive.ErrBadLink},
		{"dangling symlink", p.with(p.cfgName, []string{"l"}, sym("l", "nowhere")), nil, archive.ErrBadLink},
		// Docker's walk gives up after 255 path components, LongChain's links taking 3 each.
		{"symlink chain of 84 (the bound)", archivetest.LongChain(84), nil, nil},
		{"symlink chain of 85", archivetest.LongChain(85), nil, archive.ErrBadLink},
		{"symlink chain of 10,000", p.with(p.cfgName, []string{"c0"}, longChain...), nil, archive.ErrBadLink},
		// A hard link is made when extracted: to a target not yet there, extraction fails.
		{"symlinks and hardlinks mixed, 16 hops, hardlinks first", p.with(p.cfgName, []string{"m0"}, mixedChain(p.layerName, 16)...), nil, archive.ErrBadLink},
		{"symlinks and hardlinks mixed, 16 hops, targets first", p.with(p.cfgName, []string{"m0"}, reversed(mixedChain(p.layerName, 16))...), nil, nil},
		// Sizes.
		{"member header claiming 2^62 bytes", appendBlocks(valid, rawHeader("big", tar.TypeReg, base256(1<<62))), nil, io.ErrUnexpectedEOF},
		{"member header claiming 2^63-1 bytes", appendBlocks(valid, rawHeader("big", tar.TypeReg, base256(1<<63-1))), nil, io.ErrUnexpectedEOF},
		{"member header claiming 8 GiB (octal)", appendBlocks(valid, rawHeader("big", tar.TypeReg, []byte("77777777777\x00"))), nil, io.ErrUnexpectedEOF},
		{"member header with a negative size", appendBlocks(valid, rawHeader("neg", tar.TypeReg, base256(-1))), nil, tar.ErrHeader},
		{"first header claiming 2^62 bytes", appendBlocks(make([]byte, 1024), rawHeader("big", tar.TypeReg, base256(1<<62))), nil, io.ErrUnexpectedEOF},
		// Metadata that contradicts itself.
		{"config lists more layers than manifest.json", p.with(moreName, []string{p.layerName}, moreDiffIDs), nil, archive.ErrInvalidManifest},
		{"manifest.json lists more layers than the config", p.with(noName, []string{p.layerName}, noDiffIDs), nil, archive.ErrInvalidManifest},
		{"manifest.json lists layers, the config none", p.with(noName, []string{p.layerName, p.layerName}, noDiffIDs), nil, archive.ErrInvalidManifest},
		{"same member as config and layer", sameConfigAndLayer(), nil, archive.ErrInvalidManifest},
		{"config is not JSON", p.with(digest.FromString("nope").Encoded()+".json", []string{p.layerName}, reg(digest.FromString("nope").Encoded()+".json", []byte("nope"))), nil, archive.ErrInvalidManifest},
		// The image ID is the content digest, as docker load gives it; verify only warns.
		{"config content does not match its name", p.with("0"+p.cfgName[1:], []string{p.layerName}, reg("0"+p.cfgName[1:], p.config)), nil, nil},
		{"manifest.json not JSON", archivetest.Tar([]archivetest.Entry{p.layerEntry(), p.configEntry(), reg("manifest.json", []byte("[{"))}), nil, archive.ErrInvalidManifest},
		{"manifest.json with trailing data, ignored as docker load does", archivetest.Tar([]archivetest.Entry{p.layerEntry(), p.configEntry(), reg("manifest.json", []byte("[]]"))}), nil, archive.ErrNotDockerArchive},
		{"manifest.json lists no image", archivetest.Tar([]archivetest.Entry{reg("manifest.json", []byte("[]"))}), nil, archive.ErrNotDockerArchive},
		{"legacy parent chain loop", legacyArchive("a", map[string]string{"a": `{"id":"a","parent":"b"}`, "b": `{"id":"b","parent":"a"}`}, "a", "b"), nil, archive.ErrInvalidManifest},
		{"OCI index nested 3 deep", ociIndexChain(3), nil, nil},
		{"OCI index nested 50 deep", ociIndexChain(50), nil, archive.ErrNotDockerArchive},
		// Work amplification: many references to one thing must cost about one.
		{"OCI indexes listing the next 20 times, 3 deep (160,000 paths)", ociFanOut(20, 3), nil, nil},
		{"legacy: 100 images on a 100-deep v1 chain", legacyFan(100, 100), nil, nil},
		{"one image with 20,000 distinct tags", manyTags(p, 20_000), nil, nil},
		{"5,000 images sharing one 1 MiB config that its name does not digest", sharedBigConfig(p, 5_000), nil, nil},
		// Limits, set low.
		{"manifest.json over the limit", valid, []archive.OpenOption{archive.WithMaxManifestSize(50)}, archive.ErrTooLarge},
		{"config over the limit", valid, []archive.OpenOption{archive.WithMaxConfigSize(50)}, archive.ErrTooLarge},
		{"more members than the limit", valid, []archive.OpenOption{archive.WithMaxMembers(2)}, archive.ErrTooLarge},
		{"gzip bomb past the spool limit", gzipBomb, []archive.OpenOption{archive.WithMaxSpoolSize(1 << 20)}, archive.ErrTooLarge},
		// Not archives.
		{"empty file", nil, nil, archive.ErrNotDockerArchive},
		{"only end-of-archive blocks", make([]byte, 1024), nil, archive.ErrNotDockerArchive},
		{"random bytes", archivetest.NotATar(), nil, archive.ErrNotDockerArchive},
		{"container export", archivetest.ExportedFS(), nil, archive.ErrNotDockerArchive},
	}
}

// mixedChain links m0 → m1 → … → target, alternating symlinks and hardlinks, n links in all.
func mixedChain(target string, n int) []archivetest.Entry {
	var out []archivetest.Entry
	for i := 0; i < n; i++ {
		next := fmt.Sprintf("m%d", i+1)
		if i == n-1 {
			next = target
		}
		typ := byte(tar.TypeSymlink)
		if i%2 == 1 {
			typ = tar.TypeLink
		}
		out = append(out, archivetest.Entry{Name: fmt.Sprintf("m%d", i), Type: typ, Linkname: next})
	}
	return out
}

// reversed returns entries in reverse order.
func reversed(entries []archivetest.Entry) []archivetest.Entry {
	out := slices.Clone(entries)
	slices.Reverse(out)
	return out
}

// sameConfigAndLayer is an archive whose manifest.json names one member as both the config and
// the only layer; the config lists one diffID so that the layer counts agree.
func sameConfigAndLayer() []byte {
	cfg, name := configWith(digest.FromString("layer"))
	return archivetest.Tar([]archivetest.Entry{cfg, manifestEntry(name, name)})
}

// TestHostileArchives opens each hostile archive and checks it fails with its expected error
// (at open, or else from verify) or, for the harmless ones, opens and verifies cleanly; the
// reader writes nothing outside its spool directory, which is empty after Close.
func TestHostileArchives(t *testing.T) {
	env := newDamageEnv(t)
	cases := hostileCases(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.wantErr
			err := openAndVerify(t, env, tc.data, tc.opts...)
			if want == nil {
				if err != nil {
					t.Fatalf("got %v, want a clean open and verify", err)
				}
				return
			}
			if !errors.Is(err, want) {
				t.Fatalf("got %v, want %v", err, want)
			}
		})
	}
	t.Logf("TOTAL hostile: %d cases", len(cases))
}

// openAndVerify opens data from a file next to nothing else and verifies it; it returns the
// open error or the first verify error. It checks the spool directory and TMPDIR are empty
// after Close and that the archive's directory holds only the archive.
func openAndVerify(t *testing.T, env damageEnv, data []byte, opts ...archive.OpenOption) error {
	t.Helper()
	dir, err := os.MkdirTemp(env.files, "case")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "hostile.tar")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	defer func() {
		env.checkEmpty(t, "after Close")
		if left, _ := os.ReadDir(dir); len(left) != 1 {
			t.Errorf("the archive's directory holds %d entries", len(left))
		}
	}()
	a, err := archive.Open(file, append([]archive.OpenOption{archive.WithTempDir(env.spool)}, opts...)...)
	if err != nil {
		if classify(err) == "" {
			t.Errorf("unclassified error: %v", err)
		}
		return err
	}
	defer func() {
		if err := a.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	var first error
	for _, p := range a.Verify(context.Background(), 2) {
		if p.Warning {
			continue
		}
		if classify(p.Err) == "" {
			t.Errorf("unclassified error: %v", p)
		}
		if first == nil {
			first = p.Err
		}
	}
	if first == nil && len(a.Images()) == 0 {
		return errors.New("opened with no image")
	}
	return first
}

// manifestJSONLayers is manifest.json text with one image of n layers named name.
func manifestJSONLayers(config, name string, n int) []byte {
	var b strings.Builder
	b.WriteString(`[{"Config":` + jsonString(config) + `,"RepoTags":["example.com/x:1"],"Layers":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(jsonString(name))
	}
	b.WriteString("]}]")
	return []byte(b.String())
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// ociFanOut is an OCI-only archive whose index.json lists, k times, an index that lists k
// times an index … (levels deep) that lists k times the one image manifest: k^(levels+1)
// paths to one manifest, in an archive of a few kilobytes.
func ociFanOut(k, levels int) []byte {
	p := newHostileParts()
	manifest := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}`,
		p.id, len(p.config), p.diffID, len(p.layer)))
	entries := []archivetest.Entry{
		{Name: "blobs/sha256/" + p.diffID.Encoded(), Body: p.layer},
		{Name: "blobs/sha256/" + p.id.Encoded(), Body: p.config},
		{Name: "blobs/sha256/" + digest.FromBytes(manifest).Encoded(), Body: manifest},
		{Name: "oci-layout", Body: []byte(`{"imageLayoutVersion":"1.0.0"}`)},
	}
	list := func(child []byte, mt string) []byte {
		var descs []string
		for i := 0; i < k; i++ {
			descs = append(descs, fmt.Sprintf(`{"mediaType":"%s","digest":"%s","size":%d}`, mt, digest.FromBytes(child), len(child)))
		}
		return []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` + strings.Join(descs, ",") + `]}`)
	}
	child, mt := manifest, "application/vnd.oci.image.manifest.v1+json"
	for i := 0; i < levels; i++ {
		idx := list(child, mt)
		entries = append(entries, archivetest.Entry{Name: "blobs/sha256/" + digest.FromBytes(idx).Encoded(), Body: idx})
		child, mt = idx, "application/vnd.oci.image.index.v1+json"
	}
	return archivetest.Tar(append(entries, archivetest.Entry{Name: "index.json", Body: list(child, mt)}))
}

// legacyFan is a pre-1.10 archive with a parent chain of depth v1 images and, on top of its
// tip, leaves untagged images: leaves × depth layers to walk, in 2×(depth+leaves) members.
func legacyFan(depth, leaves int) []byte {
	layer := archivetest.Layer(31, 0, 0)
	var entries []archivetest.Entry
	id := func(kind string, i int) string { return fmt.Sprintf("%s%063d", kind, i) }
	parent := ""
	for i := 0; i < depth; i++ {
		entries = append(entries,
			archivetest.Entry{Name: id("a", i) + "/layer.tar", Body: layer},
			archivetest.Entry{Name: id("a", i) + "/json", Body: []byte(fmt.Sprintf(`{"id":%q,"parent":%q}`, id("a", i), parent))})
		parent = id("a", i)
	}
	for i := 0; i < leaves; i++ {
		entries = append(entries,
			archivetest.Entry{Name: id("b", i) + "/layer.tar", Body: layer},
			archivetest.Entry{Name: id("b", i) + "/json", Body: []byte(fmt.Sprintf(`{"id":%q,"parent":%q}`, id("b", i), parent))})
	}
	return archivetest.Tar(append(entries, archivetest.Entry{Name: "repositories", Body: []byte("{}")}))
}

// manyTags is the valid archive with n distinct tags on its image.
func manyTags(p hostileParts, n int) []byte {
	tags := make([]string, n)
	for i := range tags {
		tags[i] = fmt.Sprintf("example.com/t:%d", i)
	}
	m := archivetest.ManifestJSON([]archivetest.ManifestItem{{Config: p.cfgName, RepoTags: tags, Layers: []string{p.layerName}}})
	return archivetest.Tar([]archivetest.Entry{p.layerEntry(), p.configEntry(), {Name: "manifest.json", Body: m}})
}

// sharedBigConfig is an archive of n manifest.json entries naming one config of 1 MiB under a
// name that does not state its digest (so its ID must be computed from its content) and one
// layer.
func sharedBigConfig(p hostileParts, n int) []byte {
	var cfg map[string]any
	if err := json.Unmarshal(p.config, &cfg); err != nil {
		panic(err)
	}
	cfg["padding"] = strings.Repeat("x", 1<<20)
	data, err := json.Marshal(cfg)
	if err != nil {
		panic(err)
	}
	items := make([]archivetest.ManifestItem, n)
	for i := range items {
		items[i] = archivetest.ManifestItem{Config: "config.json", RepoTags: []string{fmt.Sprintf("example.com/shared:%d", i)}, Layers: []string{p.layerName}}
	}
	return archivetest.Tar([]archivetest.Entry{p.layerEntry(), {Name: "config.json", Body: data}, {Name: "manifest.json", Body: archivetest.ManifestJSON(items)}})
}

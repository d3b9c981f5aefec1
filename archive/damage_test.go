package archive_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/darc-dev/darc/archive"
	"github.com/darc-dev/darc/internal/archivetest"
	"github.com/darc-dev/darc/internal/tarfile"
)

// The tests in this file damage valid archives (fixtures written by real tools and generated
// ones in the layouts no tool here writes) in every way a disk, a network or a person can:
// cut at every 512-byte boundary and at odd offsets, single bytes changed in tar headers (with
// and without a checksum that still matches), in JSON metadata and in layer data. Each case is
// opened, listed and verified (which reads and checks every config and layer). Every case must
// end in one of:
//
//   - a clean error from open or verify that wraps a known sentinel (classify);
//   - a verified archive listing exactly the original images ("identical");
//   - for a change inside unprotected content (manifest.json, repositories, index.json, legacy
//     v1 JSON, anything in a pre-1.10 archive: no digest covers them), a verified archive that
//     lists what the changed content now says ("unprotected content read as written");
//   - for a change inside a config that still parses, a verified archive listing the image
//     under the changed config's digest, with a warning that the config's name states
//     another ("config read as written, its name warned about"): the image ID is the
//     content's digest, as docker load gives it.
//
// Nothing may panic or hang, and the spool directory (and TMPDIR) must be empty after Close.
// The tests log a tally of outcomes, which the README's robustness table quotes.

// caseTimeout bounds one damaged archive: all of them are small, so only a hang gets close.
const caseTimeout = 2 * time.Minute

// damageInput is one valid archive to damage.
type damageInput struct {
	name string
	data []byte
	// unprotected: no digest covers any of it (a pre-1.10 archive: the config is rebuilt
	// from the v1 JSON and the diffIDs are computed from the layers), so any change that
	// still makes a valid archive reads back as a different, valid image.
	unprotected bool
}

// robustImages are small images sharing a layer, one of them untagged.
func robustImages() []archivetest.Image {
	base := archivetest.Layer(11, 2, 300)
	return []archivetest.Image{
		{Tags: []string{"example.com/r/one:1", "example.com/r/one:latest"}, Layers: [][]byte{base, archivetest.Layer(12, 1, 200)}},
		{Tags: []string{"busybox:latest"}, Layers: [][]byte{base}},
		{Layers: [][]byte{base, archivetest.Layer(13, 1, 100)}},
	}
}

// damageInputs returns every fixture (compressed ones included) and generated archives in the
// layouts and compressions the fixtures do not cover.
func damageInputs(t *testing.T) []damageInput {
	t.Helper()
	var out []damageInput
	for _, f := range loadExpected(t) {
		data, err := os.ReadFile(filepath.Join(fixtureDir, f.File))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, damageInput{name: f.File, data: data})
	}
	gen := []struct {
		name string
		opts archivetest.Options
	}{
		{"gen-docker25", archivetest.Options{Layout: archivetest.Docker25}},
		{"gen-legacy", archivetest.Options{Layout: archivetest.Legacy}},
		{"gen-buildkit", archivetest.Options{Layout: archivetest.BuildKit}},
		{"gen-crane-zstd", archivetest.Options{Layout: archivetest.Crane, ZstdLayers: true}},
		{"gen-docker24-gzip-members", archivetest.Options{Layout: archivetest.Docker24, GzipMembers: true}},
		{"gen-containers-image-manifest-first", archivetest.Options{Layout: archivetest.ContainersImage, ManifestFirst: true, DotSlash: true}},
		{"gen-containers-image.tar.gz", archivetest.Options{Layout: archivetest.ContainersImage, Compression: "gzip"}},
		{"gen-docker25.tar.zst", archivetest.Options{Layout: archivetest.Docker25, Compression: "zstd"}},
		{"gen-legacy.tar.xz", archivetest.Options{Layout: archivetest.Legacy, Compression: "xz"}},
	}
	for _, g := range gen {
		data, err := archivetest.BuildBytes(robustImages(), g.opts)
		if err != nil {
			t.Fatalf("%s: %v", g.name, err)
		}
		out = append(out, damageInput{g.name, data, g.opts.Layout == archivetest.Legacy})
	}
	return out
}

// errorClasses are the errors a damaged archive may produce, most specific first.
var errorClasses = []struct {
	name string
	err  error
}{
	{"ErrDigestMismatch", archive.ErrDigestMismatch},
	{"ErrSizeMismatch", archive.ErrSizeMismatch},
	{"ErrTooLarge", archive.ErrTooLarge},
	{"ErrInsecurePath", archive.ErrInsecurePath},
	{"ErrBadLink", archive.ErrBadLink},
	{"ErrNotExtractable", archive.ErrNotExtractable},
	{"ErrMemberNotFound", archive.ErrMemberNotFound},
	{"ErrInvalidManifest", archive.ErrInvalidManifest},
	{"ErrInvalidLayer", archive.ErrInvalidLayer},
	{"ErrNotDockerArchive", archive.ErrNotDockerArchive},
	{"ErrImageNotFound", archive.ErrImageNotFound},
	{"ErrAmbiguous", archive.ErrAmbiguous},
	{"io.ErrUnexpectedEOF", io.ErrUnexpectedEOF},
	{"tar.ErrHeader", tar.ErrHeader},
}

// classify names the known error err wraps, or returns "" for an unclassified one.
func classify(err error) string {
	for _, c := range errorClasses {
		if errors.Is(err, c.err) {
			return c.name
		}
	}
	return ""
}

// tally counts cases by outcome.
type tally struct {
	cases    int
	outcomes map[string]int
}

func (tl *tally) add(outcome string) {
	if tl.outcomes == nil {
		tl.outcomes = map[string]int{}
	}
	tl.cases++
	tl.outcomes[outcome]++
}

func (tl *tally) merge(o tally) {
	for k, n := range o.outcomes {
		tl.outcomes[k] += n
	}
	tl.cases += o.cases
}

// String lists outcomes sorted by name.
func (tl tally) String() string {
	keys := make([]string, 0, len(tl.outcomes))
	for k := range tl.outcomes {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "%d cases:", tl.cases)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s %d;", k, tl.outcomes[k])
	}
	return strings.TrimSuffix(b.String(), ";")
}

// damageEnv is where the cases of one test put their files.
type damageEnv struct {
	files string // where archives are written
	file  string // the damaged archive, rewritten for every case
	spool string // WithTempDir
	tmp   string // TMPDIR, which the reader must not touch
}

// newDamageEnv makes the directories and points TMPDIR at an empty one (so t.TempDir must not
// be called afterwards: it would create directories there).
func newDamageEnv(t *testing.T) damageEnv {
	t.Helper()
	files := t.TempDir()
	env := damageEnv{files: files, file: filepath.Join(files, "damaged"), spool: t.TempDir(), tmp: t.TempDir()}
	t.Setenv("TMPDIR", env.tmp)
	return env
}

// try opens, lists and verifies data and returns the outcome: "open: <class>",
// "verify: <class>", "identical" (verifies, lists like want) or "differs" (verifies, lists
// something else). It fails the test for an unclassified error, a Close error, or anything
// left in the spool directory or TMPDIR.
func (env damageEnv) try(t *testing.T, label string, data []byte, want []expectedImage) string {
	t.Helper()
	watchdog := time.AfterFunc(caseTimeout, func() { panic(fmt.Sprintf("%s: still running after %v", label, caseTimeout)) })
	defer watchdog.Stop()
	defer env.checkEmpty(t, label)
	if err := os.WriteFile(env.file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := archive.Open(env.file, archive.WithTempDir(env.spool))
	if err != nil {
		c := classify(err)
		if c == "" {
			t.Errorf("%s: open: unclassified error: %v", label, err)
		}
		return "open: " + c
	}
	defer func() {
		if err := a.Close(); err != nil {
			t.Errorf("%s: Close: %v", label, err)
		}
	}()
	first, renamed := "", false
	for _, p := range a.Verify(context.Background(), 2) {
		if p.Warning {
			// A config whose content no longer matches the digest its name states: the
			// image ID is the content's, as docker load gives it, and verify says so.
			renamed = renamed || strings.Contains(p.Err.Error(), "its name states")
			continue
		}
		c := classify(p.Err)
		if c == "" {
			t.Errorf("%s: verify: unclassified error: %v", label, p)
		}
		if first == "" {
			first = c
		}
	}
	if first != "" {
		return "verify: " + first
	}
	if got := listing(a); !reflect.DeepEqual(got, want) {
		if renamed {
			return "config read as written, its name warned about"
		}
		return "differs"
	}
	return "identical"
}

func (env damageEnv) checkEmpty(t *testing.T, label string) {
	t.Helper()
	for _, dir := range []string{env.spool, env.tmp} {
		if left, _ := os.ReadDir(dir); len(left) != 0 {
			t.Errorf("%s: %s holds %d entries after Close", label, dir, len(left))
		}
	}
}

// baseline opens an undamaged input and returns its listing.
func baseline(t *testing.T, env damageEnv, in damageInput) []expectedImage {
	t.Helper()
	if err := os.WriteFile(env.file, in.data, 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := archive.Open(env.file, archive.WithTempDir(env.spool))
	if err != nil {
		t.Fatalf("%s: the undamaged archive does not open: %v", in.name, err)
	}
	defer a.Close()
	for _, p := range a.Verify(context.Background(), 2) {
		if !p.Warning {
			t.Fatalf("%s: the undamaged archive does not verify: %v", in.name, p)
		}
	}
	return listing(a)
}

func isCompressed(data []byte) bool { return tarfile.DetectCompression(data) != tarfile.Uncompressed }

// TestTruncation cuts every input at every 512-byte boundary, one byte after and one byte
// before it and, for compressed inputs (where the spool file is involved), at every 8th byte
// and each of the last 64. A cut that opens and verifies must list exactly the original
// images: it can only have lost what no image needs (the end-of-archive blocks, a trailing
// repositories file next to manifest.json).
func TestTruncation(t *testing.T) {
	env := newDamageEnv(t)
	var total tally
	for _, in := range damageInputs(t) {
		want := baseline(t, env, in)
		cuts := map[int]bool{}
		for c := 0; c < len(in.data); c += 512 {
			cuts[c], cuts[c+1], cuts[c+511] = true, true, true
		}
		if isCompressed(in.data) {
			for c := 0; c < len(in.data); c += 8 {
				cuts[c] = true
			}
			for c := max(0, len(in.data)-64); c < len(in.data); c++ {
				cuts[c] = true
			}
		}
		var tl tally
		for c := 0; c < len(in.data); c++ {
			if !cuts[c] {
				continue
			}
			label := fmt.Sprintf("%s cut at %d of %d", in.name, c, len(in.data))
			switch out := env.try(t, label, in.data[:c], want); out {
			case "differs":
				t.Errorf("%s: verifies but lists other images than the whole archive", label)
			default:
				tl.add(out)
			}
		}
		t.Logf("%s: %v", in.name, tl)
		if total.outcomes == nil {
			total.outcomes = map[string]int{}
		}
		total.merge(tl)
	}
	t.Logf("TOTAL truncation: %v", total)
}

// damage is one change to an archive.
type damage struct {
	what   string // "header", "header+checksum", "json", "layer", "compressed"
	offset int
	// metadata: the change is inside a member that no digest protects (manifest.json,
	// repositories, index.json, legacy v1 JSON) or its header, so reading the changed
	// content as written is correct.
	metadata bool
}

// isMetadata reports whether a member is unprotected metadata.
func isMetadata(name string) bool {
	switch name {
	case "manifest.json", "repositories", "index.json", "oci-layout":
		return true
	}
	return path.Base(name) == "json" || path.Base(name) == "VERSION"
}

// damages lists the changes made to an uncompressed archive: for each member, bytes in its
// header block (name, size, checksum, type flag, link name, magic, prefix) with the checksum
// left stale, the name, size, type flag and link name again with the checksum recomputed (a
// crafted header rather than a damaged one), and bytes of its data: ten spread over a JSON
// member, the first, middle and last of any other.
func damages(t *testing.T, data []byte) []damage {
	t.Helper()
	ix, err := tarfile.BuildIndex(bytes.NewReader(data), int64(len(data)), 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []damage
	for _, m := range ix.Members() {
		meta := isMetadata(m.Name)
		hdr := int(m.Offset) - 512
		if int(m.HeaderOffset)+512 < hdr {
			// Inside the data of a PAX or GNU long-name block.
			out = append(out, damage{"header", int(m.HeaderOffset) + 512 + 10, meta})
		}
		for _, o := range []int{0, 1, 99, 124, 131, 134, 148, 153, 156, 157, 257, 345} {
			out = append(out, damage{"header", hdr + o, meta})
		}
		for _, o := range []int{0, 5, 131, 134, 156, 157} {
			out = append(out, damage{"header+checksum", hdr + o, meta})
		}
		if m.Type != tar.TypeReg || m.Size == 0 {
			continue
		}
		start, size := int(m.Offset), int(m.Size)
		if c := data[start]; c == '{' || c == '[' {
			for k := 0; k < 10; k++ {
				out = append(out, damage{"json", start + k*(size-1)/9, meta})
			}
			continue
		}
		for _, o := range []int{0, size / 2, size - 1} {
			out = append(out, damage{"layer", start + o, meta})
		}
	}
	return out
}

// apply returns a copy of data with d applied: the byte's lowest bit flipped (a digit stays
// a digit, a letter a letter, so names and sizes change rather than just break), and for
// "header+checksum" the header's checksum recomputed.
func (d damage) apply(data []byte) []byte {
	out := bytes.Clone(data)
	out[d.offset] ^= 0x01
	if d.what == "header+checksum" {
		blk := out[d.offset/512*512:][:512]
		copy(blk[148:156], "        ")
		var sum int64
		for _, c := range blk {
			sum += int64(c)
		}
		copy(blk[148:156], fmt.Sprintf("%06o\x00 ", sum))
	}
	return out
}

// TestCorruption changes single bytes of every input (see damages; compressed inputs at 48
// evenly spread offsets) and checks each case ends in a clean error or a correct result.
func TestCorruption(t *testing.T) {
	env := newDamageEnv(t)
	total := tally{outcomes: map[string]int{}}
	byKind := map[string]*tally{}
	for _, in := range damageInputs(t) {
		want := baseline(t, env, in)
		var ds []damage
		if isCompressed(in.data) {
			for k := 0; k < 48; k++ {
				ds = append(ds, damage{what: "compressed", offset: k * (len(in.data) - 1) / 47})
			}
		} else {
			ds = damages(t, in.data)
		}
		var tl tally
		for _, d := range ds {
			label := fmt.Sprintf("%s: %s byte %d changed", in.name, d.what, d.offset)
			out := env.try(t, label, d.apply(in.data), want)
			if out == "differs" {
				if !d.metadata && !in.unprotected {
					t.Errorf("%s: verifies but lists other images than the original", label)
					continue
				}
				out = "unprotected content read as written"
			}
			tl.add(out)
			if byKind[d.what] == nil {
				byKind[d.what] = &tally{outcomes: map[string]int{}}
			}
			byKind[d.what].add(out)
		}
		t.Logf("%s: %v", in.name, tl)
		total.merge(tl)
	}
	for _, k := range []string{"header", "header+checksum", "json", "layer", "compressed"} {
		if byKind[k] != nil {
			t.Logf("TOTAL corruption %s: %v", k, *byKind[k])
		}
	}
	t.Logf("TOTAL corruption: %v", total)
}

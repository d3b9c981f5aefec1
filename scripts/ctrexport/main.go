// Command ctrexport writes darc's multi-platform fixtures with containerd's own exporter,
// github.com/containerd/containerd/v2/core/images/archive.Export (the code behind `ctr export`,
// `nerdctl save` and Docker 25+ `docker save`), from content it generates itself into a local
// content store: no daemon, no registry.
//
//	go run . OUTDIR
//
// writes OUTDIR/*.tar and OUTDIR/expected.json. The expectations come from the generated
// content and the export options; after each export the tar's member list and manifest.json are
// read back with archive/tar and must agree with them, or the program fails.
//
// Everything is deterministic (fixed bytes, fixed timestamps) except one thing the exporter
// does: it builds manifest.json from a Go map, so with two images its order varies from run to
// run. For those fixtures the export is repeated until manifest.json lists the images in the
// order they were given; the bytes are always the exporter's own.
package main

import (
	"archive/tar"
	"bytes"
	"context"
	_ "crypto/sha256" // go-digest needs it registered
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/images/archive"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/containerd/log"
	"github.com/containerd/platforms"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

const maxExportAttempts = 200

// entry is one WithManifest call: an index or a bare manifest, under zero or more names.
type entry struct {
	index    *index
	manifest *image
	names    []string
}

func (e entry) desc() ocispec.Descriptor {
	if e.index != nil {
		return e.index.blob.desc
	}
	return e.manifest.manifest.desc
}

// fixture is one archive: what the content store holds and how Export is called.
type fixture struct {
	file    string
	about   string
	store   []*blob
	entries []entry

	platform         *ocispec.Platform // WithPlatform(platforms.OnlyStrict(p)); nil: not set
	allPlatforms     bool              // WithAllPlatforms
	skipMissing      bool              // WithSkipMissing(store)
	skipManifestJSON bool              // WithSkipDockerManifest
	skipNonDist      bool              // WithSkipNonDistributableBlobs
}

func (f *fixture) options(cs content.Store) []archive.ExportOpt {
	var opts []archive.ExportOpt
	for _, e := range f.entries {
		opts = append(opts, archive.WithManifest(e.desc(), e.names...))
	}
	if f.platform != nil {
		opts = append(opts, archive.WithPlatform(platforms.OnlyStrict(*f.platform)))
	}
	if f.allPlatforms {
		opts = append(opts, archive.WithAllPlatforms())
	}
	if f.skipMissing {
		opts = append(opts, archive.WithSkipMissing(cs))
	}
	if f.skipManifestJSON {
		opts = append(opts, archive.WithSkipDockerManifest())
	}
	if f.skipNonDist {
		opts = append(opts, archive.WithSkipNonDistributableBlobs())
	}
	return opts
}

// optionStrings names the Export options, for expected.json and the README.
func (f *fixture) optionStrings() []string {
	var s []string
	for _, e := range f.entries {
		what := "manifest"
		if e.index != nil {
			what = "index"
		}
		args := []string{what + " " + e.desc().Digest.String()}
		for _, n := range e.names {
			args = append(args, fmt.Sprintf("%q", n))
		}
		s = append(s, "WithManifest("+strings.Join(args, ", ")+")")
	}
	if f.platform != nil {
		s = append(s, fmt.Sprintf("WithPlatform(platforms.OnlyStrict(%s))", platformString(*f.platform, "/")))
	}
	if f.allPlatforms {
		s = append(s, "WithAllPlatforms()")
	}
	if f.skipMissing {
		s = append(s, "WithSkipMissing(store)")
	}
	if f.skipManifestJSON {
		s = append(s, "WithSkipDockerManifest()")
	}
	if f.skipNonDist {
		s = append(s, "WithSkipNonDistributableBlobs()")
	}
	return s
}

func blobsOf(ims ...*image) []*blob {
	var bs []*blob
	for _, im := range ims {
		bs = append(bs, im.blobs()...)
	}
	return bs
}

func manifestsOf(ims ...*image) []*blob {
	var bs []*blob
	for _, im := range ims {
		bs = append(bs, im.manifest)
	}
	return bs
}

func fixtures(w *world) []*fixture {
	amd, arm, armv, att := w.multi.children[0], w.multi.children[1], w.multi.children[2], w.multi.children[3]
	multiTag := "example.com/darc/multi:1"
	all := append([]*blob{w.multi.blob}, blobsOf(w.multi.children...)...)
	return []*fixture{
		{
			file:         "all-platforms.tar",
			about:        "the OCI index with every platform and the attestation complete; manifest.json names linux/amd64",
			store:        all,
			entries:      []entry{{index: w.multi, names: []string{multiTag}}},
			platform:     &amd64,
			allPlatforms: true,
		},
		{
			file:         "one-platform.tar",
			about:        "the same index, only linux/amd64 in the store (a one-platform pull); the other children absent",
			store:        append([]*blob{w.multi.blob}, amd.blobs()...),
			entries:      []entry{{index: w.multi, names: []string{multiTag}}},
			platform:     &amd64,
			allPlatforms: true,
			skipMissing:  true,
		},
		{
			file:         "manifests-only.tar",
			about:        "every child manifest in the store, but only linux/amd64's config and layers",
			store:        append(append([]*blob{w.multi.blob}, amd.blobs()...), manifestsOf(arm, armv, att)...),
			entries:      []entry{{index: w.multi, names: []string{multiTag}}},
			platform:     &amd64,
			allPlatforms: true,
			skipMissing:  true,
		},
		{
			file:             "oci-only-arm64.tar",
			about:            "no manifest.json; linux/arm64/v8 complete, linux/amd64 manifest-only, linux/arm/v7 and the attestation absent",
			store:            append(append([]*blob{w.multi.blob}, arm.blobs()...), amd.manifest),
			entries:          []entry{{index: w.multi, names: []string{multiTag}}},
			platform:         &arm64,
			allPlatforms:     true,
			skipMissing:      true,
			skipManifestJSON: true,
		},
		{
			file:         "manifest-list.tar",
			about:        "a Docker schema2 manifest list with Docker schema2 children, every platform complete",
			store:        append([]*blob{w.list.blob}, blobsOf(w.list.children...)...),
			entries:      []entry{{index: w.list, names: []string{"example.com/darc/list:1"}}},
			platform:     &amd64,
			allPlatforms: true,
		},
		{
			file:  "two-names.tar",
			about: "the index under two tags, a second (one-platform) image, and the index once more by digest only",
			store: append(all, w.single.blobs()...),
			entries: []entry{
				{index: w.multi, names: []string{multiTag, "example.com/darc/multi:latest"}},
				{manifest: w.single, names: []string{"example.com/darc/single:1"}},
				{index: w.multi},
			},
			platform:     &amd64,
			allPlatforms: true,
		},
		{
			file:        "foreign-layer.tar",
			about:       "a one-platform Docker schema2 image whose second layer is non-distributable (foreign, with urls), skipped by the exporter",
			store:       w.foreign.blobs(),
			entries:     []entry{{manifest: w.foreign, names: []string{"example.com/darc/foreign:1"}}},
			skipNonDist: true,
		},
	}
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: ctrexport OUTDIR")
		os.Exit(2)
	}
	// The local store warns on every blob that the file system lacks fsverity.
	if err := log.SetLevel("error"); err != nil {
		panic(err)
	}
	if err := run(context.Background(), os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "ctrexport:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out string) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	scratch, err := os.MkdirTemp("", "ctrexport-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)

	w := makeWorld()
	exp := expectedFile{
		Generator: "scripts/ctrexport: github.com/containerd/containerd/v2@v2.4.2 core/images/archive.Export, content store plugins/content/local",
		States: map[string]string{
			"complete":      "manifest, config and every layer are in the archive (a non-distributable layer never is; it counts as present)",
			"manifest-only": "the manifest is in the archive, its config or some layer is not",
			"absent":        "the manifest is not in the archive",
		},
	}
	for _, f := range fixtures(w) {
		fe, data, err := exportFixture(ctx, filepath.Join(scratch, f.file), f)
		if err != nil {
			return fmt.Errorf("%s: %w", f.file, err)
		}
		if err := writeFile(filepath.Join(out, f.file), data); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "wrote %s (%d bytes)\n", f.file, len(data))
		exp.Fixtures = append(exp.Fixtures, fe)
	}
	p, err := json.MarshalIndent(exp, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(filepath.Join(out, "expected.json"), append(p, '\n'))
}

func writeFile(name string, data []byte) error {
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, name)
}

// exportFixture fills a fresh content store, exports, and checks the tar against the prediction.
func exportFixture(ctx context.Context, storeDir string, f *fixture) (fixtureExp, []byte, error) {
	cs, err := local.NewStore(storeDir)
	if err != nil {
		return fixtureExp{}, nil, err
	}
	inStore := map[digest.Digest]bool{}
	for _, b := range f.store {
		if inStore[b.desc.Digest] {
			continue
		}
		if err := content.WriteBlob(ctx, cs, "ctrexport-"+b.desc.Digest.Encoded(), bytes.NewReader(b.data), b.desc); err != nil {
			return fixtureExp{}, nil, fmt.Errorf("writing %s to the content store: %w", b.desc.Digest, err)
		}
		inStore[b.desc.Digest] = true
	}

	fe := predict(f, inStore)

	for attempt := 1; attempt <= maxExportAttempts; attempt++ {
		var buf bytes.Buffer
		if err := archive.Export(ctx, cs, &buf, f.options(cs)...); err != nil {
			return fixtureExp{}, nil, fmt.Errorf("archive.Export: %w", err)
		}
		err := check(buf.Bytes(), &fe)
		if errors.Is(err, errOrder) {
			continue
		}
		if err != nil {
			return fixtureExp{}, nil, err
		}
		if attempt > 1 {
			fmt.Fprintf(os.Stderr, "%s: manifest.json in the given order on export %d\n", f.file, attempt)
		}
		return fe, buf.Bytes(), nil
	}
	return fixtureExp{}, nil, fmt.Errorf("manifest.json never came out in the given order in %d exports", maxExportAttempts)
}

var errOrder = errors.New("manifest.json entries not in the given order")

// check reads the exported tar with archive/tar and compares its blobs and manifest.json with
// the prediction. It returns errOrder if only manifest.json's order differs.
func check(data []byte, fe *fixtureExp) error {
	tr := tar.NewReader(bytes.NewReader(data))
	got := map[string]bool{}
	var manifestJSON []byte
	var haveIndex bool
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		switch {
		case strings.HasPrefix(h.Name, "blobs/sha256/") && h.Typeflag == tar.TypeReg:
			got["sha256:"+path.Base(h.Name)] = true
		case h.Name == "manifest.json":
			if manifestJSON, err = io.ReadAll(tr); err != nil {
				return err
			}
		case h.Name == "index.json":
			haveIndex = true
		}
	}
	if !haveIndex {
		return errors.New("no index.json in the archive")
	}
	want := map[string]bool{}
	for _, im := range fe.Images {
		want[im.Digest] = true
		for _, c := range append(slices.Clone(im.Children), im.Manifest...) {
			if c.State != "absent" {
				want[c.Digest] = true
			}
			if c.Config != nil && c.Config.Present {
				want[c.Config.Digest] = true
			}
			for _, l := range c.Layers {
				if l.Present {
					want[l.Digest] = true
				}
			}
		}
	}
	for d := range got {
		if !want[d] {
			return fmt.Errorf("the archive holds blob %s, which was not predicted", d)
		}
	}
	for d := range want {
		if !got[d] {
			return fmt.Errorf("the archive lacks blob %s, which was predicted", d)
		}
	}

	if fe.DockerManifest == nil {
		if manifestJSON != nil {
			return errors.New("the archive has a manifest.json, none was predicted")
		}
		return nil
	}
	if manifestJSON == nil {
		return errors.New("the archive has no manifest.json")
	}
	var entries []dockerEntry
	if err := json.Unmarshal(manifestJSON, &entries); err != nil {
		return fmt.Errorf("manifest.json: %w", err)
	}
	if len(entries) != len(fe.DockerManifest) {
		return fmt.Errorf("manifest.json has %d entries, %d predicted", len(entries), len(fe.DockerManifest))
	}
	for _, e := range fe.DockerManifest {
		if !slices.ContainsFunc(entries, func(g dockerEntry) bool { return g.equal(e.dockerEntry) }) {
			return fmt.Errorf("manifest.json lacks the predicted entry %+v; it is %s", e.dockerEntry, manifestJSON)
		}
	}
	for i, e := range fe.DockerManifest {
		if !entries[i].equal(e.dockerEntry) {
			return errOrder
		}
	}
	return nil
}

// predict computes what the archive holds from the store's content and the options, following
// archive.Export: with WithPlatform and without WithAllPlatforms only the matching children of an
// index are walked; with WithSkipMissing a child whose manifest is not in the store is left out,
// and one whose config or a layer is missing keeps only its manifest; a non-distributable layer
// is left out with WithSkipNonDistributableBlobs.
func predict(f *fixture, inStore map[digest.Digest]bool) fixtureExp {
	fe := fixtureExp{File: f.file, About: f.about, ExportOptions: f.optionStrings(), ManifestJSON: !f.skipManifestJSON}
	var match platforms.MatchComparer
	if f.platform != nil {
		match = platforms.OnlyStrict(*f.platform)
	}
	exported := map[digest.Digest]bool{} // blobs the walk writes
	walk := func(im *image) {
		if !inStore[im.manifest.desc.Digest] {
			if !f.skipMissing {
				panic(fmt.Sprintf("%s: manifest %s not in the store and no WithSkipMissing", f.file, im.manifest.desc.Digest))
			}
			return
		}
		exported[im.manifest.desc.Digest] = true
		rest := append([]*blob{im.config}, im.layers...)
		if slices.ContainsFunc(rest, func(b *blob) bool { return !inStore[b.desc.Digest] }) {
			if !f.skipMissing {
				panic(fmt.Sprintf("%s: content of %s not in the store and no WithSkipMissing", f.file, im.manifest.desc.Digest))
			}
			return
		}
		for _, b := range rest {
			if f.skipNonDist && images.IsNonDistributable(b.desc.MediaType) {
				continue
			}
			exported[b.desc.Digest] = true
		}
	}
	walked := func(im *image) bool {
		return match == nil || f.allPlatforms || im.platform == nil || match.Match(*im.platform)
	}

	type dm struct {
		manifest *image
		names    []string
	}
	var dms []*dm // manifest.json entries in the order Export meets them
	dmOf := map[digest.Digest]*dm{}
	addName := func(im *image, name string) {
		d := dmOf[im.manifest.desc.Digest]
		if d == nil {
			d = &dm{manifest: im}
			dmOf[im.manifest.desc.Digest] = d
			dms = append(dms, d)
		}
		if name != "" {
			d.names = append(d.names, name)
		}
	}

	for _, e := range f.entries {
		ie := imageExp{Digest: e.desc().Digest.String(), MediaType: e.desc().MediaType, Size: e.desc().Size, Tags: e.names}
		if ie.Tags == nil {
			ie.Tags = []string{}
		}
		if e.index != nil {
			ie.Kind = "index"
			exported[e.index.blob.desc.Digest] = true
			var def *image
			for _, c := range e.index.children {
				if walked(c) {
					walk(c)
				}
				if def == nil && match != nil && (c.platform == nil || match.Match(*c.platform)) {
					def = c
				}
			}
			if def != nil {
				if len(e.names) == 0 {
					addName(def, "")
				}
				for _, n := range e.names {
					addName(def, n)
				}
			}
		} else {
			ie.Kind = "manifest"
			walk(e.manifest)
			if len(e.names) == 0 {
				addName(e.manifest, "")
			}
			for _, n := range e.names {
				addName(e.manifest, n)
			}
		}
		fe.Images = append(fe.Images, ie)
	}

	// States and presence from the union of what was exported: a blob shared by two children
	// is in the archive if either child's walk wrote it.
	for i, e := range f.entries {
		ie := &fe.Images[i]
		if e.index != nil {
			for _, c := range e.index.children {
				ie.Children = append(ie.Children, childExp(c, exported, f.skipNonDist))
			}
		} else {
			ie.Manifest = []child{childExp(e.manifest, exported, f.skipNonDist)}
		}
	}

	if !f.skipManifestJSON {
		fe.DockerManifest = []dockerExp{}
		for _, d := range dms {
			de := dockerExp{Manifest: d.manifest.manifest.desc.Digest.String()}
			de.Config = blobPath(d.manifest.config.desc.Digest)
			de.RepoTags = d.names
			for _, l := range d.manifest.layers {
				de.Layers = append(de.Layers, blobPath(l.desc.Digest))
			}
			fe.DockerManifest = append(fe.DockerManifest, de)
		}
	}
	return fe
}

func blobPath(d digest.Digest) string { return "blobs/" + d.Algorithm().String() + "/" + d.Encoded() }

func childExp(im *image, exported map[digest.Digest]bool, skipNonDist bool) child {
	c := child{
		Digest:      im.manifest.desc.Digest.String(),
		Size:        im.manifest.desc.Size,
		MediaType:   im.manifest.desc.MediaType,
		Attestation: im.attest,
	}
	if im.platform != nil {
		c.Platform = &platformExp{OS: im.platform.OS, Architecture: im.platform.Architecture, Variant: im.platform.Variant}
	}
	if im.attest {
		c.AttestationFor = im.annots[annRefDigest]
	}
	c.Config = &blobExp{Digest: im.config.desc.Digest.String(), Size: im.config.desc.Size, MediaType: im.config.desc.MediaType, Present: exported[im.config.desc.Digest]}
	complete := exported[im.manifest.desc.Digest] && c.Config.Present
	for _, l := range im.layers {
		le := blobExp{Digest: l.desc.Digest.String(), Size: l.desc.Size, MediaType: l.desc.MediaType, Present: exported[l.desc.Digest], URLs: l.desc.URLs}
		if l.diffID != "" {
			le.DiffID = l.diffID.String()
		}
		if images.IsNonDistributable(l.desc.MediaType) {
			le.NonDistributable = true
		}
		if !le.Present && !(le.NonDistributable && skipNonDist) {
			complete = false
		}
		c.Layers = append(c.Layers, le)
	}
	switch {
	case !exported[im.manifest.desc.Digest]:
		c.State = "absent"
	case complete:
		c.State = "complete"
	default:
		c.State = "manifest-only"
	}
	return c
}

type expectedFile struct {
	Generator string            `json:"generator"`
	States    map[string]string `json:"states"`
	Fixtures  []fixtureExp      `json:"fixtures"`
}

type fixtureExp struct {
	File          string     `json:"file"`
	About         string     `json:"about"`
	ExportOptions []string   `json:"export_options"`
	ManifestJSON  bool       `json:"manifest_json"`
	Images        []imageExp `json:"images"`
	// DockerManifest is manifest.json as predicted, in order; nil without manifest.json.
	DockerManifest []dockerExp `json:"docker_manifest,omitempty"`
}

// imageExp is one WithManifest call: one index.json entry per tag, or one without a name.
type imageExp struct {
	Kind      string   `json:"kind"` // "index" or "manifest"
	Digest    string   `json:"digest"`
	MediaType string   `json:"mediaType"`
	Size      int64    `json:"size"`
	Tags      []string `json:"tags"`
	Children  []child  `json:"children,omitempty"` // kind index
	Manifest  []child  `json:"manifest,omitempty"` // kind manifest: the one manifest
}

type child struct {
	Digest         string       `json:"digest"`
	Size           int64        `json:"size"`
	MediaType      string       `json:"mediaType"`
	Platform       *platformExp `json:"platform,omitempty"`
	Attestation    bool         `json:"attestation"`
	AttestationFor string       `json:"attestation_for,omitempty"`
	State          string       `json:"state"`
	Config         *blobExp     `json:"config"`
	Layers         []blobExp    `json:"layers"`
}

type platformExp struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Variant      string `json:"variant,omitempty"`
}

type blobExp struct {
	Digest           string   `json:"digest"`
	Size             int64    `json:"size"`
	MediaType        string   `json:"mediaType"`
	DiffID           string   `json:"diff_id,omitempty"`
	NonDistributable bool     `json:"non_distributable,omitempty"`
	URLs             []string `json:"urls,omitempty"`
	Present          bool     `json:"present"`
}

type dockerEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

func (a dockerEntry) equal(b dockerEntry) bool {
	return a.Config == b.Config && slices.Equal(a.RepoTags, b.RepoTags) && slices.Equal(a.Layers, b.Layers)
}

type dockerExp struct {
	dockerEntry
	Manifest string `json:"manifest"`
}

func (d dockerExp) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Manifest string   `json:"manifest"`
		Config   string   `json:"Config"`
		RepoTags []string `json:"RepoTags"`
		Layers   []string `json:"Layers"`
	}{d.Manifest, d.Config, d.RepoTags, d.Layers})
}

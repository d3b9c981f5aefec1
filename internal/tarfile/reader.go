package tarfile

import (
	"archive/tar"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	distref "github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/darc-dev/darc/internal/layout"
	"github.com/darc-dev/darc/reference"
)

// Limits bound what a reader accepts from an archive. A zero field means the default.
type Limits struct {
	MaxMembers      int   // tar members
	MaxManifestSize int64 // manifest.json, repositories, index.json and OCI manifests/indexes
	MaxConfigSize   int64 // one image config (or legacy v1 JSON)
	MaxSpoolSize    int64 // bytes written to the spool file for a stream or compressed input
	MaxStreamMemory int64 // member bytes ReadStream keeps in memory (metadata, tiny members)
}

// Default limits.
const (
	defaultMaxMembers      = 1_000_000
	DefaultMaxSpoolSize    = 1 << 40
	defaultMaxStreamMemory = 64 << 20
)

// WithDefaults fills zero fields with the defaults.
func (l Limits) WithDefaults() Limits {
	if l.MaxMembers == 0 {
		l.MaxMembers = defaultMaxMembers
	}
	if l.MaxManifestSize == 0 {
		l.MaxManifestSize = layout.DefaultMaxManifestSize
	}
	if l.MaxConfigSize == 0 {
		l.MaxConfigSize = layout.DefaultMaxConfigSize
	}
	if l.MaxSpoolSize == 0 {
		l.MaxSpoolSize = DefaultMaxSpoolSize
	}
	if l.MaxStreamMemory == 0 {
		l.MaxStreamMemory = defaultMaxStreamMemory
	}
	return l
}

// Reader is an opened docker-archive: its member index and its images.
//
// None of the fields below are modified after newReader returns, except the lazily
// computed, sync.Once-guarded state of each Image and of the OCI layout, and the per-member
// caches guarded by cacheMu; with the index being safe for concurrent reads, a Reader and its
// Images are safe for concurrent use.
type Reader struct {
	name   string // for messages: the path the user gave, or "-"
	ix     *Index
	limits Limits
	images []*Image
	format string

	ociOnce sync.Once
	oci     *ociLayout
	ociErr  error

	// Many images can name one member: shared layers and configs, or a manifest.json that
	// names one large member a million times. What is learnt about a member the same way for
	// every image (a config's content, a layer member's digest) is kept by member offset, so
	// each member is read once, and images sharing a config share its bytes.
	cacheMu sync.Mutex
	configs map[int64]*configEntry
	digests map[int64]*digestEntry

	// notes are oddities of the archive as a whole that docker load tolerates but other
	// readers may not (see Notes).
	notes []string

	// stream is set for a Reader made by ReadStream: what was learned about each regular
	// member as it passed. The bodies of forwarded members cannot be read again.
	stream *streamState

	// trail describes what followed the tar in a spooled or streamed input, which is not
	// kept; nil when the tar is read in place (see Trailer).
	trail *Trailer

	// view is the header view the index was built from, for a seekable bundle that has one.
	view *headerView

	closer io.Closer
	// sources are the files read in place, as they were when opened (see Sources); nil when
	// spooled.
	sources []Source
}

// Trailer describes what follows the end of the tar in the archive's input, which every
// reader ignores, as docker load does.
func (r *Reader) Trailer() (Trailer, error) {
	if r.trail != nil {
		return *r.trail, nil
	}
	return readTrailer(io.NewSectionReader(r.ix.r, r.ix.end, r.ix.size-r.ix.end))
}

// configEntry is a config member as read and hashed once, and parsed once when first needed:
// listing needs only the digest, so a big archive's configs are not parsed to list it.
type configEntry struct {
	once  sync.Once
	data  []byte
	id    digest.Digest
	err   error // reading
	parse sync.Once
	cfg   *layout.Config
	// parseErr is the parser's error: the config is one docker would refuse.
	parseErr error
}

type digestEntry struct {
	once sync.Once
	d    digest.Digest
	err  error
}

// configOf reads and hashes the config member m, once.
func (r *Reader) configOf(m Member) *configEntry {
	r.cacheMu.Lock()
	if r.configs == nil {
		r.configs = map[int64]*configEntry{}
	}
	e := r.configs[m.Offset]
	if e == nil {
		e = &configEntry{}
		r.configs[m.Offset] = e
	}
	r.cacheMu.Unlock()
	e.once.Do(func() {
		if r.limits.MaxConfigSize > 0 && m.Size > r.limits.MaxConfigSize {
			e.err = fmt.Errorf("%w: member %q is %d bytes, the limit is %d", ErrTooLarge, m.Name, m.Size, r.limits.MaxConfigSize)
			return
		}
		e.data = make([]byte, m.Size)
		if _, err := io.ReadFull(r.ix.section(m), e.data); err != nil {
			e.data, e.err = nil, fmt.Errorf("reading member %q: %w", m.Name, err)
			return
		}
		e.id = digest.FromBytes(e.data)
	})
	return e
}

// parsed returns the config parsed, once. e must have been read without error.
func (e *configEntry) parsed() (*layout.Config, error) {
	e.parse.Do(func() { e.cfg, e.parseErr = layout.ParseConfig(e.data) })
	return e.cfg, e.parseErr
}

// Image is one image of an archive, as manifest.json (or the legacy layout) describes it.
type Image struct {
	r *Reader
	// Index is the position in manifest.json, from 0.
	Index int
	// RepoTags are the tags as written in the archive; nil when the archive says null.
	RepoTags []string
	// Tags are RepoTags normalized, duplicates dropped, invalid ones left out (see BadTags):
	// an entry without a tag is invalid, as docker load says, and gets no ":latest". Tags a
	// later image takes are left out too (see MovedTags).
	Tags []distref.NamedTagged
	// BadTags are RepoTags entries that are not valid tagged references (reference.ParseRepoTag).
	BadTags []string
	// MovedTags are tags of RepoTags that a later image with another ID also has: docker load
	// leaves them there, so they are not in Tags (see settleTags).
	MovedTags []MovedTag
	// ConfigName is the config member's cleaned path.
	ConfigName string
	// ID is the image ID: the digest of the config's content, as docker and podman show it
	// after loading. It is empty when the config cannot be read (see Problems).
	ID digest.Digest
	// NamedID is the digest the config's member name states ("<hex>.json", "sha256:<hex>",
	// "blobs/sha256/<hex>"), if it states one. It is only a name: when it is not ID, the name
	// lies, which docker load does not mind.
	NamedID digest.Digest
	// LayerNames are the cleaned layer paths from manifest.json, base first.
	LayerNames []string
	// LayerMembers are the regular files the layer paths resolve to (zero Members for
	// unresolvable ones, which are listed in Problems).
	LayerMembers []Member
	// Problems are structural defects found at open time: missing or insecure members.
	// An image with problems is listed but cannot be read.
	Problems []error

	layerSources map[digest.Digest]imgspecv1.Descriptor
	// foreign holds the layers (by position) that are not in the archive but that the
	// archive's own manifest marks as foreign, with the URLs they are fetched from.
	foreign      map[int]imgspecv1.Descriptor
	legacyConfig []byte // synthesized config of a pre-1.10 image

	once   sync.Once
	res    *Resolved
	resErr error
}

// Size is the sum of the layers' sizes as stored.
func (img *Image) Size() int64 {
	var n int64
	for _, m := range img.LayerMembers {
		n += m.Size
	}
	return n
}

// Name is a short label for messages: "image @N".
func (img *Image) Name() string { return fmt.Sprintf("image @%d", img.Index) }

// newReader indexes the tar in ra and parses its images. name is used in error messages.
func newReader(name string, ra io.ReaderAt, size int64, limits Limits) (*Reader, error) {
	limits = limits.WithDefaults()
	ix, err := BuildIndex(ra, size, limits.MaxMembers)
	if err != nil {
		return nil, fmt.Errorf("archive %q: %w", name, err)
	}
	r := &Reader{name: name, ix: ix, limits: limits}
	if err := r.loadImages(); err != nil {
		return nil, fmt.Errorf("archive %q: %w", name, err)
	}
	return r, nil
}

// loadImages works out the images and gives each the archive's extraction failure, if any:
// docker load extracts the whole tar first, so such an archive loads nothing.
func (r *Reader) loadImages() error {
	if err := r.loadImagesFrom(); err != nil {
		return err
	}
	if err := r.ix.extractErr; err != nil {
		for _, img := range r.images {
			img.Problems = append([]error{fmt.Errorf("extracting the archive: %w", err)}, img.Problems...)
		}
	}
	r.settleTags()
	return nil
}

// settleTags gives each tag to the last image naming it, as docker load does: loading an
// image under a tag that an earlier image of the archive got moves the tag. An earlier image
// with another ID loses the tag from Tags and records it in MovedTags; entries of one image
// (go-containerregistry writes one per tag) keep theirs.
func (r *Reader) settleTags() {
	if len(r.images) < 2 {
		return
	}
	owner := map[string]*Image{}
	for _, img := range r.images {
		for _, t := range img.Tags {
			owner[t.String()] = img
		}
	}
	for _, img := range r.images {
		var kept []distref.NamedTagged
		for _, t := range img.Tags {
			if o := owner[t.String()]; o != img && o.ID != img.ID {
				img.MovedTags = append(img.MovedTags, MovedTag{Tag: t, To: o.Index})
				continue
			}
			kept = append(kept, t)
		}
		img.Tags = kept
	}
}

// MovedTag is a tag that a later image of the archive also has, so that docker load leaves it
// on that image (To, its index).
type MovedTag struct {
	Tag distref.NamedTagged
	To  int
}

// Name is the name given to newReader.
func (r *Reader) Name() string { return r.name }

// Index is the member index.
func (r *Reader) Index() *Index { return r.ix }

// Notes are oddities of the archive as a whole that docker load tolerates but other readers
// may not, for verification warnings.
func (r *Reader) Notes() []string { return r.notes }

// Images returns the images in archive order. The slice must not be modified.
func (r *Reader) Images() []*Image { return r.images }

// Format names the layout the images were read from: "manifest.json", "legacy" (pre-1.10,
// repositories only) or "oci" (an OCI layout without manifest.json).
func (r *Reader) Format() string { return r.format }

func (r *Reader) loadImagesFrom() error {
	switch {
	case r.has(layout.ManifestFile):
		data, err := r.readMetadata(layout.ManifestFile)
		if err != nil {
			return err
		}
		items, end, err := layout.ParseManifest(data, r.limits.MaxManifestSize)
		if err != nil {
			return err
		}
		if layout.HasTrailer(data, end) {
			r.notes = append(r.notes, "manifest.json holds data after its JSON value: docker load ignores it, containers/image (podman, skopeo) refuses the archive")
		}
		if len(items) == 0 {
			return fmt.Errorf("%w: manifest.json lists no images", ErrNotDockerArchive)
		}
		r.format = "manifest.json"
		r.images = r.imagesFromItems(items)
		return nil
	case r.has(layout.RepositoriesFile):
		r.format = "legacy"
		return r.loadLegacy()
	case r.has(layout.IndexFile) && r.has(layout.OCILayoutFile):
		r.format = "oci"
		return r.loadOCIOnly()
	}
	return fmt.Errorf("%w: no manifest.json, repositories or index.json (a container export or a plain layer tar?)", ErrNotDockerArchive)
}

// readMetadata reads manifest.json, repositories or index.json within the manifest size
// limit; the layout parsers check the bounds that follow from it.
func (r *Reader) readMetadata(name string) ([]byte, error) {
	data, _, err := r.ix.ReadSmall(name, r.limits.MaxManifestSize)
	return data, err
}

func (r *Reader) has(name string) bool {
	_, ok := r.ix.Lookup(name)
	return ok
}

// imagesFromItems builds the images of manifest.json's entries on every core: reading and
// hashing each config is most of the work of listing an archive of many images.
func (r *Reader) imagesFromItems(items []layout.ManifestItem) []*Image {
	images := make([]*Image, len(items))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(items)) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(items); i = int(next.Add(1) - 1) {
				images[i] = r.imageFromItem(i, items[i])
			}
		})
	}
	wg.Wait()
	return images
}

// imageFromItem builds an Image from a manifest.json entry, recording (not failing on)
// missing and insecure members so that listing and verification can report them.
func (r *Reader) imageFromItem(i int, it layout.ManifestItem) *Image {
	img := &Image{r: r, Index: i, RepoTags: it.RepoTags, layerSources: it.LayerSources}
	img.setTags()
	cfg, err := cleanName(it.Config)
	if err != nil || it.Config == "" {
		if err == nil {
			err = fmt.Errorf("%w: empty Config", ErrInvalidManifest)
		}
		img.Problems = append(img.Problems, fmt.Errorf("config: %w", err))
	} else {
		img.ConfigName = cfg
		img.NamedID, _ = layout.DigestFromName(cfg, false)
		if err := img.readID(); err != nil {
			img.Problems = append(img.Problems, fmt.Errorf("config: %w", err))
		}
	}
	img.LayerNames = make([]string, len(it.Layers))
	img.LayerMembers = make([]Member, len(it.Layers))
	for j, l := range it.Layers {
		c, err := cleanName(l)
		if err != nil {
			img.Problems = append(img.Problems, fmt.Errorf("layer %d: %w", j, err))
			img.LayerNames[j] = l
			continue
		}
		img.LayerNames[j] = c
		m, err := r.ix.Resolve(c)
		if err != nil {
			if d, ok := img.foreignLayer(j, c, err); ok {
				if img.foreign == nil {
					img.foreign = map[int]imgspecv1.Descriptor{}
				}
				img.foreign[j] = d
				continue
			}
			img.Problems = append(img.Problems, fmt.Errorf("layer %d: %w", j, err))
			continue
		}
		img.LayerMembers[j] = m
	}
	return img
}

// foreignLayer reports whether layer j, whose member name is missing (err), is a foreign
// layer: one the archive's own manifest describes with URLs to fetch it from, which
// exporters leave out (containerd's WithSkipNonDistributableBlobs, Docker for Windows base
// layers).
func (img *Image) foreignLayer(j int, name string, err error) (imgspecv1.Descriptor, bool) {
	if !errors.Is(err, ErrMemberNotFound) || img.ID == "" {
		return imgspecv1.Descriptor{}, false
	}
	l, lerr := img.r.ociLayoutInfo()
	if lerr != nil || l == nil {
		return imgspecv1.Descriptor{}, false
	}
	m, ok := l.byConfig[img.ID]
	if !ok {
		return imgspecv1.Descriptor{}, false
	}
	infos := m.parsed.LayerInfos()
	if j >= len(infos) || len(infos[j].URLs) == 0 || layout.BlobName(infos[j].Digest) != name {
		return imgspecv1.Descriptor{}, false
	}
	li := infos[j]
	return imgspecv1.Descriptor{MediaType: li.MediaType, Digest: li.Digest, Size: li.Size, URLs: li.URLs}, true
}

// readID sets the image ID from the config's content: the config is read (once per member,
// see configOf) whatever its name says.
func (img *Image) readID() error {
	m, err := img.r.ix.Resolve(img.ConfigName)
	if err != nil {
		return err
	}
	e := img.r.configOf(m)
	if e.err != nil {
		return e.err
	}
	img.ID = e.id
	return nil
}

func (img *Image) setTags() {
	seen := map[string]bool{} // not a scan of img.Tags: quadratic in an image with many tags
	for _, t := range img.RepoTags {
		nt, err := reference.ParseRepoTag(t)
		if err != nil {
			img.BadTags = append(img.BadTags, t)
			continue
		}
		if s := nt.String(); !seen[s] {
			seen[s] = true
			img.Tags = append(img.Tags, nt)
		}
	}
}

// Select returns the image a selector picks. No selector picks the only image; a tag picks
// the image docker load leaves it on, the last naming it; an ID prefix that matches two
// different images is ErrAmbiguous, naming both.
// SelectEach returns the images the selectors pick, in selector order, each once; with no
// selector, every image in archive order.
func (r *Reader) SelectEach(sels []reference.Selector) ([]*Image, error) {
	if len(sels) == 0 {
		return r.images, nil
	}
	var picked []*Image
	seen := map[int]bool{}
	for _, s := range sels {
		img, err := r.Select(s)
		if err != nil {
			return nil, err
		}
		if !seen[img.Index] {
			seen[img.Index] = true
			picked = append(picked, img)
		}
	}
	return picked, nil
}

func (r *Reader) Select(sel reference.Selector) (*Image, error) {
	var matches []*Image
	switch sel.Kind() {
	case reference.KindNone:
		if len(r.images) == 1 {
			return r.images[0], nil
		}
		return nil, fmt.Errorf("archive %q: %w: it holds %d images, choose one of: %s", r.name, ErrAmbiguous, len(r.images), r.choices())
	case reference.KindIndex:
		i := sel.Index()
		if i >= len(r.images) {
			return nil, fmt.Errorf("archive %q: %w: no @%d, the archive holds %d images", r.name, ErrImageNotFound, i, len(r.images))
		}
		return r.images[i], nil
	case reference.KindTag:
		// Tags, not RepoTags: a tag on two images picks the later, as docker load leaves it
		// (see settleTags).
		for _, img := range r.images {
			if slices.ContainsFunc(img.Tags, func(t distref.NamedTagged) bool { return sel.MatchTag(t.String()) }) {
				matches = append(matches, img)
			}
		}
	case reference.KindID, reference.KindIDPrefix:
		for _, img := range r.images {
			if img.ID != "" && sel.MatchID(img.ID) {
				matches = append(matches, img)
			}
		}
	}
	if len(matches) == 0 {
		return nil, fmt.Errorf("archive %q: %w: nothing matches %q; the archive holds: %s", r.name, ErrImageNotFound, sel.String(), r.choices())
	}
	// Entries that share an image ID are the same image (go-containerregistry writes one entry
	// per tag); only different IDs make a selection ambiguous.
	for _, m := range matches[1:] {
		if m.ID != matches[0].ID {
			idx := make([]string, len(matches))
			for i, m := range matches {
				idx[i] = fmt.Sprintf("@%d (%s)", m.Index, m.ID.Encoded()[:12])
			}
			return nil, fmt.Errorf("archive %q: %w: %q matches different images %s", r.name, ErrAmbiguous, sel.String(), strings.Join(idx, ", "))
		}
	}
	return matches[0], nil
}

// choices lists the images for an error message, shortened for big archives.
func (r *Reader) choices() string {
	var parts []string
	for i, img := range r.images {
		if i == 10 {
			parts = append(parts, fmt.Sprintf("… and %d more", len(r.images)-10))
			break
		}
		label := "untagged"
		if len(img.Tags) > 0 {
			label = distref.FamiliarString(img.Tags[0])
		}
		parts = append(parts, fmt.Sprintf("@%d (%s)", i, label))
	}
	return strings.Join(parts, ", ")
}

// Unreferenced lists regular members that no image, manifest or layout file refers to,
// for verification warnings. Legacy v1 metadata (VERSION, json) next to a referenced layer
// counts as referenced.
func (r *Reader) Unreferenced() []string {
	used := map[string]bool{layout.ManifestFile: true, layout.RepositoriesFile: true, layout.IndexFile: true, layout.OCILayoutFile: true}
	for _, img := range r.images {
		used[img.ConfigName] = true
		for j, n := range img.LayerNames {
			used[n] = true
			used[img.LayerMembers[j].Name] = true
		}
	}
	if oci, err := r.ociLayoutInfo(); err == nil && oci != nil {
		for n := range oci.referenced {
			used[n] = true
		}
	}
	var out []string
	for _, m := range r.ix.members {
		if m.Type != tar.TypeReg || used[m.Name] {
			continue
		}
		if layout.IsV1DirMember(m.Name) {
			continue // legacy v1 directory metadata
		}
		if i := r.ix.byName[m.Name]; r.ix.members[i].Offset != m.Offset {
			continue // an earlier duplicate; reported as a duplicate instead
		}
		out = append(out, m.Name)
	}
	return out
}

// hashMember returns the sha256 digest of a member's stored bytes, computed once.
func (r *Reader) hashMember(m Member) (digest.Digest, error) {
	if f, ok := r.StreamFacts(m); ok {
		return f.Digest, nil
	}
	r.cacheMu.Lock()
	if r.digests == nil {
		r.digests = map[int64]*digestEntry{}
	}
	e := r.digests[m.Offset]
	if e == nil {
		e = &digestEntry{}
		r.digests[m.Offset] = e
	}
	r.cacheMu.Unlock()
	e.once.Do(func() {
		h := sha256.New()
		if _, err := io.Copy(h, r.ix.section(m)); err != nil {
			e.err = err
			return
		}
		e.d = digest.NewDigest(digest.SHA256, h)
	})
	return e.d, e.err
}

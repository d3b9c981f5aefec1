package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	distref "github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/types"
	"golang.org/x/sync/errgroup"

	"github.com/darc-dev/darc/internal/tarfile"
	"github.com/darc-dev/darc/reference"
)

// Errors that callers branch on with errors.Is. Every error returned by this package that
// restates one of these wraps it.
var (
	ErrNotDockerArchive = tarfile.ErrNotDockerArchive // input is not a tar, or a tar with no image
	ErrTooLarge         = tarfile.ErrTooLarge         // a configured limit was exceeded
	ErrInsecurePath     = tarfile.ErrInsecurePath     // a manifest path leaves the archive root
	ErrBadLink          = tarfile.ErrBadLink          // a link loops, is too long or dangles
	ErrNotExtractable   = tarfile.ErrNotExtractable   // extracting the tar (as docker load does) fails
	ErrMemberNotFound   = tarfile.ErrMemberNotFound   // manifest.json names a missing member
	ErrDigestMismatch   = tarfile.ErrDigestMismatch   // content does not match its digest
	ErrSizeMismatch     = tarfile.ErrSizeMismatch     // content is not as long as declared
	ErrInvalidManifest  = tarfile.ErrInvalidManifest  // malformed or inconsistent metadata
	ErrInvalidLayer     = tarfile.ErrInvalidLayer     // a layer's uncompressed content is not a tar
	ErrImageNotFound    = tarfile.ErrImageNotFound    // no image matches a selector
	ErrAmbiguous        = tarfile.ErrAmbiguous        // a selector matches several images
	ErrPlatformNotFound = tarfile.ErrPlatformNotFound // the platform asked for is not in the archive

	// ErrForeignOS marks the verify warning about an image whose OS is not linux: docker
	// load on a Linux host refuses it, a registry or an engine on that OS takes it.
	ErrForeignOS = errors.New("docker load on a Linux host refuses images for another OS")
)

// OpenOption configures Open and OpenStream. Create and NewWriter take CreateOption, so a
// reading limit cannot be given to a writer, where it would mean nothing.
type OpenOption func(*openOptions)

// openOptions are the settings of Open and OpenStream. A limit is nil unless its option was
// given, so that a given zero is refused rather than taken for the default.
type openOptions struct {
	tempDir         string
	maxMembers      *int
	maxManifestSize *int64
	maxConfigSize   *int64
	maxSpoolSize    *int64
	warn            func(string)
}

func makeOpenOptions(opts []OpenOption) (tarfile.OpenOptions, error) {
	var o openOptions
	for _, f := range opts {
		f(&o)
	}
	out := tarfile.OpenOptions{TempDir: o.tempDir, Warn: o.warn}
	if o.maxMembers != nil {
		if err := checkLimit("WithMaxMembers", int64(*o.maxMembers)); err != nil {
			return out, err
		}
		out.Limits.MaxMembers = *o.maxMembers
	}
	if o.maxManifestSize != nil {
		if err := checkLimit("WithMaxManifestSize", *o.maxManifestSize); err != nil {
			return out, err
		}
		out.Limits.MaxManifestSize = *o.maxManifestSize
	}
	if o.maxConfigSize != nil {
		if err := checkLimit("WithMaxConfigSize", *o.maxConfigSize); err != nil {
			return out, err
		}
		out.Limits.MaxConfigSize = *o.maxConfigSize
	}
	if o.maxSpoolSize != nil {
		if err := checkLimit("WithMaxSpoolSize", *o.maxSpoolSize); err != nil {
			return out, err
		}
		out.Limits.MaxSpoolSize = *o.maxSpoolSize
	}
	return out, nil
}

// checkLimit refuses a limit below 1: zero would otherwise be taken for "the default".
func checkLimit(option string, n int64) error {
	if n < 1 {
		return fmt.Errorf("archive: %s(%d): the limit must be at least 1", option, n)
	}
	return nil
}

// WithWarnings passes warn what Open works around rather than fails on: a seekable .tar.zst
// whose seek table is damaged is read as a plain zstd stream (spooled), and warn is told why.
func WithWarnings(warn func(string)) OpenOption { return func(o *openOptions) { o.warn = warn } }

// WithTempDir sets where Open and OpenStream spool a stream or compressed input. The default
// (and "") is os.TempDir(), which honours TMPDIR. WithWriteTempDir is its counterpart for
// Create and NewWriter.
func WithTempDir(dir string) OpenOption { return func(o *openOptions) { o.tempDir = dir } }

// WithMaxMembers limits the number of tar members (default 1,000,000). It must be at least 1.
func WithMaxMembers(n int) OpenOption { return func(o *openOptions) { o.maxMembers = &n } }

// WithMaxManifestSize limits manifest.json, repositories, index.json and OCI manifests
// (default 64 MiB). It must be at least 1.
func WithMaxManifestSize(n int64) OpenOption {
	return func(o *openOptions) { o.maxManifestSize = &n }
}

// WithMaxConfigSize limits one image config read from the archive (default 8 MiB). It must
// be at least 1. WithWriteMaxConfigSize is its counterpart for Create and NewWriter.
func WithMaxConfigSize(n int64) OpenOption { return func(o *openOptions) { o.maxConfigSize = &n } }

// WithMaxSpoolSize limits how many bytes a stream or compressed input may expand to when it
// is spooled (default 1 TiB), the guard against decompression bombs. It must be at least 1.
func WithMaxSpoolSize(n int64) OpenOption { return func(o *openOptions) { o.maxSpoolSize = &n } }

// ReadableArchive is an open docker-archive. It owns the file (or the spooled copy of a
// stream or compressed input), the member index and the parsed manifest.json, and is shared
// by the references to all of its images.
//
// A ReadableArchive is safe for concurrent use, except that Close must not race with other
// calls; image sources obtained from it must be closed before it.
type ReadableArchive struct {
	path string
	r    *tarfile.Reader
}

// Open opens the docker-archive at path; "-" reads standard input. Whole-archive gzip, zstd,
// xz and bzip2 compression is recognized from the content. An uncompressed regular file and
// a seekable .tar.zst are read in place; anything else is spooled once to a temp file that
// Close removes. A split archive, parts NAME.000, NAME.001, … as WithSplit writes them (or
// `split -d -a 3 FILE FILE.` cuts any archive), is opened as one given its first part,
// NAME itself, or a glob pattern matching exactly its parts.
func Open(path string, opts ...OpenOption) (*ReadableArchive, error) {
	o, err := makeOpenOptions(opts)
	if err != nil {
		return nil, err
	}
	r, err := tarfile.OpenFile(path, o)
	if err != nil {
		return nil, err
	}
	return &ReadableArchive{path: path, r: r}, nil
}

// OpenStream reads a docker-archive from r (possibly compressed), spooling it once to a temp
// file that Close removes.
func OpenStream(r io.Reader, opts ...OpenOption) (*ReadableArchive, error) {
	o, err := makeOpenOptions(opts)
	if err != nil {
		return nil, err
	}
	tr, err := tarfile.OpenStream("-", r, o)
	if err != nil {
		return nil, err
	}
	return &ReadableArchive{path: "-", r: tr}, nil
}

// Close releases the archive. It is idempotent.
func (a *ReadableArchive) Close() error { return a.r.Close() }

// Path is the path the archive was opened from ("-" for a stream).
func (a *ReadableArchive) Path() string { return a.path }

// ImageInfo describes one image as manifest.json (or the legacy layout) lists it. Opening the
// archive read each config once, to hash it; no config is parsed and no layer read for it.
type ImageInfo struct {
	// Index is the image's position in the archive, from 0: the INDEX of @INDEX.
	Index int
	// Tags are the image's tags, normalized ("busybox" is docker.io/library/busybox:latest).
	Tags []distref.NamedTagged
	// ID is the image ID, the digest of its config's content (what docker and podman show
	// after loading it, whatever the config's member name says); empty when the config cannot
	// be read (see Problems).
	ID digest.Digest
	// Layers are the layer members, base first.
	Layers []LayerInfo
	// Problems are defects that make the image unreadable (missing or insecure members).
	Problems []error
	// BadTags are entries of RepoTags that are not valid references.
	BadTags []string
	// List is the manifest list (OCI index or Docker manifest list) the image is one platform
	// of, as the archive's OCI layout holds it (Docker 25+, containerd); nil for an image that
	// is one manifest. The image itself is the platform manifest.json names.
	List *ListInfo
}

// ListInfo is a manifest list and what the archive holds of each of its platforms.
type ListInfo struct {
	Digest    digest.Digest
	MediaType string
	// Platforms are the list's manifests in its order, attestations left out.
	Platforms []PlatformInfo
	// Complete are the manifests the archive holds completely, attestations included: what a
	// copy of the list can take (see ListReference). Manifests is how many the list names.
	Complete  []digest.Digest
	Manifests int
}

// PlatformInfo is one platform of a manifest list.
type PlatformInfo struct {
	// Platform is "os/arch[/variant]" ("unknown" when the list gives none).
	Platform string
	// Manifest is the platform's manifest digest.
	Manifest digest.Digest
	// State is what the archive holds of it: "complete" (manifest, config and layers),
	// "manifest only" or "absent".
	State string
	// Listed is set for the platform the image itself is: the one manifest.json names.
	Listed bool
}

// Complete reports whether the archive holds the platform's manifest, config and layers.
func (p PlatformInfo) Complete() bool { return p.State == tarfile.Complete.String() }

// String is the platform, with its state unless complete: "linux/arm64/v8 (absent)".
func (p PlatformInfo) String() string {
	if p.Complete() {
		return p.Platform
	}
	return p.Platform + " (" + p.State + ")"
}

func listInfoOf(img *tarfile.Image) *ListInfo {
	l := img.ManifestList()
	if l == nil {
		return nil
	}
	info := &ListInfo{Digest: l.Digest, MediaType: l.MediaType, Manifests: len(l.Instances)}
	for _, in := range l.Instances {
		if in.State == tarfile.Complete {
			info.Complete = append(info.Complete, in.Digest)
		}
		if !in.Attestation {
			info.Platforms = append(info.Platforms, PlatformInfo{Platform: in.PlatformString(), Manifest: in.Digest, State: in.State.String(), Listed: in.Uses(img.ID)})
		}
	}
	return info
}

// LayerInfo is one layer member of an image.
type LayerInfo struct {
	// Name is the layer path from manifest.json; Member the file it resolves to after links.
	Name   string
	Member string
	// Size is the size as stored (compressed size for a compressed member).
	Size int64
}

// Size is the sum of the layers' sizes as stored.
func (i ImageInfo) Size() int64 {
	var n int64
	for _, l := range i.Layers {
		n += l.Size
	}
	return n
}

func infoOf(img *tarfile.Image) ImageInfo {
	info := ImageInfo{Index: img.Index, Tags: img.Tags, ID: img.ID, Problems: img.Problems, BadTags: img.BadTags, List: listInfoOf(img)}
	for j, n := range img.LayerNames {
		m := img.LayerMembers[j]
		info.Layers = append(info.Layers, LayerInfo{Name: n, Member: m.Name, Size: m.Size})
	}
	if info.Tags == nil {
		info.Tags = []distref.NamedTagged{}
	}
	return info
}

// Images lists the archive's images in archive order.
func (a *ReadableArchive) Images() []ImageInfo {
	imgs := a.r.Images()
	out := make([]ImageInfo, len(imgs))
	for i, img := range imgs {
		out[i] = infoOf(img)
	}
	return out
}

// Select returns the image that sel picks (see reference.Selector). No selector picks the
// only image and is ErrAmbiguous for several; a tag picks the image docker load leaves it
// on, the last naming it; an ID prefix matching two different images is ErrAmbiguous.
func (a *ReadableArchive) Select(sel reference.Selector) (ImageInfo, error) {
	img, err := a.r.Select(sel)
	if err != nil {
		return ImageInfo{}, err
	}
	return infoOf(img), nil
}

// SelectEach returns the images the selectors pick, in selector order, each once; with no
// selector, every image in archive order.
func (a *ReadableArchive) SelectEach(sels []reference.Selector) ([]ImageInfo, error) {
	imgs, err := a.r.SelectEach(sels)
	if err != nil {
		return nil, err
	}
	out := make([]ImageInfo, len(imgs))
	for i, img := range imgs {
		out[i] = infoOf(img)
	}
	return out, nil
}

// ImageDetails is what inspecting an image reads: its config, manifest and layers.
type ImageDetails struct {
	ImageInfo
	Config       []byte
	Architecture string
	OS           string
	Variant      string
	// Manifest is what the image source serves: the archive's own when it has one
	// (OwnManifest), otherwise one built from the config.
	Manifest     []byte
	ManifestType string
	OwnManifest  bool
	Layers       []LayerDetails
}

// LayerDetails describes one layer as served.
type LayerDetails struct {
	Name        string // member path from manifest.json (or the OCI blob used)
	Member      string // the regular file after links
	DiffID      digest.Digest
	Compression string // of the stored member: none, gzip, zstd, xz or bzip2
	Digest      digest.Digest
	Size        int64 // of the blob served; -1 when unknown
	MediaType   string
	// URLs are set for a foreign layer: not in the archive (Member is empty), fetched from
	// these by whoever pulls the image, as the archive's own manifest says.
	URLs []string
}

// Inspect reads the config of the image sel picks and describes how it is served.
func (a *ReadableArchive) Inspect(sel reference.Selector) (*ImageDetails, error) {
	img, err := a.r.Select(sel)
	if err != nil {
		return nil, err
	}
	return details(img)
}

// InspectPlatform is Inspect of platform p of the image sel picks: the image itself when it
// is p, another platform of its manifest list that the archive holds completely, or an error
// wrapping ErrPlatformNotFound that names the platforms the archive holds. An empty
// Variant matches any variant, as containers/image matches it.
func (a *ReadableArchive) InspectPlatform(sel reference.Selector, p imgspecv1.Platform) (*ImageDetails, error) {
	img, err := a.r.Select(sel)
	if err != nil {
		return nil, err
	}
	img, err = img.ForPlatform(platformChoice(p))
	if err != nil {
		return nil, err
	}
	return details(img)
}

// PlatformManifests returns the manifests of the manifest list of the image sel picks that
// a copy of platforms ps takes (see ListReference): for each platform the complete manifest
// containers/image's matching picks, and the complete attestations of those, in the list's
// order; nil for an image that is one manifest and every platform asked for. A platform the
// archive does not hold completely is an error wrapping ErrPlatformNotFound that names the
// platforms it holds.
func (a *ReadableArchive) PlatformManifests(sel reference.Selector, ps []imgspecv1.Platform) ([]digest.Digest, error) {
	img, err := a.r.Select(sel)
	if err != nil {
		return nil, err
	}
	syss := make([]*types.SystemContext, len(ps))
	for i, p := range ps {
		syss[i] = platformChoice(p)
	}
	return img.PlatformManifests(syss)
}

// platformChoice is p as containers/image's system context chooses a platform.
func platformChoice(p imgspecv1.Platform) *types.SystemContext {
	return &types.SystemContext{OSChoice: p.OS, ArchitectureChoice: p.Architecture, VariantChoice: p.Variant}
}

func details(img *tarfile.Image) (*ImageDetails, error) {
	res, err := img.Resolve()
	if err != nil {
		return nil, err
	}
	d := &ImageDetails{ImageInfo: infoOf(img), Config: res.Config, Architecture: res.Architecture, OS: res.OS,
		Variant: res.Variant, Manifest: res.Manifest, ManifestType: res.ManifestType, OwnManifest: res.OwnManifest}
	for _, l := range res.Layers {
		d.Layers = append(d.Layers, LayerDetails{Name: l.Name, Member: l.Member.Name, DiffID: l.DiffID,
			Compression: l.Compression.String(), Digest: l.Digest, Size: l.Size, MediaType: l.MediaType, URLs: l.URLs})
	}
	return d, nil
}

// Problem is one finding of Verify.
type Problem struct {
	// Image is the image's index, or -1 for a finding about the archive as a whole.
	Image int
	// Warning findings (unreferenced members, duplicate names) do not make the archive bad.
	Warning bool
	Err     error
}

func (p Problem) String() string {
	sev := "error"
	if p.Warning {
		sev = "warning"
	}
	if p.Image < 0 {
		return fmt.Sprintf("%s: %v", sev, p.Err)
	}
	return fmt.Sprintf("%s: image @%d: %v", sev, p.Image, p.Err)
}

// Verify checks every image: every referenced member exists, the config parses as docker
// parses it and its layer count matches, every layer matches its diffID (compressed layers
// are decompressed to check) and its stated digest and reads as a tar (ErrInvalidLayer), the
// archive's own OCI manifest is the image's, every tag is valid and names its tag. A config
// whose member name states another digest than its content's is a warning. Unreferenced members and
// duplicate names are reported as warnings. A seekable .tar.zst's stored member index must
// agree with the tar in its frames. Up to parallel images are read at once (0: 2).
func (a *ReadableArchive) Verify(ctx context.Context, parallel int) []Problem {
	var probs []Problem
	for _, n := range a.r.Index().Insecure() {
		// Extraction, and so docker load, puts it inside the root, where the index has it too.
		probs = append(probs, Problem{Image: -1, Warning: true, Err: fmt.Errorf("%w: member %q climbs out of the archive root; extraction puts it inside", ErrInsecurePath, n)})
	}
	for _, n := range a.r.Notes() {
		probs = append(probs, Problem{Image: -1, Warning: true, Err: errors.New(n)})
	}
	for _, n := range a.r.Index().Duplicates() {
		probs = append(probs, Problem{Image: -1, Warning: true, Err: fmt.Errorf("member %q appears more than once; the last one is used", n)})
	}
	for _, n := range a.r.Unreferenced() {
		probs = append(probs, Problem{Image: -1, Warning: true, Err: fmt.Errorf("member %q is not referenced by any image", n)})
	}
	if p, ok := trailerProblem(a.r); ok {
		probs = append(probs, p)
	}
	if err := a.r.StoredIndexMismatch(); err != nil {
		probs = append(probs, Problem{Image: -1, Err: err})
	}
	return append(probs, verifyImages(ctx, a.r.Images(), parallel)...)
}

// VerifyImage checks the one image sel picks (and, of a manifest list, the other platforms
// the archive holds completely) as Verify checks each image; it does not look at the rest of
// the archive. In a seekable .tar.zst it decompresses only that image's frames.
func (a *ReadableArchive) VerifyImage(ctx context.Context, sel reference.Selector) ([]Problem, error) {
	img, err := a.r.Select(sel)
	if err != nil {
		return nil, fmt.Errorf("archive %q: %w", a.path, err)
	}
	return verifyImages(ctx, []*tarfile.Image{img}, 1), nil
}

// verifyImages checks imgs, up to parallel (0: 2) at once, each member shared by several
// of them once.
func verifyImages(ctx context.Context, imgs []*tarfile.Image, parallel int) []Problem {
	perImage := make([][]Problem, len(imgs))
	if parallel <= 0 {
		parallel = 2
	}
	checks := &blobChecks{m: map[blobKey]*blobCheck{}}
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(parallel)
	for i, img := range imgs {
		g.Go(func() error {
			perImage[i] = verifyImage(ctx, img, checks)
			return nil
		})
	}
	_ = g.Wait()
	var checked []Problem
	for _, p := range perImage {
		checked = append(checked, p...)
	}
	return mergeShared(checked)
}

// trailerProblem reports what follows the end of the tar when it is more than padding: data
// (docker load ignores it, and so does every reader here), or more than the bound darc reads.
func trailerProblem(r *tarfile.Reader) (Problem, bool) {
	t, err := r.Trailer()
	if err != nil {
		return Problem{Image: -1, Err: fmt.Errorf("reading past the end of the tar: %w", err)}, true
	}
	amount := fmt.Sprintf("%d bytes", t.Read)
	if t.More {
		amount = fmt.Sprintf("more than %d bytes", t.Read)
	}
	switch {
	case t.NonZero:
		return Problem{Image: -1, Warning: true, Err: fmt.Errorf("%s of data follow the end of the tar; they are ignored, as docker load ignores them", amount)}, true
	case t.More:
		return Problem{Image: -1, Warning: true, Err: fmt.Errorf("%s of zeros follow the end of the tar; the rest of the input was not read", amount)}, true
	}
	return Problem{}, false
}

// blobChecks shares layer checks between the images of one Verify: images that share a layer
// member (a common base layer, or a hostile manifest.json naming one large member a million
// times) read it once.
type blobChecks struct {
	mu sync.Mutex
	m  map[blobKey]*blobCheck
}

// blobKey identifies a check: the same stored bytes checked against the same digests.
type blobKey struct {
	offset         int64
	digest, diffID digest.Digest
}

type blobCheck struct {
	once  sync.Once
	image int // the image whose check it was
	err   error
}

// do runs check once per key; for other images it returns the first one's result.
func (c *blobChecks) do(k blobKey, image int, check func() error) error {
	c.mu.Lock()
	bc := c.m[k]
	if bc == nil {
		bc = &blobCheck{image: image}
		c.m[k] = bc
	}
	c.mu.Unlock()
	bc.once.Do(func() { bc.err = check() })
	if bc.err != nil {
		return checkFailure{bc: bc, shared: bc.image != image, err: bc.err}
	}
	return nil
}

// checkFailure is a failed member check: reported on the image that started the check and,
// shared, on every other image using the member; Verify keeps the first report only and
// names the others there (see mergeShared).
type checkFailure struct {
	bc     *blobCheck
	shared bool
	err    error
}

func (f checkFailure) Error() string {
	if f.shared {
		return fmt.Sprintf("same member as image @%d: %v", f.bc.image, f.err)
	}
	return f.err.Error()
}

func (f checkFailure) Unwrap() error { return f.err }

// mergeShared reports each failure of a member several images share once: on the image
// that started its check, naming the others, instead of once per image.
func mergeShared(probs []Problem) []Problem {
	reported := map[*blobCheck]bool{} // failures reported on the image that started the check
	others := map[*blobCheck][]int{}  // the other images using the member
	for _, p := range probs {
		var f checkFailure
		if errors.As(p.Err, &f) {
			if f.shared {
				others[f.bc] = append(others[f.bc], p.Image)
			} else {
				reported[f.bc] = true
			}
		}
	}
	var out []Problem
	for _, p := range probs {
		var f checkFailure
		if errors.As(p.Err, &f) {
			if f.shared && reported[f.bc] {
				continue
			}
			if o := others[f.bc]; !f.shared && o != nil {
				p.Err = fmt.Errorf("%w (the same member in %s)", p.Err, imageList(o))
			}
		}
		out = append(out, p)
	}
	return out
}

// imageList names images for a message, in order, the first ten of many.
func imageList(images []int) string {
	slices.Sort(images) // the images were checked concurrently
	const most = 10
	labels := make([]string, 0, most)
	for _, img := range images[:min(len(images), most)] {
		labels = append(labels, fmt.Sprintf("@%d", img))
	}
	s := "images " + strings.Join(labels, ", ")
	if len(images) > most {
		s += fmt.Sprintf(" and %d more", len(images)-most)
	}
	return s
}

// verifyImage checks img and, when it is one platform of a manifest list, every other
// platform the archive holds completely: content reachable only through index.json is
// checked as strictly as manifest.json's.
func verifyImage(ctx context.Context, img *tarfile.Image, checks *blobChecks) []Problem {
	probs := verifyContent(ctx, img, checks)
	for _, other := range img.OtherPlatforms() {
		for _, p := range verifyContent(ctx, other.Image, checks) {
			p.Err = fmt.Errorf("platform %s (manifest %s): %w", other.Platform, other.Manifest, p.Err)
			probs = append(probs, p)
		}
	}
	return probs
}

// verifyContent checks one image: its tags, members, config, own manifest and layers.
func verifyContent(ctx context.Context, img *tarfile.Image, checks *blobChecks) []Problem {
	var probs []Problem
	add := func(err error) { probs = append(probs, Problem{Image: img.Index, Err: err}) }
	for _, t := range img.BadTags {
		add(fmt.Errorf("%w: tag %q is not a valid reference", ErrInvalidManifest, t))
	}
	if img.NamedID != "" && img.ID != "" && img.NamedID != img.ID {
		probs = append(probs, Problem{Image: img.Index, Warning: true, Err: fmt.Errorf("config %q: its name states %s, its content is %s; the image ID is %s, as docker load gives it", img.ConfigName, img.NamedID, img.ID, img.ID)})
	}
	for _, m := range img.MovedTags {
		probs = append(probs, Problem{Image: img.Index, Warning: true, Err: fmt.Errorf("tag %s is also on image @%d, later in the archive: docker load leaves it there, and this image without it", distref.FamiliarString(m.Tag), m.To)})
	}
	for _, p := range img.Problems {
		add(p)
	}
	if len(img.Problems) > 0 {
		return probs
	}
	res, err := img.Resolve()
	if err != nil {
		add(err)
		return probs
	}
	if res.OS != "" && res.OS != "linux" {
		// docker load on Linux refuses any other OS ("cannot load windows image on linux");
		// a registry, podman on another host or docker on Windows take it.
		probs = append(probs, Problem{Image: img.Index, Warning: true, Err: fmt.Errorf("the image's OS is %q: %w", res.OS, ErrForeignOS)})
	}
	seen := map[digest.Digest]bool{}
	for _, l := range res.Layers {
		if seen[l.Digest] {
			continue
		}
		seen[l.Digest] = true
		if err := ctx.Err(); err != nil {
			add(err)
			return probs
		}
		if l.URLs != nil {
			add(fmt.Errorf("layer %q: %w: a foreign layer, not in the archive: docker load fails on it; a registry push keeps it as a reference to %s", l.Name, ErrMemberNotFound, strings.Join(l.URLs, ", ")))
			continue
		}
		if err := checks.do(blobKey{l.Member.Offset, l.Digest, l.DiffID}, img.Index, func() error { return drain(img, l.Digest) }); err != nil {
			add(fmt.Errorf("layer %q: %w", l.Name, err))
		}
	}
	return probs
}

// drain reads one blob to its end with full verification.
func drain(img *tarfile.Image, d digest.Digest) error {
	rc, _, err := img.OpenBlob(d, true)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, rc)
	if cerr := rc.Close(); err == nil {
		err = cerr
	}
	return err
}

// Reference returns a reference to the image sel picks, sharing this archive: image sources
// made from it read the open archive and do not close it.
func (a *ReadableArchive) Reference(sel reference.Selector) (types.ImageReference, error) {
	if _, err := a.r.Select(sel); err != nil {
		return nil, err
	}
	ref, err := reference.New(a.path, sel)
	if err != nil {
		// The path of a stream ("-") or one with a colon cannot be written as a string
		// reference; the handle still identifies the archive.
		ref = reference.Reference{}
	}
	return archiveReference{ref: ref, sel: sel, path: a.path, reader: a}, nil
}

// ListReference is Reference for a copy of the whole manifest list the image is one platform
// of (an OCI index or Docker manifest list of the archive's OCI layout, as Docker 25+ and
// containerd write it): its image source serves the list as stored, every manifest of it the
// archive holds, and their blobs. It reports false, and returns Reference's reference, for an
// image that is one manifest. Copy it with copy.Image's ImageListSelection set to
// CopySpecificImages naming the manifests the archive holds completely (ListInfo), and
// SparseManifestListAction to StripSparseManifestList when that is not all of them.
func (a *ReadableArchive) ListReference(sel reference.Selector) (types.ImageReference, bool, error) {
	ref, err := a.Reference(sel)
	if err != nil {
		return nil, false, err
	}
	img, _ := a.r.Select(sel)
	if img.ManifestList() == nil {
		return ref, false, nil
	}
	r := ref.(archiveReference)
	r.list = true
	return r, true, nil
}

// References returns one reference per image, by index, in archive order.
func (a *ReadableArchive) References() []types.ImageReference {
	imgs := a.r.Images()
	out := make([]types.ImageReference, len(imgs))
	for i := range imgs {
		sel, _ := reference.IndexSelector(i)
		ref, _ := reference.New(a.path, sel)
		out[i] = archiveReference{ref: ref, sel: sel, path: a.path, reader: a}
	}
	return out
}

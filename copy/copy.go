package copy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	distref "github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	cicopy "go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"
	"golang.org/x/sync/errgroup"

	"github.com/darc-dev/darc/archive"
	"github.com/darc-dev/darc/reference"
)

// Errors callers branch on.
var (
	// ErrInvalidDestination means a destination reference or load destination cannot be
	// used.
	ErrInvalidDestination = errors.New("copy: invalid destination")
	// ErrInvalidSource means a source reference cannot be used.
	ErrInvalidSource = errors.New("copy: invalid source")
	// ErrUntagged means an image has no tag to derive a destination name from and none was
	// given; the image is skipped.
	ErrUntagged = errors.New("copy: untagged image needs a name")
	// ErrInvalidPlatform means a platform string is not os/arch[/variant], or a Platform
	// lacks its OS or architecture.
	ErrInvalidPlatform = errors.New("copy: invalid platform")
	// ErrInvalidOption means an option has a value it cannot take, or was given to a
	// function that does not use it (a Load option to Save, for example).
	ErrInvalidOption = errors.New("copy: invalid option")
	// ErrStreamUnsupported means LoadStream cannot load into a destination in one pass: a
	// dir: destination (one directory per image, written in order), a registry when this
	// containers/image's blob-info cache cannot be told how a staged blob is compressed, or
	// a layer whose media type forbids the compression the destination wants, or zstd:chunked
	// compression asked for. Load (after archive.Open or archive.OpenStream) handles these.
	ErrStreamUnsupported = errors.New("copy: destination cannot be loaded in a single pass")
)

// Option configures Image, Save, Merge, Load and LoadStream. An option that only some of them
// use (its doc says which) makes the others fail with ErrInvalidOption instead of being
// ignored.
type Option func(*options)

type options struct {
	sys      *types.SystemContext
	policy   *signature.Policy
	parallel int
	platform *Platform
	// allPlatforms asks for every platform of a manifest list (WithAllPlatforms); platforms
	// for some (WithPlatforms).
	allPlatforms bool
	platforms    []Platform
	progress     func(Event)
	names        map[int][]distref.NamedTagged
	baseOnly     bool
	report       io.Writer

	// LoadStream
	sourceName      string
	streamMemory    int64
	streamMemorySet bool
	staging         string

	// scoped names the options given that not every function uses, in the order given.
	scoped []scopedOption
}

// optionScope is the set of functions that use an option.
type optionScope int

const (
	forAll    optionScope = iota // Image, Save, Merge, Load and LoadStream
	forLoad                      // Load and LoadStream
	forStream                    // LoadStream
)

type scopedOption struct {
	name  string
	scope optionScope
}

// mark records that the option name, which only the functions of scope use, was given.
func (o *options) mark(name string, scope optionScope) {
	o.scoped = append(o.scoped, scopedOption{name, scope})
}

// makeOptions applies opts for Image, Save and Merge, which use no Load option.
func makeOptions(opts []Option) (options, error) { return makeOptionsFor(opts, forAll) }

// makeOptionsFor applies opts for a function that uses the options of scope and those of
// every scope before it (forStream: all of them).
func makeOptionsFor(opts []Option, scope optionScope) (options, error) {
	o := options{parallel: 2}
	for _, f := range opts {
		f(&o)
	}
	if o.parallel < 1 {
		return o, fmt.Errorf("%w: WithParallel(%d): must be at least 1", ErrInvalidOption, o.parallel)
	}
	if o.streamMemorySet && o.streamMemory < 1 {
		return o, fmt.Errorf("%w: WithStreamMemory(%d): must be at least 1", ErrInvalidOption, o.streamMemory)
	}
	if n := boolCount(o.platform != nil, o.allPlatforms, o.platforms != nil); n > 1 {
		return o, fmt.Errorf("%w: WithPlatform, WithPlatforms and WithAllPlatforms: choose one", ErrInvalidOption)
	}
	if o.platforms != nil && len(o.platforms) == 0 {
		return o, fmt.Errorf("%w: WithPlatforms(): no platform", ErrInvalidOption)
	}
	if p := o.platform; p != nil && (p.OS == "" || p.Architecture == "") {
		return o, fmt.Errorf("%w: %w: WithPlatform(%q): the OS and the architecture are both needed", ErrInvalidOption, ErrInvalidPlatform, p.String())
	}
	for _, p := range o.platforms {
		if p.OS == "" || p.Architecture == "" {
			return o, fmt.Errorf("%w: %w: WithPlatforms: %q: the OS and the architecture are both needed", ErrInvalidOption, ErrInvalidPlatform, p.String())
		}
	}
	for _, so := range o.scoped {
		if so.scope > scope {
			users := "Load and LoadStream"
			if so.scope == forStream {
				users = "LoadStream"
			}
			return o, fmt.Errorf("%w: %s applies only to %s", ErrInvalidOption, so.name, users)
		}
	}
	return o, nil
}

// WithSystemContext sets containers/image's settings for sources and destinations:
// credentials (AuthFilePath, DockerAuthConfig), TLS (DockerInsecureSkipTLSVerify), temp
// directories. The platform option overrides its OS/architecture choices.
func WithSystemContext(sys *types.SystemContext) Option { return func(o *options) { o.sys = sys } }

// WithPolicy sets the signature policy. The default accepts any image, as
// `skopeo --insecure-policy` does: archives carry no signatures to check. Each copy gets a
// policy context of its own, because a PolicyContext is not safe for concurrent use.
func WithPolicy(p *signature.Policy) Option { return func(o *options) { o.policy = p } }

// WithParallel sets how many images are copied at once (default 2). Layers within an image are
// copied in parallel by containers/image as well.
func WithParallel(n int) Option { return func(o *options) { o.parallel = n } }

// Platform is the platform to take from multi-platform sources, in the terms of an OCI image
// index: OS and Architecture are required, Variant is optional.
type Platform struct {
	OS, Architecture, Variant string
}

// String is os/arch or os/arch/variant.
func (p Platform) String() string {
	if p.Variant != "" {
		return p.OS + "/" + p.Architecture + "/" + p.Variant
	}
	return p.OS + "/" + p.Architecture
}

// ParsePlatform parses "os/arch[/variant]", such as "linux/amd64" or "linux/arm64/v8"; every
// part must be non-empty. Its errors wrap ErrInvalidPlatform.
func ParsePlatform(s string) (Platform, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || slices.Contains(parts, "") {
		return Platform{}, fmt.Errorf("%w: %q: expected os/arch[/variant], e.g. linux/arm64/v8", ErrInvalidPlatform, s)
	}
	p := Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p, nil
}

// WithPlatform chooses the platform to copy (see ParsePlatform); it is delivered or is an
// error. From a registry or an OCI layout, containers/image picks it from a manifest list
// (by default the host's). From an archive, an image that is that platform is copied as it
// is; another platform of the image's manifest list is copied when the archive holds it
// completely; anything else fails with archive.ErrPlatformNotFound, naming the platforms the
// archive holds. LoadStream refuses it (and WithPlatforms) with ErrStreamUnsupported: which
// manifests the platforms pick is known only once the manifest list is read. A Platform without OS or Architecture makes the function it is given
// to fail with ErrInvalidPlatform.
func WithPlatform(p Platform) Option { return func(o *options) { o.platform = &p } }

func boolCount(bs ...bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

// WithPlatforms copies these platforms of a manifest list, as a list of them alone (the
// others stripped, so its digest changes): from an archive, the complete manifest each
// platform picks (see WithPlatform) and its attestations, and an error wrapping
// archive.ErrPlatformNotFound for a platform the archive does not hold completely; from a
// registry or an OCI layout, every manifest of each platform's OS and architecture
// (containers/image's InstancePlatforms, which ignores the variant). The destination must
// hold manifest lists (a registry, an OCI layout, an archive of layout oci).
func WithPlatforms(ps ...Platform) Option {
	return func(o *options) { o.platforms = append([]Platform{}, ps...) }
}

// WithAllPlatforms copies every platform of a manifest list, keeping the list.
//   - From an archive (Load, Save, Merge, Image): an image that is one platform of a manifest
//     list (see archive.ListInfo) goes as the whole list, with the manifests the archive holds
//     completely; a list that names others is written without them (containers/image's
//     StripSparseManifestList), so its digest changes, and the Result says what was left out.
//     Load and Save (into LayoutOCI, which holds lists) do this by default too; WithPlatform
//     chooses one platform instead.
//   - From a registry or an OCI layout (Save, Image): every platform of a list
//     (containers/image's CopyAllImages); the default is the host's platform.
//
// A destination that holds one manifest per image (dir:, an archive in LayoutDocker) is an
// error. WithPlatform, WithPlatforms and WithAllPlatforms cannot be given together.
func WithAllPlatforms() Option { return func(o *options) { o.allPlatforms = true } }

// WithProgress receives progress events. The function is called from one goroutine of its
// own, one event at a time, never from a copying goroutine, and the copy never waits for it:
// while it is busy, events queue up. ImageStarted, BlobDone, ImageDone, ImageFailed and
// ImageSkipped are all delivered, each once, in the order they happened. A BlobProgress still
// queued is replaced by a newer one for the same blob of the same image, so a slow function
// sees fewer byte counts and the queue stays small.
//
// Save, Load, LoadStream, Merge and Image return only after the function has returned for
// every event of the call: it is never called after they return, so whatever it records is
// complete by then. In exchange it MUST NOT wait for that call to return (or for anything
// that happens only after it), which would deadlock; a slow function delays the return,
// never the copying.
func WithProgress(f func(Event)) Option { return func(o *options) { o.progress = f } }

// WithNames gives names to the image at index (its position in the archive) for Load and
// LoadStream, replacing its tags; the way to load an untagged image into a registry or an OCI
// layout. Other functions refuse it.
func WithNames(index int, names ...distref.NamedTagged) Option {
	return func(o *options) {
		o.mark("WithNames", forLoad)
		if o.names == nil {
			o.names = map[int][]distref.NamedTagged{}
		}
		o.names[index] = append(o.names[index], names...)
	}
}

// WithBaseNameOnly makes Load and LoadStream keep only the last element of each repository
// path under a registry destination's prefix: example.com/team/app:1 → HOST/PREFIX/app:1.
// Other functions refuse it.
func WithBaseNameOnly() Option {
	return func(o *options) {
		o.mark("WithBaseNameOnly", forLoad)
		o.baseOnly = true
	}
}

// WithReportWriter passes containers/image's own progress output (bars on a terminal) to w.
func WithReportWriter(w io.Writer) Option { return func(o *options) { o.report = w } }

// Result is what happened to one image.
type Result struct {
	Index        int      // position in the inputs
	Source       string   // source reference
	Destinations []string // references written, in order
	Tags         []string // tags given to the image, normalized
	ImageID      digest.Digest
	Manifest     digest.Digest // digest of the manifest written (of the first destination)
	Bytes        int64         // blob bytes read from the source
	// List is the manifest list the image is one platform of, if any (see archive.ListInfo).
	// Platforms are the platforms of it copied; Left, those not copied: the ones the archive
	// does not hold completely, left out of the list written (whose digest, Manifest, is then
	// not List), or, from a single pass, all but the image's own.
	List      digest.Digest
	Platforms []string
	Left      []string
	Skipped   bool
	Err       error
}

// run holds what one Save, Load or Merge shares across its images.
type run struct {
	o      options
	policy *signature.Policy
	events *progress // nil without WithProgress; stream.go tests it too
}

func newRun(o options) *run {
	r := &run{o: o, policy: o.policy}
	if r.policy == nil {
		r.policy = &signature.Policy{Default: []signature.PolicyRequirement{signature.NewPRInsecureAcceptAnything()}}
	}
	if o.progress != nil {
		r.events = newProgress(o.progress)
	}
	return r
}

func (r *run) sys() *types.SystemContext {
	var sys types.SystemContext
	if r.o.sys != nil {
		sys = *r.o.sys
	}
	if p := r.o.platform; p != nil {
		sys.OSChoice, sys.ArchitectureChoice, sys.VariantChoice = p.OS, p.Architecture, p.Variant
	}
	return &sys
}

// destinationSys is the system context of copying into dst. Into one of this module's
// archives, and for LoadStream's copies of images whose layers it has sent already, unless
// the caller chose a blob-info cache directory, copy.Image's blob-info cache is kept in
// memory: such a destination learns nothing from it that outlives the copy (an archive holds
// every blob it reuses itself; LoadStream offers every layer from its own cache), and the
// default cache, an SQLite file under /var/lib/containers or ~/.local/share/containers,
// commits (with fsync) after every blob, which, on the disk the archive is being written to,
// made merging 1.5 times slower. containers/image offers no option for a memory cache; it
// falls back to one when it cannot create the cache directory, which memoryOnlyCacheDir
// ensures.
func (r *run) destinationSys(dst types.ImageReference) *types.SystemContext {
	sys := r.sys()
	_, staged := dst.(stagedRef)
	if (staged || dst.Transport() == archive.Transport) && sys.BlobInfoCacheDir == "" {
		sys.BlobInfoCacheDir = memoryOnlyCacheDir
	}
	return sys
}

// memoryOnlyCacheDir is a directory no one can create: a path under the null device.
const memoryOnlyCacheDir = os.DevNull + "/darc-blob-info-cache"

// track reports the life of the image res describes as progress events around copy, which
// it runs: ImageStarted, then ImageDone, or ImageFailed with the error copy returned (which
// it records in res). A result that failed or was skipped before its copy started is
// reported as such (ImageFailed, ImageSkipped), and copy is not run.
func (r *run) track(res *Result, copy func() error) {
	if res.Err != nil {
		kind := ImageFailed
		if res.Skipped {
			kind = ImageSkipped
		}
		r.emit(Event{Kind: kind, Image: res.Index, Source: res.Source, Err: res.Err})
		return
	}
	r.emit(Event{Kind: ImageStarted, Image: res.Index, Source: res.Source})
	if err := copy(); err != nil {
		res.Err = err
		r.emit(Event{Kind: ImageFailed, Image: res.Index, Source: res.Source, Err: err})
		return
	}
	r.emit(Event{Kind: ImageDone, Image: res.Index, Source: res.Source})
}

// listCopy is what to take of a manifest list copied whole: the manifests the archive holds
// completely, and whether that is fewer than the list names; with no instances, every
// manifest of the list (a source other than an archive).
type listCopy struct {
	instances []digest.Digest
	filters   []cicopy.InstancePlatformFilter
	strip     bool
}

// copyImage copies src with copy.Image to every destination in dsts (the first fully, the
// others reusing its blobs) and fills res. With lc, src serves a manifest list, of which the
// manifests lc names are copied.
func (r *run) copyImage(ctx context.Context, src types.ImageReference, dsts []types.ImageReference, res *Result, lc *listCopy) error {
	pc, err := signature.NewPolicyContext(r.policy)
	if err != nil {
		return err
	}
	defer func() { _ = pc.Destroy() }()
	counted := &countingRef{ImageReference: src}
	for i, dst := range dsts {
		prog := make(chan types.ProgressProperties)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range prog {
				kind := BlobProgress
				if p.Event == types.ProgressEventDone {
					kind = BlobDone
				}
				if p.Event == types.ProgressEventNewArtifact || p.Event == types.ProgressEventSkipped {
					continue
				}
				r.emit(Event{Kind: kind, Image: res.Index, Source: res.Source, Digest: p.Artifact.Digest, Offset: int64(p.Offset), Size: p.Artifact.Size})
			}
		}()
		opts := &cicopy.Options{
			SourceCtx:        r.sys(),
			DestinationCtx:   r.destinationSys(dst),
			ReportWriter:     r.o.report,
			Progress:         prog,
			ProgressInterval: progressInterval,
		}
		switch {
		case lc != nil && lc.instances == nil && lc.filters == nil:
			opts.ImageListSelection = cicopy.CopyAllImages
		case lc != nil:
			opts.ImageListSelection, opts.Instances, opts.InstancePlatforms = cicopy.CopySpecificImages, lc.instances, lc.filters
			if lc.strip {
				opts.SparseManifestListAction = cicopy.StripSparseManifestList
			}
		}
		if dst.Transport().Name() == "oci" {
			// Layers bound for an OCI layout are compressed with pgzip, which already uses
			// every CPU for one layer and keeps tens of MB per layer in flight; compressing
			// up to 6 at once (copy.Image's default) gains no speed and costs over 100 MB.
			opts.MaxParallelDownloads = 1
		}
		mb, err := cicopy.Image(ctx, pc, dst, counted, opts)
		close(prog)
		wg.Wait()
		if err != nil {
			return fmt.Errorf("copying %s to %s: %w", res.Source, refString(dst), err)
		}
		res.Destinations = append(res.Destinations, refString(dst))
		if i == 0 {
			res.Manifest, _ = manifest.Digest(mb)
			if m, err := manifest.FromBlob(mb, manifest.GuessMIMEType(mb)); err == nil {
				res.ImageID = m.ConfigInfo().Digest
			}
		}
	}
	res.Bytes = counted.n.Load()
	return nil
}

// refString is "transport:reference".
func refString(ref types.ImageReference) string {
	return ref.Transport().Name() + ":" + ref.StringWithinTransport()
}

// parallelAfterFirst runs f for every index: the first alone, then the rest at most n at
// once. Images usually share base layers; once the first is done every later copy finds
// those blobs already at the destination (or, for registries, mountable), so a blob of the
// first image is transferred once instead of by several images racing for it. A blob only
// later images share can still be transferred by more than one of them.
func parallelAfterFirst(ctx context.Context, count, n int, f func(ctx context.Context, i int)) {
	if count == 0 {
		return
	}
	f(ctx, 0)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(n)
	for i := 1; i < count; i++ {
		g.Go(func() error {
			f(gctx, i)
			return nil
		})
	}
	_ = g.Wait()
}

// ImageError is one image's failure in the error a function of several images returns
// (errors.Join of them, in input order): errors.As finds the image's index and source.
type ImageError struct {
	Index  int
	Source string
	Err    error
}

func (e *ImageError) Error() string {
	return fmt.Sprintf("image %d (%s): %v", e.Index, e.Source, e.Err)
}
func (e *ImageError) Unwrap() error { return e.Err }

// joinErrors joins the errors of failed results, in order, each an *ImageError.
func joinErrors(results []Result) error {
	var errs []error
	for _, r := range results {
		if r.Err != nil && !r.Skipped {
			errs = append(errs, &ImageError{Index: r.Index, Source: r.Source, Err: r.Err})
		}
	}
	return errors.Join(errs...)
}

// progressInterval is how often containers/image reports byte progress of a blob.
const progressInterval = 200 * time.Millisecond

// Image copies one image from src to dst, as `darc cp` does.
func Image(ctx context.Context, src, dst types.ImageReference, opts ...Option) (Result, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return Result{}, err
	}
	r := newRun(o)
	defer r.close()
	res := Result{Source: refString(src)}
	r.track(&res, func() error { return r.image(ctx, src, dst, &res) })
	return res, res.Err
}

// image is Image's copy. From an archive into another archive it pairs the destination with
// the source (archive.CopyFrom), as Save does; into an OCI layout or a registry it does as
// Load does: darc compresses the layers, with reused writers (see reuse.go). Either way the
// archive is opened once, for that and copy.Image.
func (r *run) image(ctx context.Context, src, dst types.ImageReference, res *Result) error {
	_, _, sel, fromArchive := archive.SourceOf(src)
	toArchive := dst.Transport() == archive.Transport
	t := dst.Transport().Name()
	holdsLists := t == "oci" || t == "docker" || t == "oci-archive"
	if !fromArchive || !(toArchive || t == "oci" || t == "docker") {
		if fromArchive && (r.o.allPlatforms || r.o.platforms != nil) {
			return fmt.Errorf("%w: several platforms of an archive's image go only into an OCI layout or a registry", ErrInvalidOption)
		}
		lc, err := r.planListCopy(holdsLists, nil, sel, res)
		if err != nil {
			return err
		}
		return r.copyImage(ctx, src, []types.ImageReference{dst}, res, lc)
	}
	opened := openArchives{run: r}
	defer opened.close()
	a, src, err := opened.share(src)
	if err != nil {
		return err
	}
	lc, err := r.planListCopy(holdsLists, a, sel, res)
	if err != nil {
		return err
	}
	if lc != nil {
		if src, _, err = a.ListReference(sel); err != nil {
			return err
		}
	}
	reads := r.newBlobReads(res.Index, res.Source)
	if toArchive {
		if dst, err = archive.CopyFrom(dst, src, archive.WithCopyProgress(reads.progress)); err != nil {
			return err
		}
	} else {
		dst = reuseRef{ImageReference: dst, r: newLayerReuse(), src: src, progress: reads.progress}
	}
	err = r.copyImage(ctx, src, []types.ImageReference{dst}, res, lc)
	res.Bytes += reads.bytes()
	return err
}

// openArchive opens the archive at path, spooling it (a stream or compressed file) into the
// system context's BigFilesTemporaryDir, as the transport's own image source would.
func (r *run) openArchive(path string) (*archive.ReadableArchive, error) {
	var opts []archive.OpenOption
	if dir := r.sys().BigFilesTemporaryDir; dir != "" {
		opts = append(opts, archive.WithTempDir(dir))
	}
	return archive.Open(path, opts...)
}

// Source is one image to save, with the tags it gets in the archive. Nil Tags means the
// source's own: the tag of a registry reference, the tags of an archive image.
type Source struct {
	Ref  types.ImageReference
	Tags []distref.NamedTagged
}

// Save copies every source into w, each with its tags, and returns one Result per source,
// through containers/image's copy.Image. An archive named by several sources is opened
// once, and each of its images is paired with its destination (archive.CopyFrom): a layer w
// lacks is copied straight from the archive's member, read and hashed once. When every
// source is a docker-archive image (filtering or merging archives) the images go one at a
// time, since w writes one image at a time and a second copy at once would only spool;
// otherwise the first goes alone and then WithParallel at once.
// It does not commit w: the caller commits when the error is nil (or when it accepts the
// images that did succeed) and always closes it. The error joins every image's failure.
func Save(ctx context.Context, w *archive.WritableArchive, sources []Source, opts ...Option) ([]Result, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	r := newRun(o)
	defer r.close()
	opened := openArchives{run: r}
	defer opened.close()
	results := make([]Result, len(sources))
	srcs := make([]types.ImageReference, len(sources))
	dsts := make([]types.ImageReference, len(sources))
	lists := make([]*listCopy, len(sources))
	direct := make([]*blobReads, len(sources))
	fromArchives := 0
	// References are taken in input order before any copy starts: the writer orders images
	// by them, so the archive does not depend on which copy finishes first.
	for i, s := range sources {
		results[i] = Result{Index: i, Source: refString(s.Ref)}
		if _, _, _, ok := archive.SourceOf(s.Ref); ok {
			fromArchives++
		}
		srcs[i], dsts[i], direct[i], lists[i], results[i].Err = r.planSave(w, s, &opened, &results[i])
	}
	parallel := o.parallel
	if fromArchives == len(sources) {
		parallel = 1
	}
	parallelAfterFirst(ctx, len(sources), parallel, func(ctx context.Context, i int) {
		res := &results[i]
		r.track(res, func() error {
			err := r.copyImage(ctx, srcs[i], dsts[i:i+1], res, lists[i])
			res.Bytes += direct[i].bytes()
			return err
		})
	})
	return results, joinErrors(results)
}

// planSave returns the source and destination references of copying s into w, and, when
// s is copied as a manifest list, what of it (see planListCopy). The image of a
// docker-archive is taken from its archive opened once (in opened) and paired with its
// destination for a direct copy, whose reads are counted in reads.
func (r *run) planSave(w *archive.WritableArchive, s Source, opened *openArchives, res *Result) (src, dst types.ImageReference, reads *blobReads, lc *listCopy, err error) {
	a, _, sel, fromArchive := archive.SourceOf(s.Ref)
	if fromArchive {
		if a, s.Ref, err = opened.share(s.Ref); err != nil {
			return nil, nil, nil, nil, err
		}
	}
	if lc, err = r.planListCopy(w.Layout() == archive.LayoutOCI, a, sel, res); err != nil {
		return nil, nil, nil, nil, err
	}
	if lc != nil && fromArchive {
		if s.Ref, _, err = a.ListReference(sel); err != nil {
			return nil, nil, nil, nil, err
		}
	}
	if dst, err = s.reference(w, res); err != nil {
		return nil, nil, nil, nil, err
	}
	if fromArchive {
		reads = r.newBlobReads(res.Index, res.Source)
		dst, err = archive.CopyFrom(dst, s.Ref, archive.WithCopyProgress(reads.progress))
	}
	return s.Ref, dst, reads, lc, err
}

// onePlatform records in res that of manifest list l only the image's own platform (the one
// manifest.json names) is copied, and why.
func onePlatform(l *archive.ListInfo, res *Result, why string) {
	res.List = l.Digest
	for _, p := range l.Platforms {
		if p.Listed {
			res.Platforms = append(res.Platforms, p.Platform)
		} else {
			res.Left = append(res.Left, p.Platform+" ("+why+")")
		}
	}
}

// blobReads reports the blobs of one image that darc reads itself, beside copy.Image (copied
// straight from an archive, or compressed for the destination), as that image's progress,
// and counts the bytes read.
type blobReads struct {
	run    *run
	index  int
	source string
	mu     sync.Mutex
	last   map[digest.Digest]int64 // bytes read so far, by blob
	total  int64
}

func (r *run) newBlobReads(index int, source string) *blobReads {
	return &blobReads{run: r, index: index, source: source, last: map[digest.Digest]int64{}}
}

// progress is told that done of size bytes (-1: unknown) of blob d have been read. It
// reports BlobProgress, and BlobDone once a blob of known size has been read whole.
func (b *blobReads) progress(d digest.Digest, done, size int64) {
	b.mu.Lock()
	b.total += done - b.last[d]
	b.last[d] = done
	b.mu.Unlock()
	b.run.emit(Event{Kind: BlobProgress, Image: b.index, Source: b.source, Digest: d, Offset: done, Size: size})
	if size >= 0 && done == size {
		b.run.emit(Event{Kind: BlobDone, Image: b.index, Source: b.source, Digest: d, Offset: done, Size: size})
	}
}

// bytes is how many bytes were read; nil counts none.
func (b *blobReads) bytes() int64 {
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.total
}

// openArchives opens each archive path once, for every image of it that is copied.
type openArchives struct {
	run    *run
	byPath map[string]*archive.ReadableArchive
}

func (o *openArchives) open(path string) (*archive.ReadableArchive, error) {
	key := path
	if abs, err := filepath.Abs(path); err == nil && path != "-" {
		key = abs // a.tar and ./a.tar are one archive
	}
	if a := o.byPath[key]; a != nil {
		return a, nil
	}
	a, err := o.run.openArchive(path)
	if err != nil {
		return nil, err
	}
	if o.byPath == nil {
		o.byPath = map[string]*archive.ReadableArchive{}
	}
	o.byPath[key] = a
	return a, nil
}

// share returns ref, an image of a docker-archive, as a reference that shares its open
// archive: opened here, once per path, when ref was parsed from a string.
func (o *openArchives) share(ref types.ImageReference) (*archive.ReadableArchive, types.ImageReference, error) {
	a, path, sel, _ := archive.SourceOf(ref)
	if a == nil {
		var err error
		if a, err = o.open(path); err != nil {
			return nil, nil, err
		}
	}
	ref, err := a.Reference(sel)
	return a, ref, err
}

func (o *openArchives) close() {
	for _, a := range o.byPath {
		_ = a.Close()
	}
}

// Load copies images of a to dest: all of them, or those the selectors pick (in selector
// order, each once). Every tag of an image is written; its blobs are transferred once.
// Untagged images without WithNames are skipped and reported (Result.Skipped, ErrUntagged)
// for registry and OCI destinations. The error joins every image's failure.
func Load(ctx context.Context, a *archive.ReadableArchive, dest Destination, selectors []reference.Selector, opts ...Option) ([]Result, error) {
	o, err := makeOptionsFor(opts, forLoad)
	if err != nil {
		return nil, err
	}
	picked, err := a.SelectEach(selectors)
	if err != nil {
		return nil, err
	}
	if err := dest.makeDir(); err != nil {
		return nil, err
	}
	r := newRun(o)
	defer r.close()
	results := make([]Result, len(picked))
	reuse := newLayerReuse() // layers compressed into an oci: layout, for the later images
	refs := make([][]types.ImageReference, len(picked))
	srcs := make([]types.ImageReference, len(picked))
	lists := make([]*listCopy, len(picked))
	reads := make([]*blobReads, len(picked))
	for i, info := range picked {
		sel, _ := reference.IndexSelector(info.Index)
		res := &results[i]
		*res, refs[i] = o.planLoad(dest, a.Path(), info)
		if res.Err != nil {
			continue
		}
		if lists[i], res.Err = r.planListCopy(dest.transport == "docker" || dest.transport == "oci", a, sel, res); res.Err != nil {
			continue
		}
		if lists[i] != nil {
			srcs[i], _, err = a.ListReference(sel)
		} else {
			srcs[i], err = a.Reference(sel)
		}
		if err != nil {
			res.Err = err
			continue
		}
		if dest.transport == "oci" || dest.transport == "docker" {
			reads[i] = r.newBlobReads(res.Index, res.Source)
			for k, ref := range refs[i] {
				refs[i][k] = reuseRef{ImageReference: ref, r: reuse, src: srcs[i], progress: reads[i].progress}
			}
		}
	}
	parallelAfterFirst(ctx, len(picked), dest.parallel(o.parallel), func(ctx context.Context, i int) {
		res := &results[i]
		r.track(res, func() error {
			err := r.copyImage(ctx, srcs[i], refs[i], res, lists[i])
			res.Bytes += reads[i].bytes()
			return err
		})
	})
	return results, joinErrors(results)
}

// planLoad starts the Result of loading image img (of the archive called name) into dest
// and works out its destination references: from its tags, or the names WithNames gives it.
// An untagged image is skipped (Result.Skipped, ErrUntagged) unless dest needs no name. An
// image whose RepoTags hold an entry that is no tagged reference fails, as docker load does,
// unless WithNames replaces its tags.
func (o options) planLoad(dest Destination, name string, img archive.ImageInfo) (Result, []types.ImageReference) {
	index, tags := img.Index, img.Tags
	res := Result{Index: index, Source: fmt.Sprintf("%s:%s:@%d", reference.Transport, name, index)}
	if names, ok := o.names[index]; ok {
		tags = names
	} else if len(img.BadTags) > 0 {
		res.Err = fmt.Errorf("image @%d: %w: tag %q is not a valid NAME:TAG reference (docker load refuses it too); name the image to load it", index, archive.ErrInvalidManifest, img.BadTags[0])
		return res, nil
	}
	for _, t := range tags {
		res.Tags = append(res.Tags, t.String())
	}
	if len(tags) == 0 && dest.transport != "dir" {
		res.Skipped = true
		res.Err = fmt.Errorf("%w: image @%d (%s) has no tag; name it to load it", ErrUntagged, index, img.ID)
		return res, nil
	}
	refs, err := dest.references(index, tags, o.baseOnly)
	res.Err = err
	return res, refs
}

// planListCopy decides whether an image is copied as a manifest list, and which manifests of
// it, into a destination that holds lists or not; a is the image's archive (sel picks it
// there), nil for any other source. Without an option, an archive's image that is one
// platform of a list goes as the whole list where lists are held, and as that platform
// elsewhere, with a note in res; another source's image goes as containers/image copies it
// by default. See WithPlatform, WithPlatforms and WithAllPlatforms for the options.
func (r *run) planListCopy(holdsLists bool, a *archive.ReadableArchive, sel reference.Selector, res *Result) (*listCopy, error) {
	o := r.o
	if o.platform != nil {
		return nil, nil
	}
	if !holdsLists && (o.allPlatforms || o.platforms != nil) {
		return nil, fmt.Errorf("%w: several platforms were asked for, and the destination holds one manifest per image", ErrInvalidOption)
	}
	if a == nil {
		switch {
		case o.allPlatforms:
			return &listCopy{}, nil
		case o.platforms != nil:
			lc := &listCopy{strip: true}
			for _, p := range o.platforms {
				lc.filters = append(lc.filters, cicopy.InstancePlatformFilter{OS: p.OS, Architecture: p.Architecture})
			}
			return lc, nil
		}
		return nil, nil
	}
	info, err := a.Select(sel)
	if err != nil {
		return nil, err
	}
	if o.platforms != nil {
		return platformsOf(a, sel, info, o.platforms, res)
	}
	switch {
	case info.List == nil:
		return nil, nil
	case holdsLists:
		return planListOf(info.List, res), nil
	}
	onePlatform(info.List, res, "the destination holds one platform per image")
	return nil, nil
}

// platformsOf is the copy of platforms ps of an archive's image (see WithPlatforms).
func platformsOf(a *archive.ReadableArchive, sel reference.Selector, info archive.ImageInfo, ps []Platform, res *Result) (*listCopy, error) {
	specs := make([]imgspecv1.Platform, len(ps))
	for i, p := range ps {
		specs[i] = imgspecv1.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}
	}
	ds, err := a.PlatformManifests(sel, specs)
	if err != nil || ds == nil {
		return nil, err
	}
	res.List = info.List.Digest
	for _, p := range info.List.Platforms {
		if slices.Contains(ds, p.Manifest) {
			res.Platforms = append(res.Platforms, p.Platform)
		} else {
			res.Left = append(res.Left, p.Platform+" (not asked for)")
		}
	}
	return &listCopy{instances: ds, strip: len(ds) < info.List.Manifests}, nil
}

// planListOf is the copy of manifest list l with every manifest the archive holds
// completely, and records in res which platforms that takes and leaves.
func planListOf(l *archive.ListInfo, res *Result) *listCopy {
	res.List = l.Digest
	for _, p := range l.Platforms {
		if p.Complete() {
			res.Platforms = append(res.Platforms, p.Platform)
		} else {
			res.Left = append(res.Left, p.String())
		}
	}
	return &listCopy{instances: l.Complete, strip: len(l.Complete) < l.Manifests}
}

// reference makes the reference in w that s is copied to, with its tags (the source's own
// when s.Tags is nil), and records the tags in res.
func (s Source) reference(w *archive.WritableArchive, res *Result) (types.ImageReference, error) {
	tags := s.Tags
	if tags == nil {
		var err error
		if tags, err = archive.ImageTags(s.Ref); err != nil {
			return nil, err
		}
	}
	res.Tags = nil
	for _, t := range tags {
		res.Tags = append(res.Tags, t.String())
	}
	return w.NewReference(tags...)
}

// Merge copies every image of every input archive, in order, into w with its tags. Blobs go
// across as they are stored (compressed layers decompressed into LayoutDocker, which stores
// layers uncompressed) and are verified on the way; a blob already in w is not copied again.
// Like Save, it does not commit w.
//
// Images go one at a time through copy.Image, each paired with its archive for a direct
// copy (see Save): each new blob is read once and hashed once while it is written.
func Merge(ctx context.Context, w *archive.WritableArchive, inputs []*archive.ReadableArchive, opts ...Option) ([]Result, error) {
	var sources []Source
	for _, a := range inputs {
		for _, ref := range a.References() {
			sources = append(sources, Source{Ref: ref})
		}
	}
	return Save(ctx, w, sources, opts...)
}

// countingRef wraps a source reference so the bytes its blobs yield are counted.
type countingRef struct {
	types.ImageReference
	n atomic.Int64
}

func (c *countingRef) NewImageSource(ctx context.Context, sys *types.SystemContext) (types.ImageSource, error) {
	src, err := c.ImageReference.NewImageSource(ctx, sys)
	if err != nil {
		return nil, err
	}
	return &countingSource{ImageSource: src, n: &c.n}, nil
}

type countingSource struct {
	types.ImageSource
	n *atomic.Int64
}

func (s *countingSource) GetBlob(ctx context.Context, info types.BlobInfo, cache types.BlobInfoCache) (io.ReadCloser, int64, error) {
	rc, size, err := s.ImageSource.GetBlob(ctx, info, cache)
	if err != nil {
		return nil, 0, err
	}
	return &countingReader{ReadCloser: rc, n: s.n}, size, nil
}

type countingReader struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}

package archive

import (
	"bytes"
	"context"
	"fmt"
	"io"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/image"
	"go.podman.io/image/v5/types"

	"github.com/darc-dev/darc/internal/tarfile"
	"github.com/darc-dev/darc/reference"
)

// StreamedArchive is a docker-archive read once, front to back, by ReadStream, for a reader
// that takes each layer as it passes (a single-pass load): nothing is written to disk. It
// holds the archive's metadata (manifest.json, configs, OCI manifests and other small members)
// in memory and what it learned of every other member as it passed, whose bytes went to
// ReadStream's forward function and cannot be read again.
//
// A StreamedArchive is not modified once ReadStream returns; it is safe for concurrent use.
type StreamedArchive struct {
	r *tarfile.Reader
}

// StreamMember is a member of a streamed archive.
type StreamMember struct {
	Name string
	// Offset is where the member's data starts in the (decompressed) archive: it identifies
	// the member.
	Offset int64
	Size   int64
}

// StreamOption configures ReadStream.
type StreamOption func(*streamOptions)

type streamOptions struct {
	maxMemory    int64
	maxMemorySet bool
}

// WithMaxStreamMemory bounds the metadata ReadStream keeps in memory (default 64 MiB); past
// it ReadStream fails with ErrTooLarge. It must be at least 1.
func WithMaxStreamMemory(n int64) StreamOption {
	return func(o *streamOptions) { o.maxMemory, o.maxMemorySet = n, true }
}

// ReadStream reads a docker-archive from in once, decompressing it on the fly when its first
// bytes say it is compressed (gzip, zstd, xz or bzip2). The images are then derived exactly
// as Open derives them, so selectors pick the same images.
//
// forward receives, one at a time and in archive order, the stored bytes of every regular
// member that is not kept in memory. It runs on a goroutine of its own while ReadStream goes
// on hashing (and, for a compressed member, decompressing) the same bytes. It should read
// body to the end; failures are its own to record. Nil discards the bodies.
func ReadStream(ctx context.Context, name string, in io.Reader, forward func(m StreamMember, body io.Reader), opts ...StreamOption) (*StreamedArchive, error) {
	var o streamOptions
	for _, f := range opts {
		f(&o)
	}
	if o.maxMemorySet && o.maxMemory < 1 {
		return nil, fmt.Errorf("archive %q: WithMaxStreamMemory(%d): the limit must be at least 1", name, o.maxMemory)
	}
	var fwd func(tarfile.Member, tarfile.Compression, io.Reader)
	if forward != nil {
		fwd = func(m tarfile.Member, _ tarfile.Compression, body io.Reader) { forward(streamMember(m), body) }
	}
	r, err := tarfile.ReadStream(ctx, name, in, tarfile.StreamOptions{
		Limits:  tarfile.Limits{MaxStreamMemory: o.maxMemory},
		Forward: fwd,
	})
	if err != nil {
		return nil, err
	}
	return &StreamedArchive{r: r}, nil
}

func streamMember(m tarfile.Member) StreamMember {
	return StreamMember{Name: m.Name, Offset: m.Offset, Size: m.Size}
}

// Name is the name the archive was read under.
func (s *StreamedArchive) Name() string { return s.r.Name() }

// Kept returns the bytes of a member that was kept in memory instead of forwarded; the slice
// must not be modified.
func (s *StreamedArchive) Kept(m StreamMember) ([]byte, bool) {
	return s.r.KeptData(tarfile.Member{Name: m.Name, Offset: m.Offset, Size: m.Size})
}

// StreamedImage is an image of a StreamedArchive.
type StreamedImage struct {
	ImageInfo
	s   *StreamedArchive
	img *tarfile.Image
}

// SelectEach returns the images sels pick, as ReadableArchive.SelectEach does.
func (s *StreamedArchive) SelectEach(sels []reference.Selector) ([]StreamedImage, error) {
	imgs, err := s.r.SelectEach(sels)
	if err != nil {
		return nil, err
	}
	out := make([]StreamedImage, len(imgs))
	for i, img := range imgs {
		out[i] = StreamedImage{ImageInfo: infoOf(img), s: s, img: img}
	}
	return out, nil
}

// StreamedLayer is a layer of a streamed image: the digest the image's manifest gives it, and
// the member it was stored in.
type StreamedLayer struct {
	Name   string // as manifest.json names it
	Digest digest.Digest
	Member StreamMember
}

// StreamedContent is what a verified streamed image holds.
type StreamedContent struct {
	Layers     []StreamedLayer
	ConfigSize int64
}

// Verify checks the image against what its members held as they passed (every layer hashes
// to the digest its manifest gives it and decompresses to its config's diffID; the config
// matches the image ID; a mismatch wraps ErrDigestMismatch) and returns its content.
func (i StreamedImage) Verify() (StreamedContent, error) {
	if err := i.img.VerifyStreamed(); err != nil {
		return StreamedContent{}, err
	}
	res, err := i.img.Resolve()
	if err != nil {
		return StreamedContent{}, err
	}
	out := StreamedContent{Layers: make([]StreamedLayer, len(res.Layers)), ConfigSize: int64(len(res.Config))}
	for j, l := range res.Layers {
		out.Layers[j] = StreamedLayer{Name: l.Name, Digest: l.Digest, Member: streamMember(l.Member)}
	}
	return out, nil
}

// Reference returns the image as a containers/image source reference whose image source
// serves its manifest and config (the ones an image source of the same archive opened with
// Open serves) from memory. It serves no layer: a copy from it (copy.Image) must find every
// layer at its destination already, sent there by ReadStream's forward function.
func (i StreamedImage) Reference() (types.ImageReference, error) {
	res, err := i.img.Resolve()
	if err != nil {
		return nil, err
	}
	sel, _ := reference.IndexSelector(i.Index)
	ref, err := reference.New(i.s.Name(), sel)
	if err != nil {
		ref = reference.Reference{} // "-" and paths with a colon have no string form
	}
	ar := NewReference(ref).(archiveReference)
	ar.path, ar.sel = i.s.Name(), sel
	return streamedRef{archiveReference: ar, res: res, id: i.ID}, nil
}

// Platforms returns, for an image that is one platform of a manifest list, the platforms of
// the list the archive holds completely, the image itself first, attestations left out; nil
// for an image that is one manifest.
func (i StreamedImage) Platforms() []StreamedImage {
	if i.List == nil {
		return nil
	}
	out := []StreamedImage{i}
	for _, p := range i.img.OtherPlatforms() {
		out = append(out, StreamedImage{ImageInfo: infoOf(p.Image), s: i.s, img: p.Image})
	}
	return out
}

// ListReference returns the manifest list the image is one platform of as a source reference
// whose image source serves the list, its manifests and the configs of platforms from memory.
// Like Reference, it serves no layer; platforms are the image's Platforms.
func (i StreamedImage) ListReference(platforms []StreamedImage) (types.ImageReference, error) {
	c, ok := i.img.ListContent()
	if !ok {
		return nil, fmt.Errorf("archive %q: %s: %w: the image is not one platform of a manifest list", i.s.Name(), i.img.Name(), ErrImageNotFound)
	}
	ref, err := i.Reference()
	if err != nil {
		return nil, err
	}
	configs := map[digest.Digest][]byte{}
	for _, p := range platforms {
		res, err := p.img.Resolve()
		if err != nil {
			return nil, err
		}
		configs[p.ID] = res.Config
	}
	return streamedListRef{streamedRef: ref.(streamedRef), list: c, configs: configs}, nil
}

// streamedListRef is the manifest list of a streamed image as a source reference (see
// StreamedImage.ListReference).
type streamedListRef struct {
	streamedRef
	list    *tarfile.ListContent
	configs map[digest.Digest][]byte
}

func (r streamedListRef) NewImageSource(ctx context.Context, sys *types.SystemContext) (types.ImageSource, error) {
	return &streamedListSource{streamedSource: streamedSource{ref: r.streamedRef}, r: r}, nil
}

func (r streamedListRef) NewImage(ctx context.Context, sys *types.SystemContext) (types.ImageCloser, error) {
	src, err := r.NewImageSource(ctx, sys)
	if err != nil {
		return nil, err
	}
	return image.FromSource(ctx, sys, src)
}

// streamedListSource serves a streamed manifest list, its manifests and configs.
type streamedListSource struct {
	streamedSource
	r streamedListRef
}

func (s *streamedListSource) Reference() types.ImageReference { return s.r }

func (s *streamedListSource) GetManifest(ctx context.Context, instanceDigest *digest.Digest) ([]byte, string, error) {
	if instanceDigest == nil {
		l := s.r.list.List()
		return l.Data, l.MediaType, nil
	}
	return s.r.list.Manifest(*instanceDigest)
}

func (s *streamedListSource) GetBlob(ctx context.Context, info types.BlobInfo, cache types.BlobInfoCache) (io.ReadCloser, int64, error) {
	if cfg, ok := s.r.configs[info.Digest]; ok {
		return io.NopCloser(bytes.NewReader(cfg)), int64(len(cfg)), nil
	}
	// An attestation's blobs, small enough to have been kept in memory as they passed.
	return s.r.list.OpenBlob(info.Digest)
}

// streamedRef is an image of a StreamedArchive as a source reference (see
// StreamedImage.Reference).
type streamedRef struct {
	archiveReference
	res *tarfile.Resolved
	id  digest.Digest
}

func (r streamedRef) NewImageSource(ctx context.Context, sys *types.SystemContext) (types.ImageSource, error) {
	return &streamedSource{ref: r}, nil
}

func (r streamedRef) NewImage(ctx context.Context, sys *types.SystemContext) (types.ImageCloser, error) {
	src, err := r.NewImageSource(ctx, sys)
	if err != nil {
		return nil, err
	}
	return image.FromSource(ctx, sys, src)
}

func (r streamedRef) NewImageDestination(ctx context.Context, sys *types.SystemContext) (types.ImageDestination, error) {
	return nil, fmt.Errorf("archive %q: a streamed archive cannot be written to", r.path)
}

// streamedSource serves a streamed image's manifest and config from memory.
type streamedSource struct{ ref streamedRef }

var _ types.ImageSource = (*streamedSource)(nil)

func (s *streamedSource) Reference() types.ImageReference { return s.ref }
func (s *streamedSource) Close() error                    { return nil }

func (s *streamedSource) GetManifest(ctx context.Context, instanceDigest *digest.Digest) ([]byte, string, error) {
	if instanceDigest != nil {
		return nil, "", fmt.Errorf("archive %q: %w: no manifest %s (the image is not a manifest list)", s.ref.path, ErrImageNotFound, *instanceDigest)
	}
	return s.ref.res.Manifest, s.ref.res.ManifestType, nil
}

func (s *streamedSource) HasThreadSafeGetBlob() bool { return true }

func (s *streamedSource) GetBlob(ctx context.Context, info types.BlobInfo, cache types.BlobInfoCache) (io.ReadCloser, int64, error) {
	if info.Digest != s.ref.id {
		return nil, 0, fmt.Errorf("archive %q: %w: blob %s of a streamed archive was only forwarded", s.ref.path, ErrMemberNotFound, info.Digest)
	}
	return io.NopCloser(bytes.NewReader(s.ref.res.Config)), int64(len(s.ref.res.Config)), nil
}

func (s *streamedSource) GetSignatures(ctx context.Context, instanceDigest *digest.Digest) ([][]byte, error) {
	return nil, nil
}

func (s *streamedSource) LayerInfosForCopy(ctx context.Context, instanceDigest *digest.Digest) ([]types.BlobInfo, error) {
	return nil, nil
}

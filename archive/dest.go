package archive

import (
	"context"
	"errors"
	"fmt"
	"io"

	distref "github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/types"

	"github.com/darc-dev/darc/internal/layout"
	"github.com/darc-dev/darc/internal/tarfile"
	"github.com/darc-dev/darc/reference"
)

// imageDestination writes one image into a WritableArchive. copy.Image calls its methods one
// at a time (HasThreadSafePutBlob is false); the archive serializes between destinations.
type imageDestination struct {
	ref   archiveReference
	a     *WritableArchive
	slot  *slot
	owned bool          // the archive was created for this destination: Commit and Close finish it
	from  *directSource // set by CopyFrom: layers may be copied straight from there

	config       []byte
	configDigest digest.Digest
	manifest     []byte
	manifestType string
	parsed       manifest.Manifest
	// A manifest list (LayoutOCI): its manifests as copy.Image put them, by digest, then the
	// list itself.
	instances map[digest.Digest]instanceManifest
	list      []byte
	listType  string
	committed bool
	closed    bool
}

// instanceManifest is one manifest of a manifest list being written.
type instanceManifest struct {
	data   []byte
	mt     string
	parsed manifest.Manifest
}

var _ types.ImageDestination = (*imageDestination)(nil)

// newDestination returns a destination for r, whose writer is set.
func (a *WritableArchive) newDestination(r archiveReference, sys *types.SystemContext, owned bool) (*imageDestination, error) {
	extra, err := additionalTags(sys)
	if err != nil {
		return nil, fmt.Errorf("archive %q: %w", a.name, err)
	}
	s, err := a.bindSlot(r.slot, extra)
	if err != nil {
		return nil, err
	}
	return &imageDestination{ref: r, a: a, slot: s, owned: owned, from: r.from}, nil
}

// additionalTags converts sys.DockerArchiveAdditionalTags, which containers/image's own
// docker-archive transport honours too.
func additionalTags(sys *types.SystemContext) ([]distref.NamedTagged, error) {
	if sys == nil {
		return nil, nil
	}
	var out []distref.NamedTagged
	for _, t := range sys.DockerArchiveAdditionalTags {
		n, err := reference.NormalizeTag(t.String())
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// newStandaloneDestination serves a reference parsed from a string: a single-image archive
// created here, finished by the image's Commit and released by the destination's Close.
func newStandaloneDestination(r archiveReference, sys *types.SystemContext) (*imageDestination, error) {
	ref := r.ref
	if ref.Path() == "" {
		var err error
		if ref, err = reference.New(r.path, r.sel); err != nil {
			return nil, err
		}
	}
	if err := ref.ForWriting(); err != nil {
		return nil, err
	}
	var opts []CreateOption
	if sys != nil && sys.BigFilesTemporaryDir != "" {
		opts = append(opts, WithWriteTempDir(sys.BigFilesTemporaryDir))
	}
	a, err := Create(r.path, opts...)
	if err != nil {
		return nil, err
	}
	var tags []distref.NamedTagged
	if t := r.sel.Tag(); t != nil {
		tags = append(tags, t)
	}
	wref, err := a.NewReference(tags...)
	if err == nil {
		var d *imageDestination
		if d, err = a.newDestination(wref.(archiveReference), sys, true); err == nil {
			d.ref, d.from = r, r.from
			return d, nil
		}
	}
	return nil, errors.Join(err, a.Close())
}

func (d *imageDestination) Reference() types.ImageReference { return d.ref }

// Close gives up the image unless it was committed. For a destination made from a string
// reference it also finishes the archive: removes it unless the image was committed.
func (d *imageDestination) Close() error {
	if d.closed {
		return nil
	}
	d.closed = true
	if !d.committed {
		d.a.finishSlot(d.slot, nil)
	}
	if d.owned {
		return d.a.Close()
	}
	return nil
}

// SupportedManifestMIMETypes: both layouts keep a source manifest of either single-image
// type; LayoutOCI prefers OCI manifests and also holds manifest lists (OCI indexes and Docker
// manifest lists) in its OCI layout, which LayoutDocker cannot.
func (d *imageDestination) SupportedManifestMIMETypes() []string {
	if d.a.layout == LayoutOCI {
		return []string{imgspecv1.MediaTypeImageManifest, manifest.DockerV2Schema2MediaType, imgspecv1.MediaTypeImageIndex, manifest.DockerV2ListMediaType}
	}
	return []string{manifest.DockerV2Schema2MediaType, imgspecv1.MediaTypeImageManifest}
}

func (d *imageDestination) SupportsSignatures(ctx context.Context) error {
	return fmt.Errorf("archive %q: storing signatures is not supported", d.a.name)
}

// DesiredLayerCompression: LayoutDocker stores layers uncompressed and names them by diffID,
// so copy.Image decompresses for it. LayoutOCI stores blobs as the source has them, which keeps
// the source's manifest and its digest.
func (d *imageDestination) DesiredLayerCompression() types.LayerCompression {
	if d.a.layout == LayoutOCI {
		return types.PreserveOriginal
	}
	return types.Decompress
}

func (d *imageDestination) AcceptsForeignLayerURLs() bool        { return false }
func (d *imageDestination) MustMatchRuntimeOS() bool             { return false }
func (d *imageDestination) IgnoresEmbeddedDockerReference() bool { return false }

// HasThreadSafePutBlob is false so that copy.Image sends one image's layers one at a time, in
// manifest order, which makes the archive's member order reproducible. Blobs of different
// images may still arrive concurrently; the archive orders them (see WritableArchive).
func (d *imageDestination) HasThreadSafePutBlob() bool { return false }

func (d *imageDestination) usable() error {
	if d.closed {
		return fmt.Errorf("archive %q: reference #%d: destination closed", d.a.name, d.slot.seq)
	}
	if d.committed {
		return fmt.Errorf("archive %q: reference #%d: image already committed", d.a.name, d.slot.seq)
	}
	return nil
}

// label names the image in messages.
func (d *imageDestination) label() string {
	return fmt.Sprintf("archive %q: reference #%d", d.a.name, d.slot.seq)
}

// PutBlob writes a layer or config. A blob this archive already has is not written again.
func (d *imageDestination) PutBlob(ctx context.Context, stream io.Reader, info types.BlobInfo, cache types.BlobInfoCache, isConfig bool) (types.BlobInfo, error) {
	if err := d.usable(); err != nil {
		return types.BlobInfo{}, err
	}
	if info.Digest != "" {
		if err := checkDigest(info.Digest); err != nil {
			return types.BlobInfo{}, fmt.Errorf("%s: %w", d.label(), err)
		}
	}
	r := ctxReader{ctx: ctx, r: stream}
	if isConfig {
		return d.putConfig(r, info)
	}
	bi, err := d.putLayer(r, info)
	if err != nil {
		return types.BlobInfo{}, fmt.Errorf("%s: layer %s: %w", d.label(), blobLabel(info.Digest), err)
	}
	return bi, nil
}

func blobLabel(d digest.Digest) string {
	if d == "" {
		return "(digest not known yet)"
	}
	return d.String()
}

func (d *imageDestination) putConfig(r io.Reader, info types.BlobInfo) (types.BlobInfo, error) {
	data, err := io.ReadAll(io.LimitReader(r, d.a.maxConfig+1))
	if err != nil {
		return types.BlobInfo{}, fmt.Errorf("%s: reading config: %w", d.label(), err)
	}
	if int64(len(data)) > d.a.maxConfig {
		return types.BlobInfo{}, fmt.Errorf("%s: %w: config larger than %d bytes", d.label(), ErrTooLarge, d.a.maxConfig)
	}
	got := digest.FromBytes(data)
	if info.Digest != "" && got != info.Digest {
		return types.BlobInfo{}, fmt.Errorf("%s: config: %w: content is %s, expected %s", d.label(), ErrDigestMismatch, got, info.Digest)
	}
	if info.Size >= 0 && int64(len(data)) != info.Size {
		return types.BlobInfo{}, fmt.Errorf("%s: config: %w: %d bytes, expected %d", d.label(), ErrSizeMismatch, len(data), info.Size)
	}
	a := d.a
	a.mu.Lock()
	if err := a.usableLocked(); err != nil {
		a.mu.Unlock()
		return types.BlobInfo{}, err
	}
	if _, isNew := a.registerLocked(&member{name: a.configName(got), digest: got, size: int64(len(data)), data: data}); !isNew {
		a.stats.Reused++
	}
	a.mu.Unlock()
	a.addEntry(d.slot, a.configName(got))
	d.config, d.configDigest = data, got
	return types.BlobInfo{Digest: got, Size: int64(len(data))}, nil
}

func (d *imageDestination) putLayer(r io.Reader, info types.BlobInfo) (types.BlobInfo, error) {
	a := d.a
	if info.Digest != "" {
		m, ok, err := a.lookupAndUse(d.slot, a.layerName(info.Digest))
		if err != nil {
			return types.BlobInfo{}, err
		}
		if ok {
			// Already in the archive (or waiting for its turn): nothing to write.
			return types.BlobInfo{Digest: info.Digest, Size: m.size}, nil
		}
	}
	a.mu.Lock()
	if err := a.usableLocked(); err != nil {
		a.mu.Unlock()
		return types.BlobInfo{}, err
	}
	direct := (a.tw.Seekable() || (info.Size >= 0 && info.Digest != "")) && a.mayWriteDirectLocked(d.slot)
	if direct {
		a.outBusy = true
	}
	a.mu.Unlock()
	if direct {
		return d.streamDirect(r, info)
	}
	return d.spool(r, info)
}

// streamDirect writes a layer straight into the output; the caller set outBusy.
func (d *imageDestination) streamDirect(r io.Reader, info types.BlobInfo) (types.BlobInfo, error) {
	a := d.a
	wm, err := a.tw.StreamBlob(r, info.Size, info.Digest, a.layerName)
	a.mu.Lock()
	defer func() {
		a.releaseOutLocked()
		a.mu.Unlock()
		a.pump()
	}()
	if err != nil {
		a.checkTWLocked()
		return types.BlobInfo{}, err
	}
	if err := a.usableLocked(); err != nil {
		return types.BlobInfo{}, err
	}
	m := &member{name: wm.Name, digest: wm.Digest, size: wm.Size, written: true}
	if old, isNew := a.registerLocked(m); !isNew {
		a.stats.Reused++
		if old.written {
			// The content turned out to be a blob already in the output (its digest was not
			// known in advance): take the copy back off.
			if err := a.tw.CutBack(wm.HeaderOffset); err != nil {
				a.checkTWLocked()
				return types.BlobInfo{}, err
			}
		} else {
			// Another image spooled it meanwhile; the copy just written comes first.
			old.written = true
			if old.spool != nil {
				_ = old.spool.Close()
				old.spool = nil
			}
		}
		m = old
	}
	d.slot.entries = append(d.slot.entries, m.name)
	d.slot.flushed++
	return types.BlobInfo{Digest: m.digest, Size: m.size}, nil
}

// spool copies a layer to a temp file; it is written when the image's turn comes.
func (d *imageDestination) spool(r io.Reader, info types.BlobInfo) (types.BlobInfo, error) {
	a := d.a
	sp, err := a.tw.Spool(r, info.Size, info.Digest, a.tempDir)
	if err != nil {
		return types.BlobInfo{}, err
	}
	name := a.layerName(sp.Digest())
	a.mu.Lock()
	if err := a.usableLocked(); err != nil {
		a.mu.Unlock()
		return types.BlobInfo{}, errors.Join(err, sp.Close())
	}
	a.stats.Spooled += sp.Stored()
	m, isNew := a.registerLocked(&member{name: name, digest: sp.Digest(), size: sp.Size(), spool: sp})
	if !isNew {
		a.stats.Reused++
		_ = sp.Close() // an unlinked temp file: nothing to lose
	}
	a.mu.Unlock()
	a.addEntry(d.slot, name)
	return types.BlobInfo{Digest: m.digest, Size: m.size}, nil
}

// TryReusingBlob reports a blob this archive already holds (written, or waiting for its
// turn) so that it is not written again. In LayoutDocker, with canSubstitute, a compressed
// blob whose uncompressed digest the cache knows is reused as that uncompressed layer. A
// destination paired with a source image by CopyFrom copies a layer it lacks straight from
// the source archive, and reports it as reused.
func (d *imageDestination) TryReusingBlob(ctx context.Context, info types.BlobInfo, cache types.BlobInfoCache, canSubstitute bool) (bool, types.BlobInfo, error) {
	if err := d.usable(); err != nil {
		return false, types.BlobInfo{}, err
	}
	if info.Digest == "" {
		return false, types.BlobInfo{}, fmt.Errorf("%s: cannot reuse a blob of unknown digest", d.label())
	}
	if checkDigest(info.Digest) != nil {
		return false, types.BlobInfo{}, nil
	}
	a := d.a
	m, ok, err := a.lookupAndUse(d.slot, a.layerName(info.Digest))
	if err != nil || ok {
		return ok, types.BlobInfo{Digest: info.Digest, Size: sizeOf(m)}, err
	}
	if ok, bi, err := d.reuseUncompressed(info, cache, canSubstitute); err != nil || ok {
		return ok, bi, err
	}
	if d.from != nil {
		return d.copyDirect(ctx, info, canSubstitute)
	}
	return false, types.BlobInfo{}, nil
}

// reuseUncompressed reuses, in LayoutDocker, the uncompressed layer the cache says a
// compressed blob holds, when the archive has it and canSubstitute allows it.
func (d *imageDestination) reuseUncompressed(info types.BlobInfo, cache types.BlobInfoCache, canSubstitute bool) (bool, types.BlobInfo, error) {
	a := d.a
	if a.layout != LayoutDocker || !canSubstitute || cache == nil {
		return false, types.BlobInfo{}, nil
	}
	u := cache.UncompressedDigest(info.Digest)
	if u == "" || u == info.Digest || checkDigest(u) != nil {
		return false, types.BlobInfo{}, nil
	}
	m, ok, err := a.lookupAndUse(d.slot, a.layerName(u))
	if err != nil || !ok {
		return false, types.BlobInfo{}, err
	}
	return true, types.BlobInfo{Digest: u, Size: m.size, CompressionOperation: types.Decompress}, nil
}

func sizeOf(m *member) int64 {
	if m == nil {
		return 0
	}
	return m.size
}

// PutManifest records the image's manifest: a single-image Docker schema2 or OCI manifest,
// or, in LayoutOCI, a manifest list (instanceDigest nil) and each manifest of it.
func (d *imageDestination) PutManifest(ctx context.Context, m []byte, instanceDigest *digest.Digest) error {
	if err := d.usable(); err != nil {
		return err
	}
	mt := manifest.GuessMIMEType(m)
	if instanceDigest != nil || manifest.MIMETypeIsMultiImage(mt) {
		if d.a.layout != LayoutOCI {
			return types.ManifestTypeRejectedError{Err: fmt.Errorf("%s: manifest lists need layout %q: an entry of layout %q is one image", d.label(), LayoutOCI, d.a.layout)}
		}
		if instanceDigest == nil {
			d.list, d.listType = append([]byte(nil), m...), mt
			return nil
		}
	}
	if mt != manifest.DockerV2Schema2MediaType && mt != imgspecv1.MediaTypeImageManifest {
		return types.ManifestTypeRejectedError{Err: fmt.Errorf("%s: manifest type %q is not supported, only %q and %q",
			d.label(), mt, manifest.DockerV2Schema2MediaType, imgspecv1.MediaTypeImageManifest)}
	}
	parsed, err := manifest.FromBlob(m, mt)
	if err != nil {
		return fmt.Errorf("%s: %w: %w", d.label(), ErrInvalidManifest, err)
	}
	if instanceDigest != nil {
		if d.instances == nil {
			d.instances = map[digest.Digest]instanceManifest{}
		}
		d.instances[*instanceDigest] = instanceManifest{append([]byte(nil), m...), mt, parsed}
		return nil
	}
	d.manifest, d.manifestType, d.parsed = append([]byte(nil), m...), mt, parsed
	return nil
}

func (d *imageDestination) PutSignatures(ctx context.Context, signatures [][]byte, instanceDigest *digest.Digest) error {
	if len(signatures) > 0 {
		return fmt.Errorf("archive %q: storing signatures is not supported", d.a.name)
	}
	return nil
}

// Commit records the image in the archive: it will be listed in manifest.json. For a
// destination made from a string reference it also commits the archive.
func (d *imageDestination) Commit(ctx context.Context, unparsedToplevel types.UnparsedImage) error {
	if err := d.usable(); err != nil {
		return err
	}
	var img *imageRecord
	var extra []*member
	var err error
	switch {
	case d.list != nil:
		img, extra, err = d.listRecord()
	case d.parsed == nil:
		err = fmt.Errorf("%s: Commit called before PutManifest", d.label())
	default:
		img, extra, err = d.imageRecord(instanceManifest{d.manifest, d.manifestType, d.parsed})
	}
	if err != nil {
		return err
	}
	a := d.a
	a.mu.Lock()
	if err := a.usableLocked(); err != nil {
		a.mu.Unlock()
		return err
	}
	for _, m := range extra {
		m, _ = a.registerLocked(m)
		d.slot.entries = append(d.slot.entries, m.name)
	}
	a.mu.Unlock()
	d.committed = true
	a.finishSlot(d.slot, img)
	if d.owned {
		return a.CommitContext(ctx)
	}
	return nil
}

// imageRecord checks manifest m against the config and the blobs in the archive, and returns
// the image and the members it adds (OCI manifest, legacy directories).
func (d *imageDestination) imageRecord(m instanceManifest) (*imageRecord, []*member, error) {
	a := d.a
	cfgInfo := m.parsed.ConfigInfo()
	config, err := d.configData(cfgInfo.Digest)
	if err != nil {
		return nil, nil, err
	}
	diffIDs, err := layout.ConfigDiffIDs(config)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: config %s: %w", d.label(), cfgInfo.Digest, err)
	}
	img := &imageRecord{configDigest: cfgInfo.Digest, configName: a.configName(cfgInfo.Digest)}
	if img.layers, err = d.layerRecords(m.parsed, diffIDs); err != nil {
		return nil, nil, err
	}
	var extra []*member
	switch {
	case a.layout == LayoutOCI:
		md, err := manifest.Digest(m.data)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", d.label(), err)
		}
		img.manifest, img.manifestType, img.manifestDigest = m.data, m.mt, md
		extra = append(extra, blobMember(md, m.data))
	case a.legacy:
		ms, top, err := legacyMembers(config, cfgInfo.Digest, diffIDs)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", d.label(), err)
		}
		extra, img.topID = ms, top
	}
	if img.topID == "" && len(diffIDs) > 0 {
		img.topID = diffIDs[len(diffIDs)-1].Encoded()
	}
	return img, extra, nil
}

// blobMember is a blob of the OCI layout held in memory: a manifest or a manifest list.
func blobMember(d digest.Digest, data []byte) *member {
	return &member{name: layout.BlobName(d), digest: d, size: int64(len(data)), data: data}
}

// listRecord checks a manifest list and every manifest of it, and returns the image that
// stands for the list in manifest.json (the platform this host runs, else the list's first
// platform: what docker 20.10 and podman load), whose tags name the list in index.json, and
// the members the list adds: itself and each manifest.
func (d *imageDestination) listRecord() (*imageRecord, []*member, error) {
	list, err := manifest.ListFromBlob(d.list, d.listType)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w: manifest list: %w", d.label(), ErrInvalidManifest, err)
	}
	var platforms []imgspecv1.Descriptor // the candidates for manifest.json, in list order
	for _, id := range list.Instances() {
		if _, ok := d.instances[id]; !ok {
			return nil, nil, fmt.Errorf("%s: %w: the manifest list names manifest %s, which was not written", d.label(), ErrMemberNotFound, id)
		}
		in, err := list.Instance(id)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", d.label(), err)
		}
		if in.ReadOnly.Platform != nil && in.ReadOnly.Annotations[tarfile.AttestationAnnotation] == "" {
			platforms = append(platforms, imgspecv1.Descriptor{Digest: id, Platform: in.ReadOnly.Platform})
		}
	}
	if len(platforms) == 0 {
		return nil, nil, fmt.Errorf("%s: %w: the manifest list names no platform", d.label(), ErrInvalidManifest)
	}
	chosen, err := manifest.OCI1IndexFromComponents(platforms, nil).ChooseInstance(nil)
	if err != nil {
		chosen = platforms[0].Digest
	}
	var img *imageRecord
	var extra []*member
	for _, id := range list.Instances() {
		rec, more, err := d.imageRecord(d.instances[id])
		if err != nil {
			return nil, nil, fmt.Errorf("manifest %s of the list: %w", id, err)
		}
		extra = append(extra, more...)
		if id == chosen {
			img = rec
		}
	}
	ld := digest.FromBytes(d.list)
	img.manifest, img.manifestType, img.manifestDigest = d.list, d.listType, ld
	return img, append(extra, blobMember(ld, d.list)), nil
}

// configData returns the config the manifest names: the one this destination wrote, or one
// the archive holds already.
func (d *imageDestination) configData(cfg digest.Digest) ([]byte, error) {
	if err := checkDigest(cfg); err != nil {
		return nil, fmt.Errorf("%s: config: %w", d.label(), err)
	}
	if d.configDigest == cfg {
		return d.config, nil
	}
	a := d.a
	a.mu.Lock()
	m := a.members[a.configName(cfg)]
	a.mu.Unlock()
	if m == nil || m.data == nil {
		return nil, fmt.Errorf("%s: %w: config %s was not written", d.label(), ErrMemberNotFound, cfg)
	}
	return m.data, nil
}

// layerRecords checks each layer of the manifest against the config's diffIDs and the blob
// in the archive, and returns the records of the layers.
func (d *imageDestination) layerRecords(parsed manifest.Manifest, diffIDs []digest.Digest) ([]layerRecord, error) {
	infos := parsed.LayerInfos()
	if len(infos) != len(diffIDs) {
		return nil, fmt.Errorf("%s: %w: the manifest lists %d layers, the config %d diffIDs", d.label(), ErrInvalidManifest, len(infos), len(diffIDs))
	}
	a := d.a
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []layerRecord
	for i, li := range infos {
		if err := checkDigest(li.Digest); err != nil {
			return nil, fmt.Errorf("%s: layer %d: %w", d.label(), i, err)
		}
		if a.layout == LayoutDocker && li.Digest != diffIDs[i] {
			return nil, fmt.Errorf("%s: layer %d: %w: blob %s is not the uncompressed layer %s that layout %q stores",
				d.label(), i, ErrInvalidManifest, li.Digest, diffIDs[i], LayoutDocker)
		}
		name := a.layerName(li.Digest)
		m := a.members[name]
		if m == nil {
			return nil, fmt.Errorf("%s: layer %d: %w: blob %s was not written", d.label(), i, ErrMemberNotFound, li.Digest)
		}
		if li.Size >= 0 && li.Size != m.size {
			return nil, fmt.Errorf("%s: layer %d: %w: the manifest says %d bytes, the blob has %d", d.label(), i, ErrSizeMismatch, li.Size, m.size)
		}
		out = append(out, layerRecord{name: name, diffID: diffIDs[i], digest: li.Digest, size: m.size, mediaType: li.MediaType})
	}
	return out, nil
}

// ctxReader fails reads once ctx is done, so a cancelled copy stops writing.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

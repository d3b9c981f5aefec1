package tarfile

import (
	"crypto/sha256"
	"fmt"
	"io"
	"slices"

	digest "github.com/opencontainers/go-digest"

	"github.com/darc-dev/darc/internal/layout"
)

// maxLegacyLayers bounds the layers of all the images of a pre-1.10 archive together. Each
// image's config is rebuilt from its whole parent chain, so many images on top of one long
// chain cost images × depth even though the archive holds each v1 image once. Docker never
// wrote chains deeper than 127, so this admits 2,048 images of the deepest kind; opening and
// verifying that many layers takes about a second.
const maxLegacyLayers = 1 << 18

// legacyCache holds what loadLegacy learns about v1 images and layers, so that a v1 image or
// layer shared by many images is read and hashed once.
type legacyCache struct {
	v1      map[string]legacyV1
	diffIDs map[int64]digest.Digest // by member offset
	layers  int                     // walked so far, against maxLegacyLayers
}

type legacyV1 struct {
	v   layout.V1Image
	err error
}

// v1Image reads and decodes "<id>/json", once.
func (c *legacyCache) v1Image(r *Reader, id string) (layout.V1Image, error) {
	if e, ok := c.v1[id]; ok {
		return e.v, e.err
	}
	var e legacyV1
	data, _, err := r.ix.ReadSmall(layout.V1JSONName(id), r.limits.MaxConfigSize)
	if err == nil {
		e.v, err = layout.ParseV1Image(data)
	}
	if err != nil {
		e.err = fmt.Errorf("v1 image %q: %w", id, err)
	}
	e.v.ID = id
	c.v1[id] = e
	return e.v, e.err
}

// diffID hashes a layer member's uncompressed content, once.
func (c *legacyCache) diffID(r *Reader, m Member) (digest.Digest, error) {
	if d, ok := c.diffIDs[m.Offset]; ok {
		return d, nil
	}
	d, err := r.diffIDOf(m)
	if err == nil {
		c.diffIDs[m.Offset] = d
	}
	return d, err
}

// loadLegacy reads a pre-1.10 archive: no manifest.json, a repositories file naming the top
// v1 image of each tag, and a parent chain of "<id>/json" + "<id>/layer.tar" per image.
// The image config, which such archives do not have, is built from the top v1 JSON the way
// Docker converts v1 images (drop the v1 id fields, add rootfs and history); that needs every
// layer hashed for its diffID, so opening a legacy archive reads its layers once.
func (r *Reader) loadLegacy() error {
	data, err := r.readMetadata(layout.RepositoriesFile)
	if err != nil {
		return err
	}
	repos, err := layout.ParseRepositories(data, r.limits.MaxManifestSize)
	if err != nil {
		return err
	}
	var order []string
	byID := map[string][]string{}
	for _, t := range repos.Tags() {
		if _, seen := byID[t.ID]; !seen {
			order = append(order, t.ID)
		}
		byID[t.ID] = append(byID[t.ID], t.Tag)
	}
	cache := &legacyCache{v1: map[string]legacyV1{}, diffIDs: map[int64]digest.Digest{}}
	order = append(order, r.legacyLeaves(byID, cache)...)
	if len(order) == 0 {
		return fmt.Errorf("%w: repositories names no image and there is no manifest.json", ErrNotDockerArchive)
	}
	for i, id := range order {
		img := &Image{r: r, Index: i, RepoTags: byID[id]}
		img.setTags()
		if err := r.legacyImage(img, id, cache); err != nil {
			img.Problems = append(img.Problems, err)
		}
		r.images = append(r.images, img)
	}
	return nil
}

// legacyLeaves returns, sorted, the v1 ids that no other v1 image names as its parent and
// that no tag points at: untagged images, which old Docker loaded too.
func (r *Reader) legacyLeaves(tagged map[string][]string, cache *legacyCache) []string {
	var ids []string
	parents := map[string]bool{}
	for _, m := range r.ix.members {
		id, ok := layout.V1IDOfJSONName(m.Name)
		if !ok {
			continue
		}
		v, err := cache.v1Image(r, id)
		if err != nil {
			continue
		}
		ids = append(ids, id)
		parents[v.Parent] = true
	}
	var leaves []string
	for _, id := range ids {
		if _, isTagged := tagged[id]; !isTagged && !parents[id] && !slices.Contains(leaves, id) {
			leaves = append(leaves, id)
		}
	}
	slices.Sort(leaves)
	return leaves
}

// legacyImage walks the parent chain from the top v1 id and fills img's layers and config.
func (r *Reader) legacyImage(img *Image, top string, cache *legacyCache) error {
	var chain []layout.V1Image
	seen := map[string]bool{}
	for id := top; id != ""; {
		if seen[id] || len(chain) > len(r.ix.members) {
			return fmt.Errorf("%w: v1 parent chain of %q loops", ErrInvalidManifest, top)
		}
		if cache.layers >= maxLegacyLayers {
			return fmt.Errorf("%w: the v1 parent chains of the images hold more than %d layers in all", ErrTooLarge, maxLegacyLayers)
		}
		cache.layers++
		seen[id] = true
		v, err := cache.v1Image(r, id)
		if err != nil {
			return err
		}
		chain = append(chain, v)
		id = v.Parent
	}
	// The top JSON is read again rather than kept for every v1 image: it is read once per image.
	tops, _, err := r.ix.ReadSmall(layout.V1JSONName(top), r.limits.MaxConfigSize)
	if err != nil {
		return fmt.Errorf("v1 image %q: %w", top, err)
	}
	slices.Reverse(chain)
	diffIDs := make([]digest.Digest, len(chain))
	for j, v := range chain {
		name := layout.V1LayerName(v.ID)
		m, err := r.ix.Resolve(name)
		if err != nil {
			return fmt.Errorf("layer %d: %w", j, err)
		}
		img.LayerNames = append(img.LayerNames, name)
		img.LayerMembers = append(img.LayerMembers, m)
		if diffIDs[j], err = cache.diffID(r, m); err != nil {
			return fmt.Errorf("layer %d %q: %w", j, name, err)
		}
	}
	cfg, err := layout.LegacyConfig(tops, chain, diffIDs)
	if err != nil {
		return fmt.Errorf("v1 image %q: %w", top, err)
	}
	img.legacyConfig = cfg
	img.ID = digest.FromBytes(cfg)
	img.ConfigName = layout.V1JSONName(top)
	return nil
}

// diffIDOf hashes a layer member's uncompressed content.
func (r *Reader) diffIDOf(m Member) (digest.Digest, error) {
	if f, ok := r.StreamFacts(m); ok {
		return f.DiffID, f.DiffIDErr
	}
	sr := r.ix.section(m)
	var head [10]byte
	n, _ := sr.ReadAt(head[:], 0)
	dec, closeDec, err := Decompress(sr, sniffMember(head[:n]))
	if err != nil {
		return "", err
	}
	defer closeDec()
	h := sha256.New()
	if _, err := io.Copy(h, dec); err != nil {
		return "", err
	}
	return digest.NewDigest(digest.SHA256, h), nil
}

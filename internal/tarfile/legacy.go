package tarfile

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	digest "github.com/opencontainers/go-digest"
)

// v1Image holds the fields of a pre-1.10 "<id>/json" that the reader uses.
type v1Image struct {
	ID              string `json:"id"`
	Parent          string `json:"parent,omitempty"`
	Created         string `json:"created,omitempty"`
	Author          string `json:"author,omitempty"`
	Comment         string `json:"comment,omitempty"`
	ContainerConfig struct {
		Cmd []string `json:"Cmd"`
	} `json:"container_config"`
}

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
	v   v1Image
	err error
}

// v1Image reads and decodes "<id>/json", once.
func (c *legacyCache) v1Image(r *Reader, id string) (v1Image, error) {
	if e, ok := c.v1[id]; ok {
		return e.v, e.err
	}
	var e legacyV1
	data, _, err := r.ix.ReadSmall(id+"/json", r.limits.MaxConfigSize)
	if err != nil {
		e.err = fmt.Errorf("v1 image %q: %w", id, err)
	} else if err := json.Unmarshal(data, &e.v); err != nil {
		e.err = fmt.Errorf("v1 image %q: %w: %w", id, ErrInvalidManifest, err)
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
	data, err := r.readMetadata("repositories")
	if err != nil {
		return err
	}
	repos, err := ParseRepositories(data)
	if err != nil {
		return err
	}
	// Tags in sorted order: the file is a JSON object, which has no order of its own.
	type tagged struct{ tag, id string }
	var tags []tagged
	for repo, m := range repos {
		for tag, id := range m {
			tags = append(tags, tagged{repo + ":" + tag, id})
		}
	}
	slices.SortFunc(tags, func(a, b tagged) int { return strings.Compare(a.tag, b.tag) })
	var order []string
	byID := map[string][]string{}
	for _, t := range tags {
		if _, seen := byID[t.id]; !seen {
			order = append(order, t.id)
		}
		byID[t.id] = append(byID[t.id], t.tag)
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
		id, ok := strings.CutSuffix(m.Name, "/json")
		if !ok || strings.Contains(id, "/") {
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
	var chain []v1Image
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
	tops, _, err := r.ix.ReadSmall(top+"/json", r.limits.MaxConfigSize)
	if err != nil {
		return fmt.Errorf("v1 image %q: %w", top, err)
	}
	slices.Reverse(chain)
	diffIDs := make([]digest.Digest, len(chain))
	for j, v := range chain {
		name := v.ID + "/layer.tar"
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
	cfg, err := legacyConfig(tops, chain, diffIDs)
	if err != nil {
		return fmt.Errorf("v1 image %q: %w", top, err)
	}
	img.legacyConfig = cfg
	img.ID = digest.FromBytes(cfg)
	img.ConfigName = top + "/json"
	return nil
}

// diffIDOf hashes a layer member's uncompressed content.
func (r *Reader) diffIDOf(m Member) (digest.Digest, error) {
	if f, ok := r.StreamFacts(m); ok {
		return f.DiffID, f.DiffIDErr
	}
	sr := io.NewSectionReader(r.ix.r, m.Offset, m.Size)
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

// legacyConfig builds an image config from the top v1 JSON: the v1 bookkeeping fields go,
// rootfs and a history entry per layer come in. Keys are emitted sorted, so the result (and
// the image ID) is stable.
func legacyConfig(top []byte, chain []v1Image, diffIDs []digest.Digest) ([]byte, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(top, &fields); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidManifest, err)
	}
	for _, k := range []string{"id", "parent", "Size", "parent_id", "layer_id", "throwaway", "checksum"} {
		delete(fields, k)
	}
	type history struct {
		Created   string `json:"created,omitempty"`
		CreatedBy string `json:"created_by,omitempty"`
		Author    string `json:"author,omitempty"`
		Comment   string `json:"comment,omitempty"`
	}
	hist := make([]history, len(chain))
	for i, v := range chain {
		hist[i] = history{Created: v.Created, CreatedBy: strings.Join(v.ContainerConfig.Cmd, " "), Author: v.Author, Comment: v.Comment}
	}
	rootfs := struct {
		Type    string          `json:"type"`
		DiffIDs []digest.Digest `json:"diff_ids"`
	}{"layers", diffIDs}
	var err error
	if fields["rootfs"], err = json.Marshal(rootfs); err != nil {
		return nil, err
	}
	if fields["history"], err = json.Marshal(hist); err != nil {
		return nil, err
	}
	return json.Marshal(fields)
}

package archivetest

// A minimal, independent docker-archive reader used only to check the generator. It indexes all
// members (the last of a name wins, as extraction does), resolves symlinks and hard links with a
// bound, and reads images from manifest.json, or from repositories and the v1 JSON for Legacy.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/distribution/reference"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"github.com/ulikunitz/xz"
)

type tarMember struct {
	hdr  *tar.Header
	body []byte
}

type tarIndex struct {
	order  []tarMember          // every member, in order
	byName map[string]tarMember // cleaned name → last member of that name
}

var errEscape = errors.New("path escapes the archive")

func decompress(data []byte) ([]byte, error) {
	var r io.Reader
	switch {
	case bytes.HasPrefix(data, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, err
		}
		r = zr
	case bytes.HasPrefix(data, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		r = zr
	case bytes.HasPrefix(data, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		xr, err := xz.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, err
		}
		r = xr
	default:
		return data, nil
	}
	return io.ReadAll(r)
}

func readArchive(data []byte) (*tarIndex, error) {
	data, err := decompress(data)
	if err != nil {
		return nil, err
	}
	a := &tarIndex{byName: map[string]tarMember{}}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			return nil, err
		}
		m := tarMember{hdr: h, body: body}
		a.order = append(a.order, m)
		a.byName[path.Clean(h.Name)] = m
	}
	return a, nil
}

// local cleans p and checks that it stays inside the archive.
func local(p string) (string, error) {
	c := path.Clean(p)
	if path.IsAbs(c) || c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("%q: %w", p, errEscape)
	}
	return c, nil
}

// open resolves name through links (at most 40) to a regular member.
func (a *tarIndex) open(name string) (tarMember, error) {
	cur, err := local(name)
	if err != nil {
		return tarMember{}, err
	}
	for hops := 0; hops <= 40; hops++ {
		m, ok := a.byName[cur]
		if !ok {
			return tarMember{}, fmt.Errorf("%q: no such member", cur)
		}
		switch m.hdr.Typeflag {
		case tar.TypeReg:
			return m, nil
		case tar.TypeSymlink:
			target := m.hdr.Linkname
			if !path.IsAbs(target) {
				target = path.Join(path.Dir(cur), target)
			}
			if cur, err = local(target); err != nil {
				return tarMember{}, err
			}
		case tar.TypeLink:
			if cur, err = local(m.hdr.Linkname); err != nil {
				return tarMember{}, err
			}
		default:
			return tarMember{}, fmt.Errorf("%q: not a file (type %q)", cur, m.hdr.Typeflag)
		}
	}
	return tarMember{}, fmt.Errorf("%q: too many links", name)
}

func (a *tarIndex) read(name string) ([]byte, error) {
	m, err := a.open(name)
	if err != nil {
		return nil, err
	}
	return m.body, nil
}

func normalizeTag(s string) (string, error) {
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return "", err
	}
	return reference.TagNameOnly(named).String(), nil
}

type rawItem struct {
	Config       string
	RepoTags     []string
	Layers       []string
	LayerSources map[digest.Digest]LayerSource
}

func (a *tarIndex) manifest() ([]rawItem, error) {
	b, err := a.read("manifest.json")
	if err != nil {
		return nil, err
	}
	var items []rawItem
	if err := json.Unmarshal(b, &items); err != nil {
		return nil, fmt.Errorf("manifest.json: %w", err)
	}
	return items, nil
}

// images reads what a reader must report, from manifest.json.
func (a *tarIndex) images() ([]ExpectedImage, error) {
	items, err := a.manifest()
	if err != nil {
		return nil, err
	}
	var out []ExpectedImage
	for i, it := range items {
		x := ExpectedImage{Tags: []string{}}
		for _, t := range it.RepoTags {
			n, err := normalizeTag(t)
			if err != nil {
				return nil, fmt.Errorf("item %d: tag %q: %w", i, t, err)
			}
			x.Tags = append(x.Tags, n)
		}
		cfg, err := a.read(it.Config)
		if err != nil {
			return nil, fmt.Errorf("item %d: config: %w", i, err)
		}
		x.ID = digest.FromBytes(cfg)
		var c parsedConfig
		if err := json.Unmarshal(cfg, &c); err != nil {
			return nil, fmt.Errorf("item %d: config: %w", i, err)
		}
		if len(c.RootFS.DiffIDs) != len(it.Layers) {
			return nil, fmt.Errorf("item %d: %d diff_ids, %d layers", i, len(c.RootFS.DiffIDs), len(it.Layers))
		}
		for k, l := range it.Layers {
			stored, err := a.read(l)
			if err != nil {
				return nil, fmt.Errorf("item %d: layer %d: %w", i, k, err)
			}
			raw, err := decompress(stored)
			if err != nil {
				return nil, fmt.Errorf("item %d: layer %d: %w", i, k, err)
			}
			if d := digest.FromBytes(raw); d != c.RootFS.DiffIDs[k] {
				return nil, fmt.Errorf("item %d: layer %d %q: digest %s, config says %s", i, k, l, d, c.RootFS.DiffIDs[k])
			}
			if _, err := tar.NewReader(bytes.NewReader(raw)).Next(); err != nil && err != io.EOF {
				return nil, fmt.Errorf("item %d: layer %d is not a tar: %w", i, k, err)
			}
			x.DiffIDs = append(x.DiffIDs, c.RootFS.DiffIDs[k])
			x.Sizes = append(x.Sizes, int64(len(stored)))
		}
		out = append(out, x)
	}
	return out, nil
}

// legacyImages reads a pre-1.10 archive: every layer directory that is nobody's parent is an
// image's top; tags come from repositories.
func (a *tarIndex) legacyImages() ([]ExpectedImage, error) {
	type v1 struct {
		ID     string `json:"id"`
		Parent string `json:"parent"`
	}
	layers := map[string]v1{}
	var ids []string
	isParent := map[string]bool{}
	for _, m := range a.order {
		dir, file := path.Split(path.Clean(m.hdr.Name))
		if file != "json" || dir == "" {
			continue
		}
		var v v1
		if err := json.Unmarshal(m.body, &v); err != nil {
			return nil, err
		}
		if v.ID+"/" != dir {
			return nil, fmt.Errorf("%s: id %q", m.hdr.Name, v.ID)
		}
		if _, ok := layers[v.ID]; !ok {
			ids = append(ids, v.ID)
		}
		layers[v.ID] = v
		if v.Parent != "" {
			isParent[v.Parent] = true
		}
	}
	tags := map[string][]string{}
	if b, err := a.read("repositories"); err == nil {
		var repos map[string]map[string]string
		if err := json.Unmarshal(b, &repos); err != nil {
			return nil, err
		}
		for name, m := range repos {
			for tag, id := range m {
				n, err := normalizeTag(name + ":" + tag)
				if err != nil {
					return nil, err
				}
				tags[id] = append(tags[id], n)
			}
		}
	}
	var out []ExpectedImage
	for _, top := range ids {
		if isParent[top] {
			continue
		}
		x := ExpectedImage{Tags: tags[top]}
		if x.Tags == nil {
			x.Tags = []string{}
		}
		var chain []string
		for id := top; id != ""; id = layers[id].Parent {
			if _, ok := layers[id]; !ok {
				return nil, fmt.Errorf("missing parent %q", id)
			}
			chain = append([]string{id}, chain...)
		}
		for _, id := range chain {
			stored, err := a.read(id + "/layer.tar")
			if err != nil {
				return nil, err
			}
			raw, err := decompress(stored)
			if err != nil {
				return nil, err
			}
			x.DiffIDs = append(x.DiffIDs, digest.FromBytes(raw))
			x.Sizes = append(x.Sizes, int64(len(stored)))
		}
		out = append(out, x)
	}
	return out, nil
}

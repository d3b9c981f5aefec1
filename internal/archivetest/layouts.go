package archivetest

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Media types that are not in image-spec.
const (
	mediaTypeDockerManifest  = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerConfig    = "application/vnd.docker.container.image.v1+json"
	mediaTypeDockerLayerGzip = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	// annotationImageName is containerd's images.AnnotationImageName.
	annotationImageName = "io.containerd.image.name"
)

func epoch() time.Time { return time.Unix(0, 0).UTC() }

func blobPath(d digest.Digest) string {
	return "blobs/" + d.Algorithm().String() + "/" + d.Encoded()
}

// chainIDs returns the chain ID of each prefix of layers: the first diffID, then
// sha256("<previous chain> <diffID>") (moby's layer.CreateChainID).
func chainIDs(layers []*blob) []digest.Digest {
	out := make([]digest.Digest, len(layers))
	for i, l := range layers {
		if i == 0 {
			out[i] = l.diffID
		} else {
			out[i] = digest.FromString(out[i-1].String() + " " + l.diffID.String())
		}
	}
	return out
}

// ---- containers/image ----

func (p *plan) containersImage() ([]member, error) {
	var ms []member
	layerWritten := map[digest.Digest]bool{} // lookup only
	legacyWritten := map[string]bool{}       // lookup only
	repos := map[string]map[string]string{}
	items := []ManifestItem{}
	for _, g := range p.groups {
		// copy.Image sends the layers, then the config, then PutManifest writes the legacy
		// metadata.
		for _, l := range g.layers {
			if !layerWritten[l.diffID] {
				layerWritten[l.diffID] = true
				ms = append(ms, ciReg(l.diffID.Encoded()+".tar", l.stored))
			}
		}
		ms = append(ms, ciReg(g.id.Encoded()+".json", g.config))

		legacy, err := ciLegacyLayers(g.config, g.layers)
		if err != nil {
			return nil, err
		}
		last := ""
		for i, l := range g.layers {
			id := legacy[i].id
			if !legacyWritten[id] {
				legacyWritten[id] = true
				ms = append(ms,
					ciSymlink(id+"/layer.tar", "../"+l.diffID.Encoded()+".tar"),
					ciReg(id+"/VERSION", []byte("1.0")),
					ciReg(id+"/json", legacy[i].json))
			}
			last = id
		}

		item := ManifestItem{Config: g.id.Encoded() + ".json", RepoTags: []string{}, Layers: []string{}}
		for _, l := range g.layers {
			item.Layers = append(item.Layers, l.diffID.Encoded()+".tar")
		}
		for _, ref := range g.refs {
			item.RepoTags = append(item.RepoTags, ref.Name()+":"+ref.Tag())
			if last != "" { // containers/image records tags only for images with layers
				addRepo(repos, ref.Name(), ref.Tag(), last)
			}
		}
		items = append(items, item)
	}
	ms = append(ms,
		ciReg("manifest.json", ManifestJSON(items)),
		ciReg("repositories", mustJSON(repos)))
	return ms, nil
}

type ciLegacyLayer struct {
	id   string
	json []byte
}

// ciLegacyLayers computes the legacy v1 id and "json" of each layer as containers/image does:
// {"parent": previous id} (none for the base), on the top layer the config's architecture,
// config, container, container_config, created, docker_version and os (null when absent),
// and an id that is the sha256 of that JSON with "layer_id" (the chain ID) added.
func ciLegacyLayers(config []byte, layers []*blob) ([]ciLegacyLayer, error) {
	var attrs map[string]*json.RawMessage
	if err := json.Unmarshal(config, &attrs); err != nil {
		return nil, fmt.Errorf("%w: config: %w", ErrInvalidImage, err)
	}
	chains := chainIDs(layers)
	out := make([]ciLegacyLayer, len(layers))
	last := ""
	for i := range layers {
		lc := map[string]any{}
		if last != "" {
			lc["parent"] = last
		}
		if i == len(layers)-1 {
			for _, a := range []string{"architecture", "config", "container", "container_config", "created", "docker_version", "os"} {
				lc[a] = attrs[a] // absent → null
			}
		}
		lc["layer_id"] = chains[i]
		id := digest.FromBytes(mustJSON(lc)).Encoded()
		delete(lc, "layer_id")
		lc["id"] = id
		out[i] = ciLegacyLayer{id: id, json: mustJSON(lc)}
		last = id
	}
	return out, nil
}

func addRepo(repos map[string]map[string]string, name, tag, id string) {
	if repos[name] == nil {
		repos[name] = map[string]string{}
	}
	repos[name][tag] = id
}

// ---- moby (Docker) ----

// dockerContainerConfig is the JSON shape of moby's container.Config: Docker re-marshals the
// image config's "config" and "container_config" through it for the top layer's v1 JSON, so
// every field without omitempty is present.
type dockerContainerConfig struct {
	Hostname        string              `json:"Hostname"`
	Domainname      string              `json:"Domainname"`
	User            string              `json:"User"`
	AttachStdin     bool                `json:"AttachStdin"`
	AttachStdout    bool                `json:"AttachStdout"`
	AttachStderr    bool                `json:"AttachStderr"`
	ExposedPorts    map[string]struct{} `json:"ExposedPorts,omitempty"`
	Tty             bool                `json:"Tty"`
	OpenStdin       bool                `json:"OpenStdin"`
	StdinOnce       bool                `json:"StdinOnce"`
	Env             []string            `json:"Env"`
	Cmd             strSlice            `json:"Cmd"`
	Healthcheck     *dockerHealthConfig `json:"Healthcheck,omitempty"`
	ArgsEscaped     bool                `json:"ArgsEscaped,omitempty"`
	Image           string              `json:"Image"`
	Volumes         map[string]struct{} `json:"Volumes"`
	WorkingDir      string              `json:"WorkingDir"`
	Entrypoint      strSlice            `json:"Entrypoint"`
	NetworkDisabled bool                `json:"NetworkDisabled,omitempty"`
	MacAddress      string              `json:"MacAddress,omitempty"`
	OnBuild         []string            `json:"OnBuild"`
	Labels          map[string]string   `json:"Labels"`
	StopSignal      string              `json:"StopSignal,omitempty"`
	StopTimeout     *int                `json:"StopTimeout,omitempty"`
	Shell           strSlice            `json:"Shell,omitempty"`
}

type dockerHealthConfig struct {
	Test          []string      `json:",omitempty"`
	Interval      time.Duration `json:",omitempty"`
	Timeout       time.Duration `json:",omitempty"`
	StartPeriod   time.Duration `json:",omitempty"`
	StartInterval time.Duration `json:",omitempty"`
	Retries       int           `json:",omitempty"`
}

// strSlice is moby's strslice.StrSlice: a JSON array, or a single string.
type strSlice []string

func (s *strSlice) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*s = strSlice{one}
		return nil
	}
	return json.Unmarshal(b, (*[]string)(s))
}

// dockerConfigJSON re-marshals a config section the way Docker does; nil if absent.
func dockerConfigJSON(raw json.RawMessage) (json.RawMessage, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var c dockerContainerConfig
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("%w: config section: %w", ErrInvalidImage, err)
	}
	return mustJSON(c), nil
}

// mobyV1Image is the JSON shape of moby's image.V1Image, the per-layer "json" of docker save.
type mobyV1Image struct {
	ID              string          `json:"id,omitempty"`
	Parent          string          `json:"parent,omitempty"`
	Comment         string          `json:"comment,omitempty"`
	Created         *time.Time      `json:"created,omitempty"`
	Container       string          `json:"container,omitempty"`
	ContainerConfig json.RawMessage `json:"container_config"`
	DockerVersion   string          `json:"docker_version,omitempty"`
	Author          string          `json:"author,omitempty"`
	Config          json.RawMessage `json:"config,omitempty"`
	Architecture    string          `json:"architecture,omitempty"`
	Variant         string          `json:"variant,omitempty"`
	OS              string          `json:"os,omitempty"`
	Size            int64           `json:",omitempty"`
}

// mobyV1 returns the V1Image moby saves for layer i of g: the image's own metadata for the top
// layer, otherwise an empty one created at the epoch. alwaysCreated reproduces Docker ≤ 24,
// where Created was not a pointer.
func mobyV1(g *entry, i int, alwaysCreated bool) (mobyV1Image, error) {
	if i < len(g.layers)-1 {
		t := epoch()
		return mobyV1Image{Created: &t, ContainerConfig: mustJSON(dockerContainerConfig{})}, nil
	}
	v := mobyV1Image{
		Comment:       g.cfg.Comment,
		Created:       g.cfg.Created,
		Container:     g.cfg.Container,
		DockerVersion: g.cfg.DockerVersion,
		Author:        g.cfg.Author,
		Architecture:  g.cfg.Architecture,
		Variant:       g.cfg.Variant,
		OS:            g.cfg.OS,
	}
	var err error
	if v.Config, err = dockerConfigJSON(g.cfg.Config); err != nil {
		return v, err
	}
	if v.ContainerConfig, err = dockerConfigJSON(g.cfg.ContainerConfig); err != nil {
		return v, err
	}
	if v.ContainerConfig == nil {
		v.ContainerConfig = mustJSON(dockerContainerConfig{})
	}
	if v.Created == nil && alwaysCreated {
		v.Created = &time.Time{}
	}
	return v, nil
}

func compactOrNil(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	return mustJSON(raw) // json.Marshal compacts a RawMessage
}

// mobyCreateID is moby's image/v1.CreateID: the digest of the V1Image JSON without its id,
// with "layer_id" (the chain ID) and "parent" (the parent's v1 id digest) added.
func mobyCreateID(v mobyV1Image, chain, parent digest.Digest) digest.Digest {
	v.ID = ""
	var m map[string]*json.RawMessage
	if err := json.Unmarshal(mustJSON(v), &m); err != nil {
		panic(err) // our own JSON
	}
	raw := func(s string) *json.RawMessage { r := json.RawMessage(mustJSON(s)); return &r }
	m["layer_id"] = raw(chain.String())
	if parent != "" {
		m["parent"] = raw(parent.String())
	}
	return digest.FromBytes(mustJSON(m))
}

// mobyV1Layers computes the v1 id and V1Image of every layer of g as moby's saveImage does.
func mobyV1Layers(g *entry, alwaysCreated bool) ([]mobyV1Image, error) {
	chains := chainIDs(g.layers)
	out := make([]mobyV1Image, len(g.layers))
	var parent digest.Digest
	for i := range g.layers {
		v, err := mobyV1(g, i, alwaysCreated)
		if err != nil {
			return nil, err
		}
		id := mobyCreateID(v, chains[i], parent)
		v.ID = id.Encoded()
		if parent != "" {
			v.Parent = parent.Encoded()
		}
		v.OS = g.cfg.OS
		out[i] = v
		parent = id
	}
	return out, nil
}

func (p *plan) docker24() ([]member, error) {
	moby := mobyStyle{typeBits: true, uname: "root"}
	var ms []member
	saved := map[string]bool{}              // v1 ids already saved; lookup only
	diffIDDir := map[digest.Digest]string{} // first v1 dir holding each layer; lookup only
	repos := map[string]map[string]string{}
	var items []ManifestItem
	for _, g := range p.groups {
		v1s, err := mobyV1Layers(g, true)
		if err != nil {
			return nil, err
		}
		var paths []string
		for i, l := range g.layers {
			v := v1s[i]
			if !saved[v.ID] {
				saved[v.ID] = true
				ms = append(ms,
					moby.dir(v.ID, g.created),
					moby.reg(v.ID+"/VERSION", []byte("1.0"), g.created),
					moby.reg(v.ID+"/json", mustJSON(v), g.created))
				if other, ok := diffIDDir[l.diffID]; ok {
					ms = append(ms, moby.symlink(v.ID+"/layer.tar", "../"+other+"/layer.tar", g.created))
				} else {
					diffIDDir[l.diffID] = v.ID
					ms = append(ms, moby.reg(v.ID+"/layer.tar", l.stored, g.created))
				}
			}
			paths = append(paths, v.ID+"/layer.tar")
		}
		ms = append(ms, moby.reg(g.id.Encoded()+".json", g.config, g.created))
		var repoTags []string // nil → "RepoTags": null
		for _, ref := range g.refs {
			addRepo(repos, reference.FamiliarName(ref), ref.Tag(), v1s[len(v1s)-1].ID)
			repoTags = append(repoTags, reference.FamiliarString(ref))
		}
		items = append(items, ManifestItem{Config: g.id.Encoded() + ".json", RepoTags: repoTags, Layers: paths})
	}
	if len(repos) > 0 {
		ms = append(ms, moby.reg("repositories", jsonLine(repos), epoch()))
	}
	ms = append(ms, moby.reg("manifest.json", jsonLine(items), epoch()))
	walkSort(ms)
	return ms, nil
}

func (p *plan) docker25() ([]member, error) {
	moby := mobyStyle{}
	var set memberSet
	savedLayers := map[digest.Digest]LayerSource{} // lookup only
	repos := map[string]map[string]string{}
	var items []ManifestItem
	var descs []ocispec.Descriptor
	blobsTime := epoch()
	for _, g := range p.groups {
		v1s, err := mobyV1Layers(g, false)
		if err != nil {
			return nil, err
		}
		sources := map[digest.Digest]LayerSource{}
		for i, l := range g.layers {
			v1json := mustJSON(v1s[i])
			set.add(moby.reg(blobPath(digest.FromBytes(v1json)), v1json, g.created))
			src, ok := savedLayers[l.diffID]
			if !ok {
				set.add(moby.reg(blobPath(l.diffID), l.stored, g.created))
				src = LayerSource{MediaType: ocispec.MediaTypeImageLayer, Size: int64(len(l.stored)), Digest: l.diffID}
				savedLayers[l.diffID] = src
			}
			sources[l.diffID] = src
		}
		set.add(moby.reg(blobPath(g.id), g.config, g.created))
		blobsTime = g.created

		m := ocispec.Manifest{
			Versioned: specs.Versioned{SchemaVersion: 2},
			MediaType: ocispec.MediaTypeImageManifest,
			Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: g.id, Size: int64(len(g.config))},
			Layers:    []ocispec.Descriptor{},
		}
		for _, l := range g.layers {
			s := sources[l.diffID]
			m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: s.MediaType, Digest: s.Digest, Size: s.Size})
		}
		mdata := mustJSON(m)
		mdigest := digest.FromBytes(mdata)
		set.add(moby.reg(blobPath(mdigest), mdata, epoch()))

		untagged := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: mdigest, Size: int64(len(mdata))}
		var repoTags []string
		top := g.layers[len(g.layers)-1].diffID.Encoded()
		for _, ref := range g.refs {
			addRepo(repos, reference.FamiliarName(ref), ref.Tag(), top)
			repoTags = append(repoTags, reference.FamiliarString(ref))
			d := untagged
			d.Annotations = map[string]string{
				annotationImageName:       ref.String(),
				ocispec.AnnotationRefName: ref.Tag(),
			}
			descs = append(descs, d)
		}
		// Docker's own condition: an untagged image is listed only while index.json is
		// still empty.
		if len(descs) == 0 {
			descs = append(descs, untagged)
		}

		item := ManifestItem{Config: blobPath(g.id), RepoTags: repoTags, LayerSources: sources}
		for _, l := range g.layers {
			item.Layers = append(item.Layers, blobPath(l.diffID))
		}
		items = append(items, item)
	}
	set.add(moby.dir("blobs", blobsTime))
	set.add(moby.dir("blobs/sha256", epoch()))
	if len(repos) > 0 {
		set.add(moby.reg("repositories", jsonLine(repos), epoch()))
	}
	set.add(moby.reg("manifest.json", jsonLine(items), epoch()))
	set.add(moby.reg("oci-layout", []byte(`{"imageLayoutVersion": "`+ocispec.ImageLayoutVersion+`"}`), epoch()))
	set.add(moby.reg("index.json", mustJSON(ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: descs,
	}), epoch()))
	ms := set.list
	walkSort(ms)
	return ms, nil
}

// ---- go-containerregistry ----

func (p *plan) crane() ([]member, error) {
	entries := p.craneExpand()
	// go-containerregistry names a layer after its media type: .tar.zst for zstd, .tar.gz
	// for everything else it does not know to be uncompressed.
	name := func(l *blob) string {
		if l.zstd {
			return l.storedDigest.Encoded() + ".tar.zst"
		}
		return l.storedDigest.Encoded() + ".tar.gz"
	}
	var ms []member
	written := map[string]bool{} // lookup only
	for _, e := range entries {
		// The config is written once per reference; layers once per archive.
		ms = append(ms, plainReg("sha256:"+e.id.Encoded(), 0o644, e.config))
		for _, l := range e.layers {
			if n := name(l); !written[n] {
				written[n] = true
				ms = append(ms, plainReg(n, 0o644, l.stored))
			}
		}
	}
	craneSort(entries)
	items := make([]ManifestItem, 0, len(entries))
	for _, e := range entries {
		item := ManifestItem{Config: "sha256:" + e.id.Encoded(), RepoTags: e.raw, Layers: make([]string, 0, len(e.layers))}
		for _, l := range e.layers {
			item.Layers = append(item.Layers, name(l))
		}
		items = append(items, item)
	}
	ms = append(ms, plainReg("manifest.json", 0o644, ManifestJSON(items)))
	return ms, nil
}

// craneConfig is the JSON shape of go-containerregistry's v1.Config.
type craneConfig struct {
	AttachStderr    bool                `json:"AttachStderr,omitempty"`
	AttachStdin     bool                `json:"AttachStdin,omitempty"`
	AttachStdout    bool                `json:"AttachStdout,omitempty"`
	Cmd             []string            `json:"Cmd,omitempty"`
	Healthcheck     json.RawMessage     `json:"Healthcheck,omitempty"`
	Domainname      string              `json:"Domainname,omitempty"`
	Entrypoint      []string            `json:"Entrypoint,omitempty"`
	Env             []string            `json:"Env,omitempty"`
	Hostname        string              `json:"Hostname,omitempty"`
	Image           string              `json:"Image,omitempty"`
	Labels          map[string]string   `json:"Labels,omitempty"`
	OnBuild         []string            `json:"OnBuild,omitempty"`
	OpenStdin       bool                `json:"OpenStdin,omitempty"`
	StdinOnce       bool                `json:"StdinOnce,omitempty"`
	Tty             bool                `json:"Tty,omitempty"`
	User            string              `json:"User,omitempty"`
	Volumes         map[string]struct{} `json:"Volumes,omitempty"`
	WorkingDir      string              `json:"WorkingDir,omitempty"`
	ExposedPorts    map[string]struct{} `json:"ExposedPorts,omitempty"`
	ArgsEscaped     bool                `json:"ArgsEscaped,omitempty"`
	NetworkDisabled bool                `json:"NetworkDisabled,omitempty"`
	MacAddress      string              `json:"MacAddress,omitempty"`
	StopSignal      string              `json:"StopSignal,omitempty"`
	Shell           []string            `json:"Shell,omitempty"`
}

// craneLayerJSON is the JSON shape of go-containerregistry's legacy.LayerConfigFile (a
// v1.ConfigFile with the v1 fields appended).
type craneLayerJSON struct {
	Architecture  string    `json:"architecture"`
	Author        string    `json:"author,omitempty"`
	Container     string    `json:"container,omitempty"`
	Created       time.Time `json:"created"`
	DockerVersion string    `json:"docker_version,omitempty"`
	OS            string    `json:"os"`
	RootFS        struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
	Config          craneConfig `json:"config"`
	ContainerConfig craneConfig `json:"container_config"`
	ID              string      `json:"id,omitempty"`
	Parent          string      `json:"parent,omitempty"`
	Throwaway       bool        `json:"throwaway,omitempty"`
	Comment         string      `json:"comment,omitempty"`
}

func (p *plan) craneLegacy() ([]member, error) {
	var ms []member
	repos := map[string]map[string]string{}
	seen := map[string]bool{} // lookup only
	var items []ManifestItem
	for _, e := range p.sortedByConfig() {
		ms = append(ms, plainReg(e.id.Encoded()+".json", 0o644, e.config))
		history := nonEmptyHistory(e.cfg.History)
		if len(history) == 0 {
			history = make([]historyEntry, len(e.layers))
		}
		var imgConfig craneConfig
		if len(e.cfg.Config) > 0 {
			if err := json.Unmarshal(e.cfg.Config, &imgConfig); err != nil {
				return nil, fmt.Errorf("%w: config section: %w", ErrInvalidImage, err)
			}
		}
		prev := ""
		paths := make([]string, len(e.layers))
		for i, l := range e.layers {
			h := history[i]
			v := craneLayerJSON{
				Author:          h.Author,
				Created:         h.Created,
				ContainerConfig: craneConfig{Cmd: []string{h.CreatedBy}},
				Parent:          prev,
				Throwaway:       h.EmptyLayer,
				Comment:         h.Comment,
			}
			idInput := l.registryDigest.Encoded() + " " + prev
			if i == len(e.layers)-1 {
				idInput += " " + string(e.config)
				v.Architecture = e.cfg.Architecture
				v.Container = e.cfg.Container
				v.DockerVersion = e.cfg.DockerVersion
				v.OS = e.cfg.OS
				v.Config = imgConfig
				v.Created = time.Time{}
				if e.cfg.Created != nil {
					v.Created = *e.cfg.Created
				}
			}
			v.ID = digest.FromString(idInput).Encoded()
			paths[i] = v.ID + "/layer.tar"
			if !seen[v.ID] {
				seen[v.ID] = true
				ms = append(ms,
					plainReg(v.ID+"/layer.tar", 0o644, l.stored),
					plainReg(v.ID+"/json", 0o644, mustJSON(v)),
					plainReg(v.ID+"/VERSION", 0o644, []byte("1.0")))
			}
			prev = v.ID
		}
		var repoTags []string
		for _, t := range e.raw {
			repoTags = append(repoTags, t)
			base, tag := craneSplitTag(t)
			addRepo(repos, base, tag, prev)
		}
		items = append(items, ManifestItem{Config: e.id.Encoded() + ".json", RepoTags: repoTags, Layers: paths})
	}
	ms = append(ms,
		plainReg("manifest.json", 0o644, ManifestJSON(items)),
		plainReg("repositories", 0o644, mustJSON(repos)))
	return ms, nil
}

// craneSplitTag splits "<repo>:<tag>" at the last colon unless that colon belongs to a
// registry port (go-containerregistry legacy/tarball's splitTag).
func craneSplitTag(s string) (string, string) {
	i := strings.LastIndex(s, ":")
	if i < 0 || strings.Contains(s[i+1:], "/") {
		return s, ""
	}
	return s[:i], s[i+1:]
}

// craneExpand is one entry per reference, in input order (crane iterates a map; a reader must
// not depend on the order of the blobs).
func (p *plan) craneExpand() []*entry {
	var out []*entry
	seen := map[string]bool{} // lookup only
	for _, e := range p.inputs {
		if len(e.raw) == 0 {
			c := *e
			c.raw, c.refs = nil, nil
			out = append(out, &c)
			continue
		}
		for k, r := range e.raw {
			s := craneTagString(r)
			if seen[s] {
				continue
			}
			seen[s] = true
			c := *e
			c.raw = []string{s}
			c.refs = []reference.NamedTagged{e.refs[k]}
			out = append(out, &c)
		}
	}
	return out
}

// craneSort orders entries as crane orders manifest.json: by the joined RepoTags.
func craneSort(entries []*entry) {
	sort.SliceStable(entries, func(i, j int) bool {
		return strings.Join(entries[i].raw, ",") < strings.Join(entries[j].raw, ",")
	})
}

// ---- pre-1.10 Docker ----

func (p *plan) legacy() ([]member, error) {
	moby := mobyStyle{typeBits: true, uname: "root"}
	var set memberSet
	repos := map[string]map[string]string{}
	for _, g := range p.groups {
		history := nonEmptyHistory(g.cfg.History)
		parent := ""
		for i, l := range g.layers {
			top := i == len(g.layers)-1
			idInput := fmt.Sprintf("archivetest legacy %d %s %s", p.opts.Seed, parent, l.diffID)
			if top {
				idInput += " " + g.id.String()
			}
			id := digest.FromString(idInput).Encoded()
			cc := dockerContainerConfig{}
			created := g.created
			if i < len(history) {
				cc.Cmd = []string{history[i].CreatedBy}
				created = history[i].Created.UTC()
			}
			v := mobyV1Image{
				ID:              id,
				Parent:          parent,
				Created:         &created,
				ContainerConfig: mustJSON(cc),
				DockerVersion:   "1.9.1",
				Architecture:    g.cfg.Architecture,
				OS:              g.cfg.OS,
				Size:            int64(len(l.raw)),
			}
			if top {
				v.Config = compactOrNil(g.cfg.Config)
				v.Author = g.cfg.Author
				v.Comment = g.cfg.Comment
			}
			set.add(moby.dir(id, g.created))
			set.add(moby.reg(id+"/VERSION", []byte("1.0"), g.created))
			set.add(moby.reg(id+"/json", mustJSON(v), g.created))
			set.add(moby.reg(id+"/layer.tar", l.stored, g.created))
			parent = id
		}
		for _, ref := range g.refs {
			addRepo(repos, reference.FamiliarName(ref), ref.Tag(), parent)
		}
	}
	if len(repos) > 0 {
		set.add(moby.reg("repositories", jsonLine(repos), epoch()))
	}
	ms := set.list
	walkSort(ms)
	return ms, nil
}

// ---- BuildKit / containerd exporter ----

func (p *plan) buildKit() ([]member, error) {
	var set memberSet
	set.add(plainReg("oci-layout", 0o444, mustJSON(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})))
	var descs []ocispec.Descriptor
	var items []ManifestItem
	for _, g := range p.groups {
		// Docker media types by default (oci-mediatypes=false); zstd needs OCI ones.
		oci := p.opts.ZstdLayers
		for _, l := range g.layers {
			oci = oci || l.zstd
		}
		manifestMT, configMT, gzipMT := mediaTypeDockerManifest, mediaTypeDockerConfig, mediaTypeDockerLayerGzip
		if oci {
			manifestMT, configMT, gzipMT = ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageConfig, ocispec.MediaTypeImageLayerGzip
		}
		m := ocispec.Manifest{
			Versioned: specs.Versioned{SchemaVersion: 2},
			MediaType: manifestMT,
			Config:    ocispec.Descriptor{MediaType: configMT, Digest: g.id, Size: int64(len(g.config))},
			Layers:    []ocispec.Descriptor{},
		}
		item := ManifestItem{Config: blobPath(g.id)}
		for _, l := range g.layers {
			layerMT := gzipMT
			if l.zstd {
				layerMT = ocispec.MediaTypeImageLayerZstd
			}
			m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: layerMT, Digest: l.storedDigest, Size: int64(len(l.stored))})
			set.add(plainReg(blobPath(l.storedDigest), 0o444, l.stored))
			item.Layers = append(item.Layers, blobPath(l.storedDigest))
		}
		set.add(plainReg(blobPath(g.id), 0o444, g.config))
		mdata := mustJSON(m)
		mdigest := digest.FromBytes(mdata)
		set.add(plainReg(blobPath(mdigest), 0o444, mdata))
		desc := ocispec.Descriptor{MediaType: manifestMT, Digest: mdigest, Size: int64(len(mdata))}
		if len(g.refs) == 0 {
			descs = append(descs, desc)
		}
		for _, ref := range g.refs {
			d := desc
			d.Annotations = map[string]string{
				annotationImageName:       ref.String(),
				ocispec.AnnotationRefName: ref.Tag(),
			}
			descs = append(descs, d)
			item.RepoTags = append(item.RepoTags, reference.FamiliarString(ref))
		}
		items = append(items, item)
	}
	// containerd's exporter writes no mediaType in index.json.
	set.add(plainReg("index.json", 0o644, mustJSON(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, Manifests: descs})))
	set.add(plainReg("manifest.json", 0o644, ManifestJSON(items)))
	set.add(plainDir("blobs/"))
	set.add(plainDir("blobs/sha256/"))
	ms := set.list
	sort.SliceStable(ms, func(i, j int) bool { return ms[i].hdr.Name < ms[j].hdr.Name })
	return ms, nil
}

package archive

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	distref "github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/manifest"

	"github.com/darc-dev/darc/internal/tarfile"
)

// A registry over archives: the pull side of the OCI Distribution Specification v1.1,
// answered from the archives' member index. Naming (see NewHandler): an image tagged
// REGISTRY/PATH:TAG is the repository PATH, tag TAG; so docker.io/library/busybox:1.36 is
// pulled as HOST/library/busybox:1.36, and example.com/team/app:2 as HOST/team/app:2. Two
// aliases make what users type work too: HOST/busybox:1.36 for a docker.io official image
// (docker's own shortening), and HOST/example.com/team/app:2 with the registry kept. An alias
// never hides a repository of that name.

// ServeOption configures NewHandler.
type ServeOption func(*serveOptions)

type serveOptions struct {
	prefix string
	log    func(string)
}

// WithPrefix puts every repository under prefix: with "mirror", library/busybox is served as
// mirror/library/busybox. prefix is one or more repository name components joined by "/"
// (lowercase letters, digits and separators), without leading or trailing slashes.
func WithPrefix(prefix string) ServeOption { return func(o *serveOptions) { o.prefix = prefix } }

// WithServeLog passes log what goes wrong while serving: a blob whose bytes no longer match
// its digest (the response is cut off), an archive file that changed after it was opened
// (answered with 500), an image that cannot be resolved. The default discards them.
func WithServeLog(log func(string)) ServeOption { return func(o *serveOptions) { o.log = log } }

// Handler serves the archives as a read-only registry; it is NewHandler without options.
func Handler(archives ...*ReadableArchive) http.Handler {
	h, err := NewHandler(archives)
	if err != nil {
		// Without options there is nothing to refuse.
		panic(fmt.Sprintf("archive: NewHandler without options: %v", err))
	}
	return h
}

// NewHandler returns an http.Handler serving the images of the archives as a read-only OCI
// registry (Distribution Specification v1.1, pull and content discovery): /v2/, manifests by
// tag and digest, blobs by digest (with Range), tag and repository listings with pagination,
// and referrers; every write method is answered 405 UNSUPPORTED.
//
// Repositories are named after the images' tags: REGISTRY/PATH:TAG is served as PATH:TAG,
// with the aliases described in this file's doc (the short name of a docker.io official
// image, and REGISTRY/PATH). An untagged image is not served. A NAME:TAG in several
// archives, or on several images, is served from the first, in the order of archives and of
// their images; the archive's own rule (docker load's: the last image with a tag keeps it)
// applies within an archive first. A tag that names one platform of a manifest list the
// archive holds (Docker 25+, containerd) is served as that list, every manifest of it the
// archive holds by digest.
//
// Manifests are served as the archives' image sources give them: the archive's own bytes
// when it has them, otherwise the one darc builds from the config, the same every run;
// except that layers the image source serves decompressed (xz or bzip2 members), whose size
// it leaves unknown, are read once when their image is first asked for, and the manifest
// served states their sizes. A request by tag whose Accept header does not admit the
// manifest's type is answered as negotiate describes.
//
// Blobs are read from the archive file (or a seekable bundle's frames) by range, never
// buffered whole. Each is hashed once, when a GET first asks for any of it, and sent only if
// it matches its digest (a mismatch is answered 500 and logged); then as stored, by sendfile
// where it can be. Before anything is read from an archive read in place, its files' size,
// modification time and (on Linux) status change time are compared with those they had when
// opened: a file changed since is answered 500 and logged. A file replaced by renaming is
// not a change: the handler keeps reading the one it opened.
//
// The archives must stay open while the handler is in use. The handler is safe for
// concurrent use. Authentication, TLS and request logging belong to the server around it.
func NewHandler(archives []*ReadableArchive, opts ...ServeOption) (http.Handler, error) {
	var o serveOptions
	for _, f := range opts {
		f(&o)
	}
	if o.prefix != "" && !validRepoName(o.prefix) {
		return nil, fmt.Errorf("archive: prefix %q: not a repository name path (lowercase components joined by \"/\")", o.prefix)
	}
	if o.log == nil {
		o.log = func(string) {}
	}
	return newRegistry(archives, o), nil
}

// nameComponent is one component of a repository name, as the distribution spec states it.
var nameComponent = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$`)

// tagPattern is a tag, as the distribution spec states it.
var tagPattern = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)

// maxNameLength bounds a repository name, as distribution does (255).
const maxNameLength = 255

func validRepoName(name string) bool {
	if name == "" || len(name) > maxNameLength {
		return false
	}
	for c := range strings.SplitSeq(name, "/") {
		if !nameComponent.MatchString(c) {
			return false
		}
	}
	return true
}

// registry is the handler. Nothing in it is modified after newRegistry returns, except the
// lazily built per-repository digest indexes, each behind its sync.Once, and checks, a
// sync.Map whose entries each guard themselves with their own mutex.
type registry struct {
	names   []string         // repository names for the catalog, sorted
	repos   map[string]*repo // by name
	aliases map[string]*repo // by alias, for names not in repos
	log     func(string)
	bufs    sync.Pool // *[]byte of copyBuffer bytes
	checks  sync.Map  // *io.SectionReader (a servedBlob's) → *digestCheck
}

// copyBuffer is how much of a blob is read at once: large enough that a seekable bundle's
// frames (4 MiB) are decompressed few times per blob, small enough that 32 pulls at once
// stay within a few tens of megabytes.
const copyBuffer = 512 << 10

// repo is one repository: its tags, and (built on first use) what it serves by digest.
type repo struct {
	name  string
	tags  []string // sorted
	byTag map[string]*entry

	once      sync.Once
	manifests map[digest.Digest]servedManifest
	blobs     map[digest.Digest]servedBlob
	referrers map[digest.Digest][]imgspecv1.Descriptor
}

// entry is one image of one archive, as tags name it.
type entry struct {
	a   *ReadableArchive
	img *tarfile.Image

	once   sync.Once
	served *tarfile.Served
	err    error
}

type servedManifest struct {
	tarfile.ServedManifest
	e *entry
}

type servedBlob struct {
	tarfile.ServedBlob
	e *entry
}

func (e *entry) get() (*tarfile.Served, error) {
	e.once.Do(func() { e.served, e.err = e.img.Served() })
	return e.served, e.err
}

func newRegistry(archives []*ReadableArchive, o serveOptions) *registry {
	reg := &registry{repos: map[string]*repo{}, aliases: map[string]*repo{}, log: o.log}
	reg.bufs.New = func() any { b := make([]byte, copyBuffer); return &b }
	entries := map[*tarfile.Image]*entry{}
	add := func(m map[string]*repo, name, tag string, e *entry) {
		if !validRepoName(name) {
			return
		}
		r := m[name]
		if r == nil {
			r = &repo{name: name, byTag: map[string]*entry{}}
			m[name] = r
		}
		if _, taken := r.byTag[tag]; !taken {
			r.byTag[tag] = e
			r.tags = append(r.tags, tag)
		}
	}
	type alias struct {
		name, tag string
		e         *entry
	}
	var aliases []alias
	for _, a := range archives {
		for _, img := range a.r.Images() {
			for _, t := range img.Tags {
				e := entries[img]
				if e == nil {
					e = &entry{a: a, img: img}
					entries[img] = e
				}
				name, more := repoNames(t, o.prefix)
				add(reg.repos, name, t.Tag(), e)
				for _, n := range more {
					aliases = append(aliases, alias{n, t.Tag(), e})
				}
			}
		}
	}
	for _, al := range aliases {
		if reg.repos[al.name] == nil {
			add(reg.aliases, al.name, al.tag, al.e)
		}
	}
	for _, m := range []map[string]*repo{reg.repos, reg.aliases} {
		for _, r := range m {
			slices.Sort(r.tags)
		}
	}
	for n := range reg.repos {
		reg.names = append(reg.names, n)
	}
	slices.Sort(reg.names)
	return reg
}

// repoNames is the repository an image tag is served under, and its aliases.
func repoNames(t distref.NamedTagged, prefix string) (string, []string) {
	join := func(p string) string {
		if prefix == "" {
			return p
		}
		return prefix + "/" + p
	}
	domain, path := distref.Domain(t), distref.Path(t)
	var aliases []string
	if short, ok := strings.CutPrefix(path, "library/"); ok && domain == "docker.io" {
		aliases = append(aliases, join(short))
	} else if domain != "docker.io" {
		aliases = append(aliases, join(domain+"/"+path))
	}
	return join(path), aliases
}

func (reg *registry) lookup(name string) *repo {
	if r := reg.repos[name]; r != nil {
		return r
	}
	return reg.aliases[name]
}

// index builds the repository's digest index once: every manifest and blob of its images,
// the first image holding a digest serving it. Images that cannot be resolved are logged and
// left out.
func (reg *registry) index(r *repo) {
	r.once.Do(func() {
		r.manifests = map[digest.Digest]servedManifest{}
		r.blobs = map[digest.Digest]servedBlob{}
		r.referrers = map[digest.Digest][]imgspecv1.Descriptor{}
		for _, tag := range r.tags {
			e := r.byTag[tag]
			s, err := e.get()
			if err != nil {
				reg.log(fmt.Sprintf("repository %s: tag %s: %v", r.name, tag, err))
				continue
			}
			for _, m := range s.Manifests {
				if _, dup := r.manifests[m.Digest]; dup {
					continue
				}
				r.manifests[m.Digest] = servedManifest{m, e}
				if subj, desc, ok := referrer(m); ok {
					r.referrers[subj] = append(r.referrers[subj], desc)
				}
			}
			// Blob digests in sorted order, so which image serves a shared blob does not
			// depend on map order.
			ds := make([]digest.Digest, 0, len(s.Blobs))
			for d := range s.Blobs {
				ds = append(ds, d)
			}
			slices.Sort(ds)
			for _, d := range ds {
				if _, dup := r.blobs[d]; !dup {
					r.blobs[d] = servedBlob{s.Blobs[d], e}
				}
			}
		}
		for _, ds := range r.referrers {
			slices.SortFunc(ds, func(a, b imgspecv1.Descriptor) int { return strings.Compare(string(a.Digest), string(b.Digest)) })
		}
	})
}

// referrer reports the subject a manifest refers to, and the descriptor the referrers API
// lists it with.
func referrer(m tarfile.ServedManifest) (digest.Digest, imgspecv1.Descriptor, bool) {
	var parsed struct {
		MediaType    string                `json:"mediaType"`
		ArtifactType string                `json:"artifactType"`
		Config       *imgspecv1.Descriptor `json:"config"`
		Subject      *imgspecv1.Descriptor `json:"subject"`
		Annotations  map[string]string     `json:"annotations"`
	}
	if err := json.Unmarshal(m.Data, &parsed); err != nil || parsed.Subject == nil || parsed.Subject.Digest.Validate() != nil {
		return "", imgspecv1.Descriptor{}, false
	}
	at := parsed.ArtifactType
	if at == "" && parsed.Config != nil {
		at = parsed.Config.MediaType
	}
	return parsed.Subject.Digest, imgspecv1.Descriptor{MediaType: m.MediaType, Digest: m.Digest, Size: int64(len(m.Data)),
		ArtifactType: at, Annotations: parsed.Annotations}, true
}

// Error codes of the distribution spec (and distribution's for pagination).
const (
	codeNameUnknown     = "NAME_UNKNOWN"
	codeNameInvalid     = "NAME_INVALID"
	codeManifestUnknown = "MANIFEST_UNKNOWN"
	codeBlobUnknown     = "BLOB_UNKNOWN"
	codeDigestInvalid   = "DIGEST_INVALID"
	codeUnsupported     = "UNSUPPORTED"
	codeRangeInvalid    = "RANGE_INVALID"
	codePagination      = "PAGINATION_NUMBER_INVALID"
	codeUnknown         = "UNKNOWN"
)

// writeError answers with the spec's error body.
func writeError(w http.ResponseWriter, r *http.Request, status int, code, message string, detail any) {
	type item struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Detail  any    `json:"detail,omitempty"`
	}
	body, _ := json.Marshal(struct {
		Errors []item `json:"errors"`
	}{[]item{{code, message, detail}}})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

func (reg *registry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	p := r.URL.Path
	if p != "/v2" && !strings.HasPrefix(p, "/v2/") {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, r, http.StatusMethodNotAllowed, codeUnsupported, "the registry is read-only", map[string]string{"method": r.Method})
		return
	}
	rest := strings.TrimPrefix(strings.TrimPrefix(p, "/v2"), "/")
	switch rest {
	case "":
		writeJSON(w, r, http.StatusOK, "application/json", []byte("{}"))
		return
	case "_catalog":
		reg.catalog(w, r)
		return
	}
	parts := strings.Split(rest, "/")
	n := len(parts)
	if n < 3 {
		http.NotFound(w, r)
		return
	}
	name, kind, ref := strings.Join(parts[:n-2], "/"), parts[n-2], parts[n-1]
	if kind == "tags" && ref == "list" {
		kind = "tags/list"
	} else if kind != "manifests" && kind != "blobs" && kind != "referrers" {
		http.NotFound(w, r)
		return
	}
	if !validRepoName(name) {
		writeError(w, r, http.StatusBadRequest, codeNameInvalid, "invalid repository name", nil)
		return
	}
	rp := reg.lookup(name)
	if rp == nil {
		writeError(w, r, http.StatusNotFound, codeNameUnknown, "repository name not known to registry", map[string]string{"name": name})
		return
	}
	switch kind {
	case "tags/list":
		reg.tagsList(w, r, rp, name)
	case "manifests":
		reg.manifest(w, r, rp, ref)
	case "blobs":
		reg.blob(w, r, rp, ref)
	case "referrers":
		reg.referrers(w, r, rp, ref)
	}
}

// writeJSON answers with body, or with its headers only for HEAD.
func writeJSON(w http.ResponseWriter, r *http.Request, status int, contentType string, body []byte) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// changed answers 500 (and logs it) when the archive's file is not as it was when opened.
func (reg *registry) changed(w http.ResponseWriter, r *http.Request, a *ReadableArchive) bool {
	err := a.changed()
	if err == nil {
		return false
	}
	reg.log(err.Error())
	writeError(w, r, http.StatusInternalServerError, codeUnknown, "the archive changed since it was opened", nil)
	return true
}

// changed reports whether a file the archive is read from in place (its parts, when split)
// has another size, modification time or (on Linux) status change time than when it was
// opened.
func (a *ReadableArchive) changed() error {
	const stamp = "2006-01-02T15:04:05.000000000Z"
	sources := a.r.Sources()
	for _, src := range sources {
		name := a.path
		if len(sources) > 1 {
			name = src.File.Name()
		}
		st, err := src.File.Stat()
		if err != nil {
			return fmt.Errorf("archive %q: %w", name, err)
		}
		was := src.Info
		switch {
		case st.Size() != was.Size() || !st.ModTime().Equal(was.ModTime()):
			return fmt.Errorf("archive %q changed since it was opened (size %d, modified %s; now size %d, modified %s): not serving from it",
				name, was.Size(), was.ModTime().UTC().Format(stamp), st.Size(), st.ModTime().UTC().Format(stamp))
		case statusChanged(was, st):
			return fmt.Errorf("archive %q changed since it was opened (written to, its times set, renamed or its mode changed: its status change time moved): not serving from it", name)
		}
	}
	return nil
}

func (reg *registry) manifest(w http.ResponseWriter, r *http.Request, rp *repo, ref string) {
	find := reg.manifestByTag
	if strings.Contains(ref, ":") {
		find = reg.manifestByDigest
	}
	m, ok := find(w, r, rp, ref)
	if !ok {
		return
	}
	h := w.Header()
	h.Set("Docker-Content-Digest", m.Digest.String())
	h.Set("ETag", `"`+m.Digest.String()+`"`)
	if inm := r.Header.Get("If-None-Match"); inm != "" && etagMatch(inm, m.Digest) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	mt := m.MediaType
	if mt == "" {
		mt = "application/json"
	}
	writeJSON(w, r, http.StatusOK, mt, m.Data)
}

// manifestByDigest finds the manifest a request names by digest; if there is none, or it
// cannot be served, it answers the request itself (false).
func (reg *registry) manifestByDigest(w http.ResponseWriter, r *http.Request, rp *repo, ref string) (servedManifest, bool) {
	d, err := digest.Parse(ref)
	if err != nil {
		writeError(w, r, http.StatusBadRequest, codeDigestInvalid, "provided digest did not match uploaded content", map[string]string{"digest": ref})
		return servedManifest{}, false
	}
	reg.index(rp)
	m, ok := rp.manifests[d]
	if !ok {
		writeError(w, r, http.StatusNotFound, codeManifestUnknown, "manifest unknown", map[string]string{"digest": ref})
		return servedManifest{}, false
	}
	return m, !reg.changed(w, r, m.e.a)
}

// manifestByTag finds the manifest a request names by tag, as negotiate picks it; if there
// is none, or it cannot be served, it answers the request itself (false).
func (reg *registry) manifestByTag(w http.ResponseWriter, r *http.Request, rp *repo, ref string) (servedManifest, bool) {
	e, ok := rp.byTag[ref]
	if !ok || !tagPattern.MatchString(ref) {
		writeError(w, r, http.StatusNotFound, codeManifestUnknown, "manifest unknown", map[string]string{"tag": ref})
		return servedManifest{}, false
	}
	if reg.changed(w, r, e.a) {
		return servedManifest{}, false
	}
	s, err := e.get()
	if err != nil {
		reg.log(fmt.Sprintf("repository %s: tag %s: %v", rp.name, ref, err))
		writeError(w, r, http.StatusInternalServerError, codeUnknown, "the image cannot be read from the archive", nil)
		return servedManifest{}, false
	}
	m, ok := reg.negotiate(r, rp, servedManifest{s.Top, e})
	if !ok {
		writeError(w, r, http.StatusNotFound, codeManifestUnknown, fmt.Sprintf("the manifest is %s, which the request's Accept header does not admit", m.MediaType), map[string]string{"tag": ref})
	}
	return m, ok
}

// negotiate picks what a manifest request by tag is answered with, much as distribution's
// registry does: the tag's manifest when the request's Accept header admits its media type
// (or there is none), and a Docker schema 2 manifest whatever it says (there is no schema 1
// to convert it to). For a manifest list or OCI index it does not admit, the list's
// linux/amd64 manifest, if the archive holds it and its type is admitted (distribution does
// this for Docker lists only, and answers 404 for an OCI index). Otherwise nothing (false).
// A manifest fetched by digest is served whatever the Accept header says.
func (reg *registry) negotiate(r *http.Request, rp *repo, m servedManifest) (servedManifest, bool) {
	admitted := func(mt string) bool { return accepts(r, mt) || mt == manifest.DockerV2Schema2MediaType }
	if admitted(m.MediaType) {
		return m, true
	}
	var list struct {
		Manifests []imgspecv1.Descriptor `json:"manifests"`
	}
	if json.Unmarshal(m.Data, &list) != nil {
		return m, false
	}
	reg.index(rp)
	for _, d := range list.Manifests {
		if p := d.Platform; p == nil || p.OS != "linux" || p.Architecture != "amd64" {
			continue
		}
		if child, ok := rp.manifests[d.Digest]; ok && admitted(child.MediaType) {
			return child, true
		}
	}
	return m, false
}

// accepts reports whether the request's Accept headers admit media type mt: when there are
// none, or one names mt, */* or application/*. Parameters (q=…) are not weighed.
func accepts(r *http.Request, mt string) bool {
	values := r.Header.Values("Accept")
	if len(values) == 0 {
		return true
	}
	for _, v := range values {
		for item := range strings.SplitSeq(v, ",") {
			t, _, _ := strings.Cut(item, ";")
			switch strings.TrimSpace(t) {
			case mt, "*/*", "application/*":
				return true
			}
		}
	}
	return false
}

// etagMatch reports whether an If-None-Match header names d's ETag (or is "*").
func etagMatch(header string, d digest.Digest) bool {
	for t := range strings.SplitSeq(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == `"`+d.String()+`"` {
			return true
		}
	}
	return false
}

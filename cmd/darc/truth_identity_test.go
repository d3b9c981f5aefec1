package main

import (
	"bytes"
	"encoding/json"
	"os"
	"slices"
	"testing"

	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/darc-dev/darc/internal/archivetest"
)

// The identity class: what an image is. Its ID is the digest of its config's content, whatever
// the config's member name says; its config must parse as docker parses it; its layers must be
// tars; its tags must name their tag; and the archive's own OCI manifest, when it has one, must
// describe the config and the blobs it names. Every docker verdict below was observed by
// TestTruthDocker on dockerd 20.10.
var _ = registerTruth("identity", identityCases)

func TestTruthIdentity(t *testing.T) { checkTruth(t, identityCases(t)) }

// whyOwnManifest is why darc refuses an archive whose own OCI manifest lies, which docker
// 20.10 loads: it reads manifest.json and never looks at index.json.
const whyOwnManifest = "the archive's own OCI manifest (index.json) is the image's identity, and this one lies about its config or blobs: " +
	"serving it would deliver a broken image, building another from the config would silently give the image another digest; " +
	"docker 20.10 loads it because it never reads index.json (Docker 25+ with the containerd store does)"

// idImage is one image for the identity rows: its layer (as stored, and uncompressed) and its
// config, named as containers/image names them unless a row renames them.
type idImage struct {
	layerName string
	layer     []byte // as stored
	config    []byte
	cfgName   string
	repoTags  string // JSON
	extra     []archivetest.Entry
}

// newIDImage is an image of one uncompressed layer (seed) with the generated config, tagged
// busybox:1; edit, when set, changes the config's fields (raw JSON values) first.
func newIDImage(t *testing.T, seed int64, edit func(cfg map[string]json.RawMessage)) idImage {
	layer := archivetest.Layer(seed, 1, 100)
	return idImageOf(t, layer, digest.FromBytes(layer), edit)
}

// idImageOf is newIDImage with a given stored layer and diffID.
func idImageOf(t *testing.T, stored []byte, diffID digest.Digest, edit func(cfg map[string]json.RawMessage)) idImage {
	cfg := archivetest.GenerateConfig([]digest.Digest{diffID})
	if edit != nil {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(cfg, &m); err != nil {
			t.Fatal(err)
		}
		edit(m)
		var err error
		if cfg, err = json.Marshal(m); err != nil {
			t.Fatal(err)
		}
	}
	return idImage{
		layerName: diffID.Encoded() + ".tar", layer: stored,
		config: cfg, cfgName: digest.FromBytes(cfg).Encoded() + ".json",
		repoTags: `["busybox:1"]`,
	}
}

func (i idImage) id() string { return digest.FromBytes(i.config).String() }

func (i idImage) archive() []byte {
	item := `[{"Config":"` + i.cfgName + `","RepoTags":` + i.repoTags + `,"Layers":["` + i.layerName + `"]}]`
	entries := append([]archivetest.Entry{{Name: i.layerName, Body: i.layer}, {Name: i.cfgName, Body: i.config}}, i.extra...)
	return archivetest.Tar(append(entries, archivetest.Entry{Name: "manifest.json", Body: []byte(item)}))
}

// set returns an edit that sets config field key to the raw JSON value.
func set(key, value string) func(map[string]json.RawMessage) {
	return func(m map[string]json.RawMessage) { m[key] = json.RawMessage(value) }
}

// busybox1 is what ls lists for an image tagged busybox:1.
func busybox1(id string) []truthImage {
	return []truthImage{{id: id, tags: []string{"docker.io/library/busybox:1"}}}
}

func identityCases(t *testing.T) []truthCase {
	var cases []truthCase
	add := func(c truthCase) { cases = append(cases, c) }

	// Item 1: the image ID is the config's content digest.
	plain := newIDImage(t, 41, nil)
	add(truthCase{name: "config named by its digest", data: plain.archive(), docker: true, verify: true, load: true, images: busybox1(plain.id())})
	renamed := newIDImage(t, 42, nil)
	renamed.cfgName = digest.FromString("another config").Encoded() + ".json"
	add(truthCase{name: "config named by another digest", data: renamed.archive(), docker: true, verify: true, load: true,
		images: busybox1(renamed.id()), says: []string{"warning", "its name states sha256:" + digest.FromString("another config").Encoded()}})
	crane := newIDImage(t, 43, nil)
	crane.cfgName = "sha256:" + digest.FromString("not this one").Encoded()
	add(truthCase{name: "crane-style config sha256:<hex> naming another digest", data: crane.archive(), docker: true, verify: true, load: true,
		images: busybox1(crane.id()), says: []string{"its name states"}})
	gcr := ggcrMutateLike(t)
	add(truthCase{name: "go-containerregistry mutate testdata: config reformatted after it was named", data: gcr.data, docker: true, verify: true, load: true,
		images: []truthImage{{id: gcr.id, tags: []string{"example.com/pkg/v1/mutate:source_image"}}}, says: []string{"its name states"}})

	// Item 2: the archive's own OCI manifest is checked as it is served.
	layer := archivetest.Layer(44, 1, 200)
	other := archivetest.Layer(45, 1, 200)
	gz := archivetest.GzipBytes(layer)
	zenc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	zst := zenc.EncodeAll(layer, nil)
	own := func(name string, o archivetest.OwnManifest, ok bool, says string) {
		o.Layer = layer
		data, id := archivetest.OwnManifestArchive(o)
		c := truthCase{name: "own OCI manifest: " + name, data: data, docker: true, verify: ok, load: ok, images: busybox1(id.String())}
		if !ok {
			c.why, c.says = whyOwnManifest, []string{says}
		}
		add(c)
	}
	own("true, uncompressed layer", archivetest.OwnManifest{Stored: layer}, true, "")
	own("true, gzip layer", archivetest.OwnManifest{Stored: gz}, true, "")
	own("config size lies", archivetest.OwnManifest{Stored: layer, Edit: func(m *imgspecv1.Manifest) { m.Config.Size++ }}, false, "size mismatch")
	own("layer size lies", archivetest.OwnManifest{Stored: gz, Edit: func(m *imgspecv1.Manifest) { m.Layers[0].Size-- }}, false, "size mismatch")
	own("gzip media type on an uncompressed blob", archivetest.OwnManifest{Stored: layer, OCIMediaType: imgspecv1.MediaTypeImageLayerGzip}, false, "says gzip, the blob is none")
	own("gzip media type on a zstd blob", archivetest.OwnManifest{Stored: layer, OCIBlob: zst, OCIMediaType: imgspecv1.MediaTypeImageLayerGzip}, false, "says gzip, the blob is zstd")
	own("uncompressed media type on a gzip blob", archivetest.OwnManifest{Stored: gz, OCIMediaType: imgspecv1.MediaTypeImageLayer}, false, "the blob is gzip")
	own("uncompressed blob of another layer", archivetest.OwnManifest{Stored: layer, OCIBlob: other}, false, "the config's diffID is")
	own("gzip blob of another layer", archivetest.OwnManifest{Stored: gz, OCIBlob: archivetest.GzipBytes(other)}, false, "the config's diffID is")

	// Item 3: a RepoTags entry must name its tag.
	noTag := newIDImage(t, 46, nil)
	noTag.repoTags = `["busybox"]`
	add(truthCase{name: "RepoTags entry without a tag", data: noTag.archive(), says: []string{`tag "busybox" is not a valid reference`}})
	oneNoTag := newIDImage(t, 47, nil)
	oneNoTag.repoTags = `["busybox:1","example.com/app"]`
	add(truthCase{name: "RepoTags: one entry without a tag beside a tagged one", data: oneNoTag.archive(), says: []string{`"example.com/app" is not a valid reference`}})

	// Item 4: the config parses as docker parses it.
	refused := func(name string, edit func(map[string]json.RawMessage), says string) {
		img := newIDImage(t, 48, edit)
		add(truthCase{name: "config: " + name, data: img.archive(), says: []string{"invalid manifest", says}})
	}
	refused("created not RFC 3339", set("created", `"yesterday"`), "yesterday")
	refused("created empty", set("created", `""`), "cannot parse")
	refused("history created not a time", set("history", `[{"created":"soon"}]`), "soon")
	refused("Size overflows int64", set("Size", `1e30`), "int64")
	refused("StopTimeout overflows int", set("config", `{"StopTimeout":99999999999999999999}`), "int")
	refused("Env a string", set("config", `{"Env":"A=1"}`), "Env")
	refused("Tty a string", set("container_config", `{"Tty":"yes"}`), "Tty")
	refused("architecture a number", set("architecture", `64`), "architecture")
	refused("no rootfs", func(m map[string]json.RawMessage) { delete(m, "rootfs") }, "no rootfs")
	odd := newIDImage(t, 49, func(m map[string]json.RawMessage) {
		m["config"] = json.RawMessage(`{"Entrypoint":null,"ExposedPorts":{"80/tcp":{}},"Labels":{"a":"b"},"StopTimeout":10}`)
		m["CREATED"] = json.RawMessage(`"2024-01-02T03:04:05.5+02:00"`)
		m["x-extension"] = json.RawMessage(`{"any":[1,"two"]}`)
	})
	add(truthCase{name: "config: odd but valid (names in other case, unknown fields)", data: odd.archive(), docker: true, verify: true, load: true, images: busybox1(odd.id())})
	cmd := newIDImage(t, 54, set("config", `{"Cmd":"sh"}`))
	add(truthCase{name: "config: Cmd a string", data: cmd.archive(), docker: true, verify: true, load: false, images: busybox1(cmd.id()),
		why: "docker's container.Config takes a string for Cmd (strslice), but loading into an OCI layout has containers/image convert the config to OCI, whose Cmd is a list: " +
			"copy.Image refuses it (\"cannot unmarshal string into ... Cmd of type []string\"); darc does not rewrite configs"})

	// Item 5: every layer is a tar.
	notTar := bytes.Repeat([]byte("not a tar "), 300)
	raw := idImageOf(t, notTar, digest.FromBytes(notTar), nil)
	add(truthCase{name: "layer: not a tar, correct diffID", data: raw.archive(), says: []string{"invalid layer", "not a tar"}})
	gzNotTar := idImageOf(t, archivetest.GzipBytes(notTar), digest.FromBytes(notTar), nil)
	add(truthCase{name: "layer: gzip of not a tar, correct diffID", data: gzNotTar.archive(), says: []string{"invalid layer"}})
	empty := idImageOf(t, []byte{}, digest.FromBytes(nil), nil)
	add(truthCase{name: "layer: empty (0 bytes)", data: empty.archive(), docker: true, verify: true, load: true, images: busybox1(empty.id())})
	cut := bytes.TrimRight(archivetest.Layer(50, 1, 100), "\x00")
	noEnd := idImageOf(t, cut, digest.FromBytes(cut), nil)
	add(truthCase{name: "layer: tar without its end-of-archive blocks", data: noEnd.archive(), docker: true, verify: true, load: true, images: busybox1(noEnd.id())})
	return cases
}

// ggcrMutateLike is an archive shaped like go-containerregistry's
// pkg/v1/mutate/testdata/source_image_with_empty_layer_history.tar (written by Bazel): one
// layer in a v1 directory with VERSION and json, repositories, a config whose history starts
// with an empty_layer entry, and a config member named by a digest its content does not have
// (here: the digest of the config before it was reformatted, which is how such a name comes
// about).
func ggcrMutateLike(t *testing.T) struct {
	data []byte
	id   string
} {
	layer := archivetest.Layer(51, 2, 4)
	diffID := digest.FromBytes(layer)
	compact := `{"architecture":"amd64","author":"Bazel","config":{},"created":"1970-01-01T00:00:00Z",` +
		`"history":[{"author":"Bazel","created":"1970-01-01T00:00:00Z","created_by":"/bin/sh -c #(nop)  CMD [\"/bin/sh\"]","empty_layer":true},` +
		`{"author":"Bazel","created":"1970-01-01T00:00:00Z","created_by":"bazel build ..."}],` +
		`"os":"linux","rootfs":{"diff_ids":["` + diffID.String() + `"],"type":"layers"}}`
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, []byte(compact), "", " "); err != nil {
		t.Fatal(err)
	}
	v1 := digest.FromString("v1 " + diffID.String()).Encoded()
	cfgName := digest.FromString(compact).Encoded() + ".json"
	data := archivetest.Tar([]archivetest.Entry{
		{Name: v1 + "/VERSION", Body: []byte("1.0")},
		{Name: v1 + "/layer.tar", Body: layer},
		{Name: v1 + "/json", Body: []byte(`{"architecture":"amd64","config":{},"created":"1970-01-01T00:00:00Z","id":"` + v1 + `","os":"linux"}`)},
		{Name: "repositories", Body: []byte(`{"example.com/pkg/v1/mutate":{"source_image":"` + v1 + `"}}`)},
		{Name: "manifest.json", Body: []byte(`[{"Config":"` + cfgName + `","Layers":["` + v1 + `/layer.tar"],"RepoTags":["example.com/pkg/v1/mutate:source_image"]}]`)},
		{Name: cfgName, Body: pretty.Bytes()},
	})
	return struct {
		data []byte
		id   string
	}{data, digest.FromBytes(pretty.Bytes()).String()}
}

// TestLsInvalidTag: an image whose only RepoTags entry has no tag is listed, without a tag
// and without an invented ":latest"; ls --json says which entry was invalid.
func TestLsInvalidTag(t *testing.T) {
	img := newIDImage(t, 52, nil)
	img.repoTags = `["busybox"]`
	path := t.TempDir() + "/a.tar"
	if err := os.WriteFile(path, img.archive(), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := run(t, "ls", "--json", path)
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	var got []lsEntry
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || len(got[0].Tags) != 0 || !slices.Equal(got[0].InvalidTags, []string{"busybox"}) || got[0].ID != img.id() {
		t.Errorf("ls --json: got %+v, want one image %s with no tags and invalid_tags [busybox]", got, img.id())
	}
}

// TestSelectByContentID: @ID selects an image by its config's content digest, not by the
// digest its config's name states.
func TestSelectByContentID(t *testing.T) {
	img := newIDImage(t, 53, nil)
	named := digest.FromString("a name")
	img.cfgName = named.Encoded() + ".json"
	path := t.TempDir() + "/a.tar"
	if err := os.WriteFile(path, img.archive(), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errOut, err := run(t, "inspect", path+":@"+img.id()); err != nil {
		t.Errorf("inspect by content ID: %v\n%s", err, errOut)
	}
	if _, _, err := run(t, "inspect", path+":@"+named.String()); err == nil {
		t.Errorf("inspect by the digest the config's name states: found an image")
	}
}

package main

// The truth tables: for each class of odd archive, a table of archives with the verdict of
// docker load and of every darc command that reads archives. The rule they check is the one
// README's Robustness section states: darc verify exits 0 exactly when docker load would load
// the archive and every loaded image would be the one darc ls lists; ls, inspect and load
// (from the file and from a stream) agree with verify. A row where darc deliberately differs
// from docker says why.
//
// Each class lives in its own file (truth_<class>_test.go) and registers its table here, so
// that TestTruthDocker can hold every row against a real dockerd.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	distref "github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/darc-dev/darc/internal/archivetest"
	"github.com/darc-dev/darc/internal/testtools"
)

// truthCase is one archive and what each reader makes of it.
type truthCase struct {
	name string
	// data is the archive as a file holds it (a plain tar, or compressed).
	data []byte
	// dockerData, when not nil, is what docker load is given instead of data (Docker 20.10
	// reads no zstd: it is given the decompressed tar).
	dockerData []byte
	// docker: docker load (dockerd 20.10) loads it. TestTruthDocker checks this on the daemon.
	docker bool
	// verify: darc verify exits 0.
	verify bool
	// load: darc load into an OCI layout succeeds, from the file and from standard input.
	load bool
	// why darc deliberately differs from docker (verify != docker) or load from verify;
	// required exactly then.
	why string
	// images are what ls lists, in order, when verify passes, and what docker loads.
	images []truthImage
	// says are substrings that verify's output (stdout and stderr) must contain.
	says []string
}

// truthImage is one image as ls lists it.
type truthImage struct {
	id   string   // the config's content digest, "sha256:…"
	tags []string // normalized, as ls --json prints them
}

// truthClasses holds every registered table by class name.
var truthClasses = map[string]func(*testing.T) []truthCase{}

// registerTruth registers a class's table for TestTruthDocker. It returns true so that a
// table file can register itself with a package-level `var _ =`.
func registerTruth(class string, cases func(*testing.T) []truthCase) bool {
	truthClasses[class] = cases
	return true
}

// checkTruth runs every darc command that reads archives on each row and checks that they
// agree with the row (and so with each other).
func checkTruth(t *testing.T, cases []truthCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if differs := c.verify != c.docker || c.load != c.verify; differs != (c.why != "") {
				t.Fatalf("row states why=%q but verify=%v, docker=%v, load=%v: a reason is required exactly when they differ", c.why, c.verify, c.docker, c.load)
			}
			path := filepath.Join(t.TempDir(), "archive.tar")
			if err := os.WriteFile(path, c.data, 0o644); err != nil {
				t.Fatal(err)
			}
			truthVerify(t, c, path)
			var stacks []string
			if c.verify {
				stacks = truthList(t, c, path)
			}
			truthLoad(t, c, path, false, stacks)
			truthLoad(t, c, path, true, stacks)
		})
	}
}

// truthVerify checks darc verify's exit status and output.
func truthVerify(t *testing.T, c truthCase, path string) {
	t.Helper()
	out, errOut, err := run(t, "verify", path)
	all := out + errOut
	if (err == nil) != c.verify {
		t.Errorf("darc verify: error %v, want success=%v\n%s", err, c.verify, all)
	}
	for _, s := range c.says {
		if !strings.Contains(all, s) {
			t.Errorf("darc verify output lacks %q:\n%s", s, all)
		}
	}
}

// truthList checks that ls lists the row's images and that inspect describes each with the
// same ID. It returns the layer stacks inspect reports (see layerStack), sorted.
func truthList(t *testing.T, c truthCase, path string) []string {
	t.Helper()
	out, errOut, err := run(t, "ls", "--json", path)
	if err != nil {
		t.Fatalf("darc ls: %v\n%s", err, errOut)
	}
	var got []lsEntry
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("darc ls --json: %v\n%s", err, out)
	}
	var listed []truthImage
	for _, e := range got {
		listed = append(listed, truthImage{id: e.ID, tags: e.Tags})
	}
	if !equalTruthImages(listed, c.images) {
		t.Errorf("darc ls lists %v, want %v", listed, c.images)
	}
	var stacks []string
	for i := range got {
		out, errOut, err := run(t, "inspect", "--json", fmt.Sprintf("%s:@%d", path, i))
		if err != nil {
			t.Errorf("darc inspect @%d: %v\n%s", i, err, errOut)
			continue
		}
		var d struct {
			ID     string `json:"id"`
			Layers []struct {
				DiffID string `json:"diffID"`
			} `json:"layers"`
		}
		if err := json.Unmarshal([]byte(out), &d); err != nil || d.ID != got[i].ID {
			t.Errorf("darc inspect @%d: id %q (%v), ls says %q", i, d.ID, err, got[i].ID)
		}
		var diffIDs []string
		for _, l := range d.Layers {
			diffIDs = append(diffIDs, l.DiffID)
		}
		stacks = append(stacks, layerStack(diffIDs))
	}
	sort.Strings(stacks)
	return slices.Compact(stacks)
}

// layerStack is an image's diffIDs, base first, as one string: what survives a load into an
// OCI layout unchanged (containers/image rewrites a Docker config as an OCI config there, so
// the config digest does not).
func layerStack(diffIDs []string) string { return strings.Join(diffIDs, ",") }

// truthLoad loads the archive into an OCI layout, from its path or from standard input (the
// single-pass stream path), naming every image so that untagged ones are loaded too, and
// checks that the layout holds exactly the layer stacks inspect reported (when known).
func truthLoad(t *testing.T, c truthCase, path string, stdin bool, stacks []string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	args := []string{"load", "--quiet"}
	for i := range c.images {
		args = append(args, "--name", fmt.Sprintf("@%d=truth.test/image%d:t", i, i))
	}
	var in *bytes.Reader
	how := "from the file"
	if stdin {
		args = append(args, "-", "oci:"+dir)
		in, how = bytes.NewReader(c.data), "from standard input"
	} else {
		args = append(args, path, "oci:"+dir)
	}
	var err error
	var errOut string
	if in != nil {
		_, errOut, err = runIn(t, in, args...)
	} else {
		_, errOut, err = run(t, args...)
	}
	if (err == nil) != c.load {
		t.Errorf("darc load %s: error %v, want success=%v\n%s", how, err, c.load, errOut)
		return
	}
	if err != nil || stacks == nil {
		return
	}
	if got := layoutStacks(t, dir); !slices.Equal(got, stacks) {
		t.Errorf("darc load %s: the layout holds layer stacks %v, inspect reported %v", how, got, stacks)
	}
}

// layoutStacks returns the sorted, distinct layer stacks (see layerStack) of the images an
// OCI layout's index.json names.
func layoutStacks(t *testing.T, dir string) []string {
	t.Helper()
	blob := func(d digest.Digest) string { return filepath.Join(dir, "blobs", d.Algorithm().String(), d.Encoded()) }
	var idx imgspecv1.Index
	readJSON(t, filepath.Join(dir, "index.json"), &idx)
	var out []string
	for _, d := range idx.Manifests {
		var m imgspecv1.Manifest
		readJSON(t, blob(d.Digest), &m)
		var cfg imgspecv1.Image
		readJSON(t, blob(m.Config.Digest), &cfg)
		var diffIDs []string
		for _, id := range cfg.RootFS.DiffIDs {
			diffIDs = append(diffIDs, id.String())
		}
		out = append(out, layerStack(diffIDs))
	}
	sort.Strings(out)
	return slices.Compact(out)
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// truthIDs returns the sorted, distinct IDs of images.
func truthIDs(images []truthImage) []string {
	var out []string
	for _, img := range images {
		out = append(out, img.id)
	}
	sort.Strings(out)
	return slices.Compact(out)
}

func equalTruthImages(a, b []truthImage) bool {
	return slices.EqualFunc(a, b, func(x, y truthImage) bool {
		return x.id == y.id && slices.Equal(x.tags, y.tags)
	})
}

// TestTruthDocker loads every registered row into dockerd 20.10 and checks the row's docker
// verdict: whether it loads, and if so that the daemon then holds exactly the row's images
// with their tags. It is how the tables' docker column is known rather than assumed.
func TestTruthDocker(t *testing.T) {
	if testing.Short() {
		t.Skip("starts dockerd")
	}
	d := testtools.StartDockerd(t)
	classes := slices.Sorted(func(yield func(string) bool) {
		for c := range truthClasses {
			if !yield(c) {
				return
			}
		}
	})
	for _, class := range classes {
		t.Run(class, func(t *testing.T) {
			for _, c := range truthClasses[class](t) {
				t.Run(c.name, func(t *testing.T) { checkDockerVerdict(t, d, c) })
			}
		})
	}
}

// checkDockerVerdict loads one row into the daemon and removes every image again.
func checkDockerVerdict(t *testing.T, d *testtools.Docker, c truthCase) {
	data := c.data
	if c.dockerData != nil {
		data = c.dockerData
	}
	path := filepath.Join(t.TempDir(), "archive.tar")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	defer removeAllImages(t, d)
	out, err := d.Try("load", "-i", path)
	if (err == nil) != c.docker {
		t.Fatalf("docker load: %v, want success=%v\n%s", err, c.docker, out)
	}
	if err != nil {
		return
	}
	ids := strings.Fields(string(d.Run(t, "images", "-aq", "--no-trunc")))
	sort.Strings(ids)
	if want := truthIDs(c.images); !slices.Equal(slices.Compact(ids), want) {
		t.Errorf("docker holds images %v, want %v", ids, want)
	}
	for _, img := range c.images {
		var insp []struct{ RepoTags []string }
		if err := json.Unmarshal(d.Run(t, "image", "inspect", img.id), &insp); err != nil || len(insp) != 1 {
			t.Errorf("docker image inspect %s: %v", img.id, err)
			continue
		}
		for _, tag := range img.tags {
			if !slices.ContainsFunc(insp[0].RepoTags, func(s string) bool { return normalizedTag(s) == tag }) {
				t.Errorf("docker has %s tagged %v, without %s", img.id, insp[0].RepoTags, tag)
			}
		}
	}
}

// normalizedTag is a tag as docker lists it ("busybox:latest") in the form ls prints.
func normalizedTag(s string) string {
	named, err := distref.ParseNormalizedNamed(s)
	if err != nil {
		return s
	}
	return named.String()
}

func removeAllImages(t *testing.T, d *testtools.Docker) {
	for _, id := range strings.Fields(string(d.Run(t, "images", "-aq", "--no-trunc"))) {
		d.Run(t, "image", "rm", "-f", id)
	}
}

// The control class: archives as real tools write them, which every reader loads. It shows
// the harness itself tells a good archive from a bad one before other tables rely on it.
var _ = registerTruth("control", controlCases)

func controlCases(t *testing.T) []truthCase {
	imgs := archivetest.SharedImages()
	var cases []truthCase
	for _, l := range []archivetest.Layout{archivetest.ContainersImage, archivetest.Docker24, archivetest.Docker25, archivetest.BuildKit} {
		opts := archivetest.Options{Layout: l}
		data, err := archivetest.BuildBytes(imgs, opts)
		if err != nil {
			t.Fatal(err)
		}
		var want []truthImage
		for _, x := range archivetest.Expect(imgs, opts) {
			want = append(want, truthImage{id: x.ID.String(), tags: x.Tags})
		}
		cases = append(cases, truthCase{name: l.String(), data: data, docker: true, verify: true, load: true, images: want})
	}
	bad, err := archivetest.BuildBytes(imgs, archivetest.Options{Layout: archivetest.ContainersImage})
	if err != nil {
		t.Fatal(err)
	}
	bad = slices.Clone(bad)
	bad[512+100] ^= 0xff // inside the first layer's data
	cases = append(cases, truthCase{name: "flipped layer byte", data: bad, says: []string{"digest mismatch"}})
	return cases
}

func TestTruthControl(t *testing.T) { checkTruth(t, controlCases(t)) }

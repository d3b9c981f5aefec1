package main

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/darc-dev/darc/archive"
	"github.com/darc-dev/darc/internal/testtools"
	"github.com/darc-dev/darc/reference"
)

// TestVerifyReportForms: verify prints every finding, -q only the errors, --json one object
// saying whether docker load would load the archive; the exit status is the same in all three.
func TestVerifyReportForms(t *testing.T) {
	partial := "../../testdata/archives/ctr/one-platform.tar"  // verifies, with a note
	foreign := "../../testdata/archives/ctr/foreign-layer.tar" // one error
	out, _, err := run(t, "verify", "-q", partial)
	if err != nil || out != "" {
		t.Errorf("verify -q of a good archive: %v, printed %q; want nothing", err, out)
	}
	out, _, err = run(t, "verify", "-q", foreign)
	if err == nil || strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, "error: image @0: ") {
		t.Errorf("verify -q of a bad archive: %v, printed %q; want its one error line", err, out)
	}
	for _, tc := range []struct {
		path     string
		ok       bool
		severity string
	}{{partial, true, "note"}, {foreign, false, "error"}} {
		out, _, err := run(t, "verify", "--json", tc.path)
		var rep verifyReport
		if jerr := json.Unmarshal([]byte(out), &rep); jerr != nil {
			t.Fatalf("verify --json %s: %v\n%s", tc.path, jerr, out)
		}
		if (err == nil) != tc.ok || rep.OK != tc.ok || rep.Images != 1 || len(rep.Findings) != 1 ||
			rep.Findings[0].Severity != tc.severity || rep.Findings[0].Image == nil || *rep.Findings[0].Image != 0 {
			t.Errorf("verify --json %s: exit error %v, report %+v", tc.path, err, rep)
		}
	}
}

// TestInspectShowsConfigAndDigest: inspect shows the digest of the manifest the image is
// served with and how a container starts, as skopeo and docker inspect do.
func TestInspectShowsConfigAndDigest(t *testing.T) {
	path := "../../testdata/archives/podman-save-m.tar:@1"
	out, errOut, err := run(t, "inspect", path)
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	a, err := archive.Open("../../testdata/archives/podman-save-m.tar")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	sel, _ := reference.IndexSelector(1)
	d, err := a.Inspect(sel)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Digest:    " + digest.FromBytes(d.Manifest).String(),
		"Created:   1970-01-01T00:00:00Z",
		`Entrypoint: ["/app/b/run.sh"]`,
		`Cmd:       ["/bin/sh"]`,
		"Env:\n  DARC_IMAGE=b\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect lacks %q:\n%s", want, out)
		}
	}
	js, _, err := run(t, "inspect", "--json", path)
	if err != nil || !strings.Contains(js, `"manifestDigest": "`+digest.FromBytes(d.Manifest).String()+`"`) {
		t.Errorf("inspect --json (%v) lacks the manifest digest:\n%s", err, js)
	}
}

// TestLoadSkippedFails: a load that leaves an untagged image behind exits 1, even with -q,
// and says how to name it; named, it loads.
func TestLoadSkippedFails(t *testing.T) {
	path := "../../testdata/archives/podman-save-m-untagged.tar"
	_, errOut, err := run(t, "load", "-q", path, "oci:"+t.TempDir()+"/l")
	if err == nil || !strings.Contains(errOut, "1 image(s) not loaded, having no tag: @0; name each with --name @INDEX=NAME:TAG") {
		t.Errorf("got %v, stderr %q; want a failure naming @0 and --name", err, errOut)
	}
	if _, errOut, err := run(t, "load", "-q", "--name", "@0=example.com/named:1", path, "oci:"+t.TempDir()+"/l"); err != nil {
		t.Errorf("named: %v\n%s", err, errOut)
	}
}

// TestSaveTagsFromOCIRefName: saving from an OCI layout, a ref name that is a NAME:TAG
// reference is the image's tag; --name @INDEX=NAME:TAG replaces it; an index past the
// sources is an error.
func TestSaveTagsFromOCIRefName(t *testing.T) {
	layout := t.TempDir() + "/l"
	if _, errOut, err := run(t, "load", "-q", "../../testdata/archives/podman-save-m.tar", "oci:"+layout); err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	tagsOf := func(args ...string) []string {
		t.Helper()
		out := t.TempDir() + "/out.tar"
		if _, errOut, err := run(t, append([]string{"save", "-q", "-o", out}, args...)...); err != nil {
			t.Fatalf("save %v: %v\n%s", args, err, errOut)
		}
		js, _, err := run(t, "ls", "--json", out)
		var got []lsEntry
		if err != nil || json.Unmarshal([]byte(js), &got) != nil || len(got) != 1 {
			t.Fatalf("ls: %v\n%s", err, js)
		}
		return got[0].Tags
	}
	if got := tagsOf("oci:" + layout + ":localhost/c:v1"); strings.Join(got, ",") != "localhost/c:v1" {
		t.Errorf("ref name localhost/c:v1 gives tags %v", got)
	}
	if got := tagsOf("--name", "@0=example.com/renamed:2", "oci:"+layout+":localhost/c:v1"); strings.Join(got, ",") != "example.com/renamed:2" {
		t.Errorf("--name gives tags %v", got)
	}
	_, _, err := run(t, "save", "-q", "-o", t.TempDir()+"/x.tar", "--name", "@1=example.com/x:1", "oci:"+layout+":localhost/c:v1")
	if err == nil || !strings.Contains(err.Error(), "@1 is past the 1 source(s)") {
		t.Errorf("--name @1 with one source: got %v", err)
	}
}

// TestCredentialSources: as skopeo, a credentials file named by --authfile or
// $REGISTRY_AUTH_FILE must exist, and $REGISTRY_AUTH_FILE is read; --creds USER without a
// password asks on a terminal and is an error elsewhere.
func TestCredentialSources(t *testing.T) {
	// The registry first: it reads REGISTRY_* variables as its own configuration.
	reg := testtools.StartAuthRegistry(t, "darc", "s3cret")

	missing := t.TempDir() + "/missing.json"
	src := "docker-archive:../../testdata/archives/skopeo-copy.tar"
	_, _, err := run(t, "cp", "--authfile", missing, src, "oci:"+t.TempDir()+"/l")
	if err == nil || !strings.Contains(err.Error(), "--authfile: stat "+missing) {
		t.Errorf("--authfile of a missing file: got %v", err)
	}
	t.Setenv("REGISTRY_AUTH_FILE", missing)
	_, _, err = run(t, "cp", src, "oci:"+t.TempDir()+"/l")
	if err == nil || !strings.Contains(err.Error(), "REGISTRY_AUTH_FILE: stat "+missing) {
		t.Errorf("REGISTRY_AUTH_FILE of a missing file: got %v", err)
	}

	auth := t.TempDir() + "/auth.json"
	token := base64.StdEncoding.EncodeToString([]byte("darc:s3cret"))
	if err := os.WriteFile(auth, []byte(`{"auths":{"`+reg.Addr+`":{"auth":"`+token+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("REGISTRY_AUTH_FILE", auth)
	if _, errOut, err := run(t, "cp", "--tls-verify=false", src, "docker://"+reg.Addr+"/darc/a:1"); err != nil {
		t.Errorf("REGISTRY_AUTH_FILE with the registry's credentials: %v\n%s", err, errOut)
	}
	_, _, err = run(t, "cp", "--tls-verify=false", "--creds", "darc", src, "docker://"+reg.Addr+"/darc/b:1")
	if err == nil || !strings.Contains(err.Error(), "standard input is not a terminal") {
		t.Errorf("--creds without a password, no terminal: got %v", err)
	}
}

// TestArchivePathWithColons: an archive whose file name has colons (a timestamp) is named by
// its path, with or without a selector, in every command and in docker-archive: references.
func TestArchivePathWithColons(t *testing.T) {
	data, err := os.ReadFile("../../testdata/archives/podman-save-m.tar")
	if err != nil {
		t.Fatal(err)
	}
	path := t.TempDir() + "/bundle-2024-01-01T10:00:00.tar"
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"ls", path},
		{"verify", "-q", path},
		{"inspect", path + ":@1"},
		{"inspect", "docker-archive:" + path + ":busybox-like:1"},
		{"cp", "docker-archive:" + path + ":@2", "oci:" + t.TempDir() + "/l"},
		{"save", "-q", "-o", t.TempDir() + "/out.tar", "docker-archive:" + path + ":@0"},
		{"load", "-q", path, "oci:" + t.TempDir() + "/l", "@1"},
	} {
		if _, errOut, err := run(t, args...); err != nil {
			t.Errorf("darc %v: %v\n%s", args, err, errOut)
		}
	}
}

package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/darc-dev/darc/internal/testtools"
)

// TestSaveImageList: save -f reads an image list as k3s's images.txt writes them (registry
// names without a transport, comments, blank lines), beside TRANSPORT: lines and arguments;
// an image listed twice is saved once; a bad line is an error naming file and line before
// anything is fetched.
func TestSaveImageList(t *testing.T) {
	reg := testtools.StartRegistry(t, "")
	if _, errOut, err := run(t, "load", "-q", "--tls-verify=false", "../../testdata/archives/podman-save-m.tar", "docker://"+reg.Addr+"/team"); err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	list := t.TempDir() + "/images.txt"
	text := "# the air-gap bundle\n" +
		reg.Addr + "/team/darc/a:1\n" +
		"\n" +
		reg.Addr + "/team/c:v1   # trailing comment\n" +
		reg.Addr + "/team/darc/a:1\n" + // twice
		"docker-archive:../../testdata/archives/skopeo-copy.tar\n"
	if err := os.WriteFile(list, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir() + "/bundle.tar"
	if _, errOut, err := run(t, "save", "-q", "--tls-verify=false", "-o", out, "-f", list, "docker://"+reg.Addr+"/team/library/busybox-like:1"); err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	js, _, err := run(t, "ls", "--json", out)
	var got []lsEntry
	if err != nil || json.Unmarshal([]byte(js), &got) != nil {
		t.Fatalf("ls: %v\n%s", err, js)
	}
	var tags []string
	for _, e := range got {
		tags = append(tags, strings.Join(e.Tags, "+"))
	}
	want := []string{
		reg.Addr + "/team/library/busybox-like:1",        // the argument first
		reg.Addr + "/team/darc/a:1+example.com/darc/a:1", // skopeo-copy.tar's image is that one
		reg.Addr + "/team/c:v1",
	}
	if strings.Join(tags, " ") != strings.Join(want, " ") {
		t.Errorf("saved %v, want %v", tags, want)
	}

	bad := t.TempDir() + "/bad.txt"
	if err := os.WriteFile(bad, []byte("# fine\n"+reg.Addr+"/team/c:v1\nNot A Name!\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err = run(t, "save", "-q", "-o", t.TempDir()+"/x.tar", "-f", bad)
	if err == nil || !strings.HasPrefix(err.Error(), bad+":3: ") {
		t.Errorf("bad line: got %v, want an error naming %s:3", err, bad)
	}
}

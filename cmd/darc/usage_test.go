package main

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/darc-dev/darc/internal/testtools"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/usage")

// runMain runs darc's main in a child process (TestMain), so that arguments go through the
// real parsing and the exit status is the real one, with stdin as standard input.
func runMain(t *testing.T, stdin io.Reader, args ...string) (stdout, stderr string, status int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "DARC_TEST_MAIN=1")
	cmd.Stdin = stdin
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		status = exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return out.String(), errOut.String(), status
}

// TestUsageGolden runs each command line of issue 12's usage items and compares its exit
// status, standard output and standard error with testdata/usage/NAME.golden, in which the
// fixture directory reads $FIXTURES and the test's temp dir $TMP (go test -update rewrites
// them).
func TestUsageGolden(t *testing.T) {
	tmp := t.TempDir()
	aFile := filepath.Join(tmp, "a-file")
	if err := os.WriteFile(aFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	podman := fixture("podman-save-m.tar")
	for _, tc := range []struct {
		name  string
		stdin string // a fixture read as standard input, or none
		args  []string
	}{
		// item 4: "-" with a selector, and the argument count around it.
		{"inspect-stdin-selector", "podman-save-m.tar", []string{"inspect", "-:@2"}},
		{"inspect-stdin-tag-flag-after", "podman-save-m.tar", []string{"inspect", "-:localhost/c:v1", "--json"}},
		{"inspect-stdin-selector-and-archive", "", []string{"inspect", "-:@2", podman}},
		{"inspect-no-archive", "", []string{"inspect"}},
		// item 8: a dir: destination that cannot be created is one error.
		{"load-dir-under-a-file", "", []string{"load", podman, "dir:" + aFile + "/sub"}},
		// item 10: what DEST can be; a tagged DEST; several archives listed.
		{"load-no-dest", "", []string{"load", "bundle.tar"}},
		{"load-nothing", "", []string{"load"}},
		{"load-tagged-dest", "", []string{"load", "f.tar", "docker://reg/app:1"}},
		{"load-tagged-dest-port-prefix", "", []string{"load", "f.tar", "docker://reg:5000/team/app:1"}},
		{"load-digest-dest", "", []string{"load", "f.tar", "docker://reg/app@sha256:" + strings.Repeat("ab", 32)}},
		{"ls-two-archives", "", []string{"ls", podman, fixture("skopeo-copy.tar")}},
		{"ls-two-archives-one-missing", "", []string{"ls", filepath.Join(tmp, "missing.tar"), fixture("skopeo-copy.tar")}},
		{"ls-two-archives-json", "", []string{"ls", "--json", fixture("skopeo-copy.tar"), fixture("docker20-save-multi.tar")}},
		// item 13: -i names the archive; DEST is still needed.
		{"load-input-no-dest", "", []string{"load", "-i", "bundle.tar"}},
		// item 15: flags merge does not offer; -p below 1.
		{"merge-creds", "", []string{"merge", "--creds", "u:p", "-o", filepath.Join(tmp, "m.tar"), podman}},
		{"merge-parallel", "", []string{"merge", "-p", "2", "-o", filepath.Join(tmp, "m.tar"), podman}},
		{"verify-parallel-negative", "", []string{"verify", "-p", "-3", podman}},
		{"verify-parallel-zero", "", []string{"verify", "--parallel=0", podman}},
		{"save-parallel-zero", "", []string{"save", "-p", "0", "-o", filepath.Join(tmp, "s.tar"), "docker-archive:" + podman}},
		{"load-parallel-negative", "", []string{"load", "-p", "-3", podman, "oci:" + filepath.Join(tmp, "layout")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdin io.Reader
			if tc.stdin != "" {
				f, err := os.Open(fixture(tc.stdin))
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				stdin = f
			}
			stdout, stderr, status := runMain(t, stdin, tc.args...)
			abs, err := filepath.Abs(fixtureDir)
			if err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			got.WriteString("$ darc " + strings.Join(tc.args, " ") + "\n")
			got.WriteString("exit status " + strconv.Itoa(status) + "\n--- stdout\n" + stdout + "--- stderr\n" + stderr)
			text := strings.NewReplacer(tmp, "$TMP", abs, "$FIXTURES", fixtureDir, "$FIXTURES").Replace(got.String())
			golden := filepath.Join("testdata", "usage", tc.name+".golden")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if text != string(want) {
				t.Errorf("got:\n%s\nwant (%s):\n%s", text, golden, want)
			}
		})
	}
}

// TestLoadDirCreates: load into dir:DIR creates DIR and its parents, as oci: does, and
// writes one directory per image.
func TestLoadDirCreates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing", "images")
	if _, _, err := run(t, "load", "-q", fixture("podman-save-m.tar"), "dir:"+dir); err != nil {
		t.Fatal(err)
	}
	for _, i := range []string{"0", "1", "2"} {
		if _, err := os.Stat(filepath.Join(dir, i, "manifest.json")); err != nil {
			t.Error(err)
		}
	}
}

// TestLoadInput: -i/--input names the archive, as docker and podman load take it; selectors
// follow DEST.
func TestLoadInput(t *testing.T) {
	for _, flag := range []string{"-i", "--input"} {
		t.Run(flag, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "layout")
			if _, _, err := run(t, "load", "-q", flag, fixture("podman-save-m.tar"), "oci:"+dir, "@2"); err != nil {
				t.Fatal(err)
			}
			index, err := os.ReadFile(filepath.Join(dir, "index.json"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(index), "localhost/c:v1") || strings.Contains(string(index), "example.com/darc/a") {
				t.Errorf("index.json holds other than image @2 (localhost/c:v1):\n%s", index)
			}
		})
	}
}

// TestVersion: `darc version` and `darc --version` print darc's module version ("(devel)"
// from a checkout), containers/image's module version as go.mod requires it, and Go's.
func TestVersion(t *testing.T) {
	gomod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*go\.podman\.io/image/v5 (v\S+)`).FindSubmatch(gomod)
	if m == nil {
		t.Fatal("go.mod does not require go.podman.io/image/v5")
	}
	want := "darc (devel)\n" +
		"containers/image " + string(m[1]) + " (go.podman.io/image/v5)\n" +
		runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + "\n"
	for _, args := range [][]string{{"version"}, {"--version"}, {"-v"}} {
		stdout, stderr, status := runMain(t, nil, args...)
		if status != 0 || stderr != "" {
			t.Errorf("darc %s: exit status %d, stderr %q", args[0], status, stderr)
		}
		// A test binary records no commit; a build from a checkout may add ", commit …".
		got := regexp.MustCompile(`(?m)^darc \(devel\), commit .*$`).ReplaceAllString(stdout, "darc (devel)")
		if got != want {
			t.Errorf("darc %s:\n%s\nwant:\n%s", args[0], stdout, want)
		}
	}
}

// TestMergeOffersNoRegistryFlags: merge reads local archives only, so its help lists no
// registry flag and no --parallel; --platform applies and is offered.
func TestMergeOffersNoRegistryFlags(t *testing.T) {
	stdout, _, err := run(t, "merge", "--help")
	if err != nil {
		t.Fatal(err)
	}
	_, flags, ok := strings.Cut(stdout, "\nFlags:\n")
	if !ok {
		t.Fatalf("merge --help has no Flags section:\n%s", stdout)
	}
	for _, f := range []string{"--creds", "--authfile", "--tls-verify", "--parallel", "-p,"} {
		if strings.Contains(flags, f) {
			t.Errorf("merge --help offers %s", f)
		}
	}
	if !strings.Contains(flags, "--platform") {
		t.Error("merge --help lacks --platform")
	}
}

// TestTaggedDestSuggestions runs the two commands the error for a tagged load DEST suggests,
// against a registry: each pushes the chosen image under exactly the name DEST gave.
func TestTaggedDestSuggestions(t *testing.T) {
	reg := testtools.StartRegistry(t, "")
	arc := fixture("podman-save-m.tar")
	for _, tag := range []string{"1", "2"} {
		dest := "docker://" + reg.Addr + "/team/app:" + tag
		_, _, err := run(t, "load", arc, dest)
		if err == nil {
			t.Fatalf("load into %s: no error", dest)
		}
		var suggested [][]string
		for _, line := range strings.Split(err.Error(), "\n") {
			if rest, ok := strings.CutPrefix(line, "  darc "); ok {
				suggested = append(suggested, strings.Fields(strings.ReplaceAll(rest, "@INDEX", "@2")))
			}
		}
		if len(suggested) != 2 {
			t.Fatalf("want two suggestions in %q", err)
		}
		// The first suggestion (cp) for tag 1, the second (load --name) for tag 2.
		args := suggested[0]
		if tag == "2" {
			args = suggested[1]
		}
		args = append([]string{args[0], "-q", "--tls-verify=false"}, args[1:]...)
		if _, _, err := run(t, args...); err != nil {
			t.Fatalf("darc %s: %v", strings.Join(args, " "), err)
		}
		layout := filepath.Join(t.TempDir(), "layout")
		if _, _, err := run(t, "cp", "-q", "--tls-verify=false", dest, "oci:"+layout+":x"); err != nil {
			t.Fatalf("%s after darc %s: %v", dest, strings.Join(args, " "), err)
		}
	}
}

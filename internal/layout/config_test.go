package layout

import (
	"strings"
	"testing"
)

// TestParseConfig: ParseConfig accepts what docker load's image.NewFromJSON accepts and
// refuses what it refuses. The truth table in cmd/darc (truth_identity_test.go) holds several
// of these rows (created, Size, StopTimeout, Env, Tty, architecture, no rootfs, names in other
// case) against dockerd 20.10; the others follow from the same Go types.
func TestParseConfig(t *testing.T) {
	rootfs := `"rootfs":{"type":"layers","diff_ids":["sha256:` + hex64 + `"]}`
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"minimal", `{` + rootfs + `}`, true},
		{"docker's fields", `{"architecture":"amd64","os":"linux","created":"2024-01-02T03:04:05.123456789Z","Size":12,` +
			`"config":{"Cmd":"sh","Entrypoint":["/bin/sh","-c"],"ExposedPorts":{"80/tcp":{}},"StopTimeout":10,"Healthcheck":{"Interval":30000000000,"Retries":3},"Labels":{"a":"b"}},` +
			`"container_config":{"Env":["A=1"],"Tty":false},"history":[{"created":"2024-01-02T03:04:05Z","empty_layer":true}],` + rootfs + `}`, true},
		// Names match case-insensitively, as encoding/json matches them for docker.
		{"field names in other case", `{"CREATED":"2024-01-02T03:04:05Z","SIZE":1,` + rootfs + `}`, true},
		// Null leaves a field as it is, for docker too.
		{"null created", `{"created":null,` + rootfs + `}`, true},
		// Fields docker has no type for are not judged.
		{"unknown fields", `{"x-tool":{"anything":[1,"two"]},` + rootfs + `}`, true},

		{"no rootfs", `{"os":"linux"}`, false},
		{"rootfs null", `{"rootfs":null}`, false},
		{"created not RFC 3339", `{"created":"yesterday",` + rootfs + `}`, false},
		{"created empty", `{"created":"",` + rootfs + `}`, false},
		{"created a number", `{"created":1700000000,` + rootfs + `}`, false},
		{"Size overflows int64", `{"Size":1e30,` + rootfs + `}`, false},
		{"Size not an integer", `{"Size":1.5,` + rootfs + `}`, false},
		{"StopTimeout overflows int", `{"config":{"StopTimeout":99999999999999999999},` + rootfs + `}`, false},
		{"healthcheck interval overflows", `{"config":{"Healthcheck":{"Interval":1e19}},` + rootfs + `}`, false},
		{"history created not a time", `{"history":[{"created":"soon"}],` + rootfs + `}`, false},
		{"architecture a number", `{"architecture":64,` + rootfs + `}`, false},
		{"Env a string", `{"config":{"Env":"A=1"},` + rootfs + `}`, false},
		{"Cmd a number", `{"config":{"Cmd":1},` + rootfs + `}`, false},
		{"Tty a string", `{"container_config":{"Tty":"yes"},` + rootfs + `}`, false},
		{"Labels values numbers", `{"config":{"Labels":{"a":1}},` + rootfs + `}`, false},
		{"ExposedPorts a list", `{"config":{"ExposedPorts":["80/tcp"]},` + rootfs + `}`, false},
		{"diff_ids not digests", `{"rootfs":{"type":"layers","diff_ids":["abc"]}}`, false},
		{"not an object", `[]`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.in))
			if (err == nil) != tc.ok {
				t.Errorf("ParseConfig(%s) = %v, want ok %v", tc.in, err, tc.ok)
			}
		})
	}
}

var hex64 = strings.Repeat("ab", 32)

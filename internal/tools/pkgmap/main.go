// Command pkgmap prints a Markdown report of the package map of a Go module: per package
// directory the number of files and lines, the exported top-level names, and for internal/
// packages the exported names no other package refers to; then the longest functions.
// It is meant to be run by scripts/pkgmap.sh, to compare the tree before and after a
// restructure.
//
// It lives under internal/tools/ rather than scripts/ so that `go build ./...` and `go vet
// ./...` keep checking it while it stays out of the module's importable API (internal/ can
// only be imported from within the module, and nothing does), and scripts/ keeps holding
// shell scripts only. Its own directory is left out of the report, since it is the measuring
// instrument and not part of the structure being measured. It uses the standard library only.
//
// Usage: go run ./internal/tools/pkgmap [-top N] [ROOT]
//
// ROOT is the module root (default "."): the directory holding go.mod.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// selfDir is this program's directory relative to the module root; it is not reported.
const selfDir = "internal/tools/pkgmap"

// goFile is one parsed .go file of a package directory.
type goFile struct {
	name  string // relative to the module root, slash-separated
	lines int    // as wc -l counts them: newline characters
	test  bool   // a _test.go file
	ast   *ast.File
}

// pkgDir is one package directory with what was found in it.
type pkgDir struct {
	rel        string // relative to the module root, slash-separated; "." for the root
	importPath string
	name       string // package name of the non-test files
	files      []*goFile

	nFiles, lines, testLines int

	// Exported top-level names by kind; each a set, so that the same name declared in
	// files for different build constraints counts once.
	funcs, methods, types, vars, consts map[string]bool
}

func main() {
	top := flag.Int("top", 15, "number of longest functions to list")
	flag.Parse()
	root := "."
	switch flag.NArg() {
	case 0:
	case 1:
		root = flag.Arg(0)
	default:
		fmt.Fprintln(os.Stderr, "usage: pkgmap [-top N] [ROOT]")
		os.Exit(2)
	}
	if err := run(os.Stdout, root, *top); err != nil {
		fmt.Fprintln(os.Stderr, "pkgmap:", err)
		os.Exit(1)
	}
}

func run(w io.Writer, root string, top int) error {
	modPath, err := modulePath(filepath.Join(root, "go.mod"))
	if err != nil {
		return err
	}
	fset := token.NewFileSet()
	pkgs, err := loadPackages(fset, root, modPath)
	if err != nil {
		return err
	}
	for _, p := range pkgs {
		p.collectExported()
	}
	unused := findUnused(pkgs)

	bw := bufio.NewWriter(w)
	writePackageTable(bw, modPath, pkgs, unused)
	writeUnused(bw, pkgs, unused)
	writeLongest(bw, fset, pkgs, top)
	return bw.Flush()
}

// modulePath reads the module line of a go.mod file.
func modulePath(gomod string) (string, error) {
	data, err := os.ReadFile(gomod)
	if err != nil {
		return "", err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == "module" {
			if p, err := strconv.Unquote(f[1]); err == nil {
				return p, nil
			}
			return f[1], nil
		}
	}
	return "", fmt.Errorf("%s: no module line", gomod)
}

// loadPackages parses every .go file of the module under root, except those in testdata,
// vendor, hidden or _-prefixed directories, nested modules and this program's directory,
// and generated files. All files are read whatever their build constraints.
func loadPackages(fset *token.FileSet, root, modPath string) ([]*pkgDir, error) {
	byDir := map[string]*pkgDir{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			base := d.Name()
			if rel != "." {
				if base == "testdata" || base == "vendor" || strings.HasPrefix(base, ".") ||
					strings.HasPrefix(base, "_") || rel == selfDir {
					return filepath.SkipDir
				}
				if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil {
					return filepath.SkipDir // a nested module
				}
			}
			return nil
		}
		if !d.Type().IsRegular() || !strings.HasSuffix(d.Name(), ".go") {
			return nil
		}
		src, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		f, err := parser.ParseFile(fset, rel, src, parser.ParseComments)
		if err != nil {
			return err
		}
		if ast.IsGenerated(f) {
			return nil
		}
		dir := path.Dir(rel)
		pd := byDir[dir]
		if pd == nil {
			ip := modPath
			if dir != "." {
				ip = modPath + "/" + dir
			}
			pd = &pkgDir{rel: dir, importPath: ip}
			byDir[dir] = pd
		}
		gf := &goFile{
			name:  rel,
			lines: bytes.Count(src, []byte{'\n'}),
			test:  strings.HasSuffix(d.Name(), "_test.go"),
			ast:   f,
		}
		pd.files = append(pd.files, gf)
		if gf.test {
			pd.testLines += gf.lines
		} else {
			pd.nFiles++
			pd.lines += gf.lines
			if pd.name == "" {
				pd.name = f.Name.Name
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var pkgs []*pkgDir
	for _, pd := range byDir {
		if pd.nFiles == 0 {
			// Test files only: no package to map. Its tests still count as users of
			// other packages below, so keep it with an empty name.
			pd.name = ""
		}
		pkgs = append(pkgs, pd)
	}
	sort.Slice(pkgs, func(i, j int) bool { return pkgs[i].rel < pkgs[j].rel })
	return pkgs, nil
}

// collectExported fills the exported-name sets from the package's non-test files.
func (p *pkgDir) collectExported() {
	p.funcs, p.methods, p.types, p.vars, p.consts =
		map[string]bool{}, map[string]bool{}, map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, f := range p.files {
		if f.test {
			continue
		}
		for _, decl := range f.ast.Decls {
			switch d := decl.(type) {
			case *ast.FuncDecl:
				if !d.Name.IsExported() {
					continue
				}
				if d.Recv == nil {
					p.funcs[d.Name.Name] = true
				} else if recv := recvTypeName(d); ast.IsExported(recv) {
					p.methods[recv+"."+d.Name.Name] = true
				}
			case *ast.GenDecl:
				for _, spec := range d.Specs {
					switch s := spec.(type) {
					case *ast.TypeSpec:
						if s.Name.IsExported() {
							p.types[s.Name.Name] = true
						}
					case *ast.ValueSpec:
						set := p.vars
						if d.Tok == token.CONST {
							set = p.consts
						}
						for _, n := range s.Names {
							if n.IsExported() {
								set[n.Name] = true
							}
						}
					}
				}
			}
		}
	}
}

// recvTypeName returns the base type name of a method's receiver: T for T, *T, T[K], *T[K].
func recvTypeName(d *ast.FuncDecl) string {
	if d.Recv == nil || len(d.Recv.List) == 0 {
		return ""
	}
	t := d.Recv.List[0].Type
	for {
		switch x := t.(type) {
		case *ast.StarExpr:
			t = x.X
		case *ast.ParenExpr:
			t = x.X
		case *ast.IndexExpr:
			t = x.X
		case *ast.IndexListExpr:
			t = x.X
		case *ast.Ident:
			return x.Name
		default:
			return ""
		}
	}
}

// isInternal reports whether a package directory is internal/ or below an internal/ element.
func isInternal(rel string) bool {
	return rel == "internal" || strings.HasPrefix(rel, "internal/") ||
		strings.Contains(rel, "/internal/") || strings.HasSuffix(rel, "/internal")
}

// unusedName is an exported top-level name of an internal package that no other package
// refers to as pkg.Name.
type unusedName struct {
	name, kind string
	ownXTest   bool // the package's own external test package (package x_test) refers to it
}

// findUnused returns, per internal package, its exported top-level funcs, types, vars and
// consts that no file of another package (test files included) refers to. A reference is a
// selector expression X.Name where X is an identifier not declared in the file's scopes
// (per the parser's object resolution) and names an import of the package's path, whatever
// local name it was given. Methods are not covered: telling whose method x.M is needs type
// information.
func findUnused(pkgs []*pkgDir) map[string][]unusedName {
	byPath := map[string]*pkgDir{}
	for _, p := range pkgs {
		if p.name != "" {
			byPath[p.importPath] = p
		}
	}
	// used[importPath][name] is set when a file outside the package refers to it;
	// usedXTest when only the package's own external test package does.
	used := map[string]map[string]bool{}
	usedXTest := map[string]map[string]bool{}
	for _, p := range pkgs {
		for _, f := range p.files {
			// A package cannot import itself, so every pkg.Name found is a use from outside;
			// those from its own external test package (same directory, package x_test,
			// importing x) are kept apart.
			local := map[string]string{} // local import name -> import path
			for _, imp := range f.ast.Imports {
				ip, err := strconv.Unquote(imp.Path.Value)
				if err != nil {
					continue
				}
				target := byPath[ip]
				if target == nil {
					continue
				}
				name := target.name
				if imp.Name != nil {
					name = imp.Name.Name
				}
				switch name {
				case "_":
					continue
				case ".":
					// Dot import: every unresolved identifier may be one of its names.
					markDotUses(f.ast, target, used, usedXTest, ip == p.importPath)
					continue
				}
				local[name] = ip
			}
			if len(local) == 0 {
				continue
			}
			ast.Inspect(f.ast, func(n ast.Node) bool {
				sel, ok := n.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				x, ok := sel.X.(*ast.Ident)
				if !ok || x.Obj != nil {
					return true
				}
				ip, ok := local[x.Name]
				if !ok {
					return true
				}
				m := used
				if ip == p.importPath { // an external test of its own package
					m = usedXTest
				}
				if m[ip] == nil {
					m[ip] = map[string]bool{}
				}
				m[ip][sel.Sel.Name] = true
				return true
			})
		}
	}

	out := map[string][]unusedName{}
	for _, p := range pkgs {
		if p.name == "" || !isInternal(p.rel) {
			continue
		}
		var list []unusedName
		for _, k := range []struct {
			kind string
			set  map[string]bool
		}{{"func", p.funcs}, {"type", p.types}, {"var", p.vars}, {"const", p.consts}} {
			for name := range k.set {
				if used[p.importPath][name] {
					continue
				}
				list = append(list, unusedName{name: name, kind: k.kind, ownXTest: usedXTest[p.importPath][name]})
			}
		}
		sort.Slice(list, func(i, j int) bool { return list[i].name < list[j].name })
		out[p.importPath] = list
	}
	return out
}

// markDotUses records the unresolved identifiers of f that are exported names of a
// dot-imported package.
func markDotUses(f *ast.File, target *pkgDir, used, usedXTest map[string]map[string]bool, own bool) {
	m := used
	if own {
		m = usedXTest
	}
	ast.Inspect(f, func(n ast.Node) bool {
		id, ok := n.(*ast.Ident)
		if !ok || id.Obj != nil || !id.IsExported() {
			return true
		}
		name := id.Name
		if target.funcs[name] || target.types[name] || target.vars[name] || target.consts[name] {
			if m[target.importPath] == nil {
				m[target.importPath] = map[string]bool{}
			}
			m[target.importPath][name] = true
		}
		return true
	})
}

func writePackageTable(w io.Writer, modPath string, pkgs []*pkgDir, unused map[string][]unusedName) {
	fmt.Fprintf(w, "## Packages of %s\n\n", modPath)
	fmt.Fprintln(w, "| package | files | lines | test lines | funcs | methods | types | vars | consts | exported | unused outside |")
	fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	var t [10]int
	for _, p := range pkgs {
		if p.name == "" {
			continue
		}
		exported := len(p.funcs) + len(p.methods) + len(p.types) + len(p.vars) + len(p.consts)
		un := "–"
		if isInternal(p.rel) {
			un = strconv.Itoa(len(unused[p.importPath]))
			t[9] += len(unused[p.importPath])
		}
		row := []int{p.nFiles, p.lines, p.testLines, len(p.funcs), len(p.methods), len(p.types),
			len(p.vars), len(p.consts), exported}
		fmt.Fprintf(w, "| %s (%s) |", p.rel, p.name)
		for i, v := range row {
			t[i] += v
			fmt.Fprintf(w, " %d |", v)
		}
		fmt.Fprintf(w, " %s |\n", un)
	}
	// Test lines of directories holding test files only are in the total, not in a row.
	for _, p := range pkgs {
		if p.name == "" {
			t[2] += p.testLines
		}
	}
	fmt.Fprint(w, "| **total** |")
	for _, v := range t {
		fmt.Fprintf(w, " %d |", v)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "files and lines: non-test .go files (lines as `wc -l` counts them); test lines: the")
	fmt.Fprintln(w, "directory's _test.go files. Files of every build constraint are counted; generated files,")
	fmt.Fprintln(w, "testdata and "+selfDir+" are not. funcs … consts: exported top-level names of the")
	fmt.Fprintln(w, "non-test files (methods: exported methods of exported types, as Type.Method); exported:")
	fmt.Fprintln(w, "their sum. unused outside: for internal/ packages, the exported funcs, types, vars and")
	fmt.Fprintln(w, "consts that no other package's files (tests included) refer to as pkg.Name, listed below.")
	fmt.Fprintln(w)
}

func writeUnused(w io.Writer, pkgs []*pkgDir, unused map[string][]unusedName) {
	fmt.Fprintln(w, "## Exported names of internal packages not used outside their package")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "\"x_test only\": referred to only by the package's own external tests (package x_test).")
	fmt.Fprintln(w, "Methods are not checked (that needs type information).")
	fmt.Fprintln(w)
	for _, p := range pkgs {
		list, ok := unused[p.importPath]
		if !ok {
			continue
		}
		total := len(p.funcs) + len(p.types) + len(p.vars) + len(p.consts)
		fmt.Fprintf(w, "### %s: %d of %d\n\n", p.rel, len(list), total)
		if len(list) == 0 {
			fmt.Fprintln(w, "(none)")
			fmt.Fprintln(w)
			continue
		}
		for _, u := range list {
			note := ""
			if u.ownXTest {
				note = " — x_test only"
			}
			fmt.Fprintf(w, "- `%s` (%s)%s\n", u.name, u.kind, note)
		}
		fmt.Fprintln(w)
	}
}

type funcLen struct {
	pos   token.Position
	name  string
	lines int
}

func writeLongest(w io.Writer, fset *token.FileSet, pkgs []*pkgDir, top int) {
	var all []funcLen
	for _, p := range pkgs {
		for _, f := range p.files {
			if f.test {
				continue
			}
			for _, decl := range f.ast.Decls {
				d, ok := decl.(*ast.FuncDecl)
				if !ok || d.Body == nil {
					continue
				}
				name := d.Name.Name
				if d.Recv != nil {
					name = recvTypeName(d) + "." + name
				}
				start := fset.Position(d.Pos())
				end := fset.Position(d.End())
				all = append(all, funcLen{pos: start, name: p.name + "." + name, lines: end.Line - start.Line + 1})
			}
		}
	}
	sort.Slice(all, func(i, j int) bool {
		a, b := all[i], all[j]
		if a.lines != b.lines {
			return a.lines > b.lines
		}
		if a.pos.Filename != b.pos.Filename {
			return a.pos.Filename < b.pos.Filename
		}
		return a.pos.Line < b.pos.Line
	})
	if len(all) > top {
		all = all[:top]
	}
	fmt.Fprintf(w, "## The %d longest functions and methods (non-test code)\n\n", len(all))
	fmt.Fprintln(w, "Lines from the func keyword to the closing brace; function literals count toward the")
	fmt.Fprintln(w, "function that holds them.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| # | lines | function | at |")
	fmt.Fprintln(w, "|--:|--:|---|---|")
	for i, fl := range all {
		fmt.Fprintf(w, "| %d | %d | %s | %s:%d |\n", i+1, fl.lines, fl.name, fl.pos.Filename, fl.pos.Line)
	}
}

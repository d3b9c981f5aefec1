package tarfile

import (
	"archive/tar"
	"fmt"
	"path"
	"strings"
)

// Docker loads an archive by extracting the whole tar into an empty directory, in a chroot,
// and then opening the paths manifest.json names, following symlinks inside that directory.
// The index answers the same question: what a path holds once the tar is extracted. For most
// archives that is simply the last member of each name. When it is not (links, a name used
// twice, a file where a directory is needed), the index replays the extraction over a tree
// of nodes and walks that tree the way the kernel (during extraction) and docker's
// FollowSymlinkInScope (when loading) walk the real directory.
//
// What extraction does with each member, as docker 20.10 does it:
//   - the name is cleaned and anchored at the root: "../x", "/x" and "./x" all land at "x";
//     a member naming the root itself is skipped, whatever its type;
//   - missing parent directories are created; a parent that is a symlink is followed (an
//     absolute target, or ".." past the root, stays inside the root); a parent that is a
//     file, or a symlink leading nowhere, fails the extraction;
//   - whatever already exists at the name is removed, with everything under it, unless both
//     it and the member are directories;
//   - a hard link takes what its target holds at that moment (a later member of the target's
//     name does not change it); a missing target, or a directory, fails the extraction;
//   - PAX global headers are skipped; a type extraction does not know (old GNU sparse files,
//     contiguous files, GNU dump directories, …) fails it.

// maxScopedSteps bounds the walk of a path from manifest.json, counted as docker's
// FollowSymlinkInScope counts it: one step per path component, those of link targets included.
const maxScopedSteps = 255

// maxKernelLinks is how many symlinks the kernel follows in one path (Linux MAXSYMLINKS),
// which bounds the walks extraction itself makes (parent directories, hard-link targets).
const maxKernelLinks = 40

// node is one path of the extracted tree.
type node struct {
	// member is the position in Index.members of the member that made the node; -1 for a
	// directory made implicitly (and the root). A hard link shares its target's node, so a
	// node is never made by a hard-link member.
	member int
	isDir  bool
	// children are a directory's entries by name.
	children map[string]*node
}

func (n *node) child(name string) *node {
	if n.children == nil {
		return nil
	}
	return n.children[name]
}

func (n *node) setChild(name string, c *node) {
	if n.children == nil {
		n.children = make(map[string]*node)
	}
	n.children[name] = c
}

// extractable reports the member types docker's extraction handles.
func extractable(flag byte) bool {
	switch flag {
	case tar.TypeReg, tar.TypeDir, tar.TypeLink, tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return true
	}
	return false
}

// memberName normalizes a member name the way extraction places it: cleaned, anchored at the
// root (a climb above it stops there). It reports whether the name climbed out, and returns
// "" for the root.
func memberName(name string) (clean string, climbed bool) {
	if isClean(name) {
		return name, false
	}
	return strings.TrimPrefix(path.Clean("/"+name), "/"), escapes(name)
}

// finish completes the index once every member is known: it checks whether the last member
// of each name is what extraction leaves, and replays the extraction when it is not.
func (ix *Index) finish() {
	if !ix.needsTree && ix.plainTree() {
		return
	}
	root := &node{member: -1, isDir: true}
	// Nodes are taken from one allocation: most members make exactly one.
	slab := make([]node, 0, len(ix.members))
	for i, m := range ix.members {
		if err := ix.place(root, i, m, &slab); err != nil && ix.extractErr == nil {
			ix.extractErr = fmt.Errorf("member %q: %w", m.Name, err)
		}
	}
	ix.root = root
}

// plainTree reports whether extraction leaves every member at its name, which (with no links
// and no name used twice, checked during the scan) holds unless a member's name passes
// through a member that is not a directory.
func (ix *Index) plainTree() bool {
	for _, m := range ix.members {
		for p := m.Name; ; {
			i := strings.LastIndexByte(p, '/')
			if i < 0 {
				break
			}
			p = p[:i]
			if j, ok := ix.byName[p]; ok {
				if ix.members[j].Type != tar.TypeDir {
					return false
				}
				break // that directory's own ancestors are checked with it
			}
		}
	}
	return true
}

// newNode returns a node taken from slab while it has room.
func newNode(slab *[]node, n node) *node {
	if len(*slab) == cap(*slab) {
		return &n
	}
	*slab = append(*slab, n)
	return &(*slab)[len(*slab)-1]
}

// place extracts member i into the tree rooted at root, taking new nodes from slab.
func (ix *Index) place(root *node, i int, m Member, slab *[]node) error {
	if !extractable(m.Type) {
		return fmt.Errorf("%w: tar type %q, which extraction does not handle", ErrNotExtractable, m.Type)
	}
	dir, base := "", m.Name
	if j := strings.LastIndexByte(m.Name, '/'); j >= 0 {
		dir, base = m.Name[:j], m.Name[j+1:]
	}
	parent, err := root, error(nil)
	if dir != "" {
		parent, err = ix.walk(root, dir, walkMkdir)
	}
	if err != nil {
		return fmt.Errorf("%w: its directory: %w", ErrNotExtractable, err)
	}
	if parent == nil || !parent.isDir {
		return fmt.Errorf("%w: its directory %q cannot be created", ErrNotExtractable, dir)
	}
	old := parent.child(base)
	if old != nil && !(old.isDir && m.Type == tar.TypeDir) {
		delete(parent.children, base) // with everything under it
		old = nil
	}
	switch m.Type {
	case tar.TypeDir:
		if old == nil {
			parent.setChild(base, newNode(slab, node{member: i, isDir: true}))
		}
	case tar.TypeLink:
		target, err := ix.walk(root, m.Linkname, walkLink)
		switch {
		case err != nil:
			return fmt.Errorf("%w: hard link to %q: %w", ErrBadLink, m.Linkname, err)
		case target == nil:
			return fmt.Errorf("%w: hard link to %q, which does not exist at that point", ErrBadLink, m.Linkname)
		case target.isDir:
			return fmt.Errorf("%w: hard link to %q, a directory", ErrBadLink, m.Linkname)
		}
		parent.setChild(base, target)
	default:
		parent.setChild(base, newNode(slab, node{member: i}))
	}
	return nil
}

// walkMode says how a path is walked.
type walkMode int

const (
	// walkMkdir walks a member's directory during extraction, as the kernel does (symlinks
	// followed, at most maxKernelLinks) and creating the path's own missing directories.
	walkMkdir walkMode = iota
	// walkLink walks a hard link's target during extraction, as the kernel does, without
	// following a symlink in the last component.
	walkLink
	// walkScoped walks a path from manifest.json after extraction, as FollowSymlinkInScope
	// does: every symlink followed, a missing component kept (so that a later ".." takes it
	// back), at most maxScopedSteps steps.
	walkScoped
	// walkLstat walks like walkScoped but does not follow a symlink in the last component.
	walkLstat
)

func (m walkMode) scoped() bool { return m == walkScoped || m == walkLstat }

func (m walkMode) followLast() bool { return m == walkMkdir || m == walkScoped }

// walk returns the node at p (slash-separated, relative to root; ".." stops at the root), or
// nil when nothing is there. It fails on a loop or too long a chain, and on a component under
// something that is not a directory.
func (ix *Index) walk(root *node, p string, mode walkMode) (*node, error) {
	n, _, err := ix.walkLinks(root, p, mode)
	return n, err
}

// walkLinks is walk, also saying whether a symlink was followed on the way.
func (ix *Index) walkLinks(root *node, p string, mode walkMode) (*node, bool, error) {
	var buf [16]*node
	stack := append(buf[:0], root) // the directories walked; a nil entry is missing (walkScoped only)
	rest := p
	own := len(rest) // the tail of rest that comes from p itself rather than from a link
	links := 0
	steps := 0
	if mode.scoped() {
		steps = 1 // docker's walk starts with the root's "/", one step
	}
	for ; rest != ""; steps++ {
		if mode.scoped() && steps > maxScopedSteps {
			return nil, links > 0, fmt.Errorf("%q: too many links", p)
		}
		isOwn := own == len(rest)
		var c string
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			c, rest = rest[:j], rest[j+1:]
		} else {
			c, rest = rest, ""
		}
		own = min(own, len(rest))
		cur := stack[len(stack)-1]
		switch {
		case c == "" || c == ".":
			continue
		case c == ".." && !mode.scoped() && cur != nil && !cur.isDir:
			return nil, links > 0, fmt.Errorf("%q: not a directory before \"..\"", p)
		case c == "..":
			if len(stack) > 1 {
				stack = stack[:len(stack)-1]
			}
			continue
		case cur == nil:
			stack = append(stack, nil)
			continue
		case !cur.isDir:
			return nil, links > 0, fmt.Errorf("%q: %q is not a directory", p, c)
		}
		next := cur.child(c)
		if next == nil {
			switch {
			case mode == walkMkdir && isOwn:
				next = &node{member: -1, isDir: true}
				cur.setChild(c, next)
			case mode.scoped():
				stack = append(stack, nil)
				continue
			default:
				return nil, links > 0, nil
			}
		}
		if !next.isDir && ix.members[next.member].Type == tar.TypeSymlink && (rest != "" || mode.followLast()) {
			links++
			if !mode.scoped() && links > maxKernelLinks {
				return nil, links > 0, fmt.Errorf("%q: more than %d links (or a loop)", p, maxKernelLinks)
			}
			target := ix.members[next.member].Linkname
			if strings.HasPrefix(target, "/") {
				stack = stack[:1]
			}
			rest = target + "/" + rest
			continue
		}
		stack = append(stack, next)
	}
	return stack[len(stack)-1], links > 0, nil
}

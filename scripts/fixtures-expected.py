#!/usr/bin/env python3
"""Compute testdata/archives/expected.json from the fixture tarballs themselves.

    fixtures-expected.py --dir DIR FILE...   print the expected.json array for DIR/FILE...
    fixtures-expected.py --count PATH        print the number of images in PATH's manifest.json

For each archive (decompressed first if the whole file is gzip/zstd/xz/bzip2) it reads
manifest.json and, per entry in order:
  index   position in manifest.json
  tags    RepoTags normalized like github.com/distribution/reference (ParseNormalizedNamed),
          [] when RepoTags is null or empty
  id      "sha256:" + sha256 of the config member's bytes
  layers  len(Layers)
  size    sum of the sizes of the layer members as stored in the tar (compressed if the member
          is compressed), after following symlinks/hardlinks to the regular file

It also checks, and fails loudly otherwise, that: the config member's name carries the same
digest as its bytes (when the name has one); every layer member resolves to a regular file;
the (decompressed) layer's sha256 equals the config's rootfs.diff_ids entry.
Standard library only, except `zstd -dc` for zstd data.
"""
import bz2
import gzip
import hashlib
import io
import json
import lzma
import os
import posixpath
import re
import subprocess
import sys
import tarfile


def decompress(data):
    if data[:2] == b"\x1f\x8b":
        return gzip.decompress(data), "gzip"
    if data[:4] == b"\x28\xb5\x2f\xfd":
        return subprocess.run(["zstd", "-dc"], input=data, stdout=subprocess.PIPE, check=True).stdout, "zstd"
    if data[:6] == b"\xfd7zXZ\x00":
        return lzma.decompress(data), "xz"
    # "BZh" alone is not enough (a tar member name can start with it): require the block magic
    if data[:3] == b"BZh" and data[4:10] == b"\x31\x41\x59\x26\x53\x59":
        return bz2.decompress(data), "bzip2"
    return data, None


class Archive:
    def __init__(self, data):
        self.tf = tarfile.open(fileobj=io.BytesIO(data), mode="r:")
        self.members = {}
        for m in self.tf.getmembers():  # a name seen twice: the last one wins, as on extraction
            self.members[self.norm(m.name)] = m

    @staticmethod
    def norm(name):
        name = posixpath.normpath("/" + name).lstrip("/")
        return name

    def resolve(self, name, depth=0):
        if depth > 40:
            raise ValueError("symlink loop at %s" % name)
        name = self.norm(name)
        m = self.members.get(name)
        if m is None:
            raise KeyError("no member %r" % name)
        if m.issym():
            target = m.linkname
            if not target.startswith("/"):
                target = posixpath.join(posixpath.dirname(name), target)
            return self.resolve(target, depth + 1)
        if m.islnk():
            return self.resolve(m.linkname, depth + 1)
        if not m.isfile():
            raise ValueError("member %r is not a regular file" % name)
        return m

    def read(self, name):
        return self.tf.extractfile(self.resolve(name)).read()


def normalize(tag):
    """github.com/distribution/reference ParseNormalizedNamed + TagNameOnly, as a string."""
    name, sep, rest = tag.partition("@")
    digest = sep + rest
    t = ""
    i = name.rfind(":")
    if i > name.rfind("/"):
        name, t = name[:i], name[i + 1:]
    slash = name.find("/")
    first = name[:slash] if slash >= 0 else ""
    if slash >= 0 and (("." in first) or (":" in first) or first == "localhost" or first.lower() != first):
        domain, path = first, name[slash + 1:]
    else:
        domain, path = "docker.io", name
    if domain == "index.docker.io":
        domain = "docker.io"
    if domain == "docker.io" and "/" not in path:
        path = "library/" + path
    out = domain + "/" + path
    if t:
        out += ":" + t
    elif not digest:
        out += ":latest"
    return out + digest


def layer_digest(blob):
    raw, _ = decompress(blob)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def images(path):
    with open(path, "rb") as f:
        data, _ = decompress(f.read())
    a = Archive(data)
    manifest = json.loads(a.read("manifest.json"))
    out = []
    for idx, e in enumerate(manifest):
        cfg = a.read(e["Config"])
        cid = "sha256:" + hashlib.sha256(cfg).hexdigest()
        named = re.search(r"([0-9a-f]{64})", posixpath.basename(e["Config"]))
        if named and named.group(1) != cid[7:]:
            raise SystemExit("%s: config %s has digest %s" % (path, e["Config"], cid))
        diff_ids = json.loads(cfg)["rootfs"]["diff_ids"]
        if len(diff_ids) != len(e["Layers"]):
            raise SystemExit("%s: image %d: %d layers but %d diff_ids" % (path, idx, len(e["Layers"]), len(diff_ids)))
        size = 0
        for ln, want in zip(e["Layers"], diff_ids):
            m = a.resolve(ln)
            size += m.size
            got = layer_digest(a.tf.extractfile(m).read())
            if got != want:
                raise SystemExit("%s: layer %s has diffID %s, config says %s" % (path, ln, got, want))
        out.append({
            "index": idx,
            "tags": [normalize(t) for t in (e.get("RepoTags") or [])],
            "id": cid,
            "layers": len(e["Layers"]),
            "size": size,
        })
    return out


def main(argv):
    if len(argv) == 2 and argv[0] == "--count":
        print(len(images(argv[1])))
        return
    if len(argv) >= 2 and argv[0] == "--dir":
        d, files = argv[1], argv[2:]
        result = [{"file": f, "images": images(os.path.join(d, f))} for f in files]
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])

#!/usr/bin/env python3
"""Checks README.md and docs/*.md: every relative link resolves to a file
(and, with #anchor, to a heading in it), and every repository path quoted
in backticks exists. Run from the repository root; exits 1 on a problem."""
import glob
import os
import re
import sys

DOCS = ["README.md"] + sorted(glob.glob("docs/*.md"))
# Top-level directories a quoted path must start with to be checked.
ROOTS = ("common/", "ca/", "server/", "client/", "tests/", "bench/", "fuzz/",
         "scripts/", "docs/", ".ci/", "certs/README.md")
# Paths that exist only at run time, or are placeholders.
RUNTIME = re.compile(r"(^certs/(?!README\.md))|<|…|\*|fuzz/(corpus|artifacts)/|bench/results")


def anchors(path):
    """GitHub's anchors for the headings of a Markdown file."""
    out, fence = set(), False
    for line in open(path, encoding="utf-8"):
        if line.startswith("```"):
            fence = not fence
        m = None if fence else re.match(r"#+\s+(.*)", line)
        if m:
            text = m.group(1).strip().lower()
            text = re.sub(r"[^\w\- ]", "", text)
            out.add(text.replace(" ", "-"))
    return out


def layout_tree(doc):
    """The paths of the tree drawn in the first code block of `doc`: a line
    `name/  crate` opens a directory, and indented entries are under the
    nearest less-indented directory."""
    block = open(doc, encoding="utf-8").read().split("```")[1]
    stack, out = [], []
    for line in block.splitlines()[1:]:
        m = re.match(r"(\s*)(\S+)", line)
        if not m or not re.match(r"[\w.]", m.group(2)):
            continue
        indent, name = len(m.group(1)), m.group(2)
        if indent > 0 and (not stack or "/" not in name and "." not in name):
            continue  # a continued description
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = "".join(p for _, p in stack) + name
        out.append(path)
        if name.endswith("/"):
            stack.append((indent, name))
    return out


def main():
    problems, links, paths = [], 0, 0
    for doc in DOCS:
        text = open(doc, encoding="utf-8").read()
        base = os.path.dirname(doc)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            links += 1
            file, _, anchor = target.partition("#")
            resolved = os.path.normpath(os.path.join(base, file)) if file else doc
            if not os.path.exists(resolved):
                problems.append(f"{doc}: link to missing {target}")
            elif anchor and resolved.endswith(".md") and anchor not in anchors(resolved):
                problems.append(f"{doc}: link to missing anchor {target}")
        for quoted in re.findall(r"`([^`\s]+)`", text):
            path = quoted.rstrip(".,;:")
            if not path.startswith(ROOTS) or RUNTIME.search(path):
                continue
            paths += 1
            if not os.path.exists(path.split("#")[0]):
                problems.append(f"{doc}: path {path} does not exist")
    tree = layout_tree("docs/layout.md")
    paths += len(tree)
    problems += [f"docs/layout.md: path {t} does not exist" for t in tree if not os.path.exists(t)]
    for p in problems:
        print(p)
    print(f"checked {len(DOCS)} files, {links} links, {paths} paths: "
          f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

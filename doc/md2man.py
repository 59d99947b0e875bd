#!/usr/bin/env python3
"""md2man.py - makes a man page of one of doc/'s markdown pages, with scdoc.

Usage: md2man.py SCDOC VERSION INPUT.md OUTPUT

The build runs it on doc/sluice.md (sluice(1)) and doc/config.md
(sluice.ini(5)), so the man pages say what those pages say, setting by
setting, and carry meson's project version (VERSION) in their footer.

It owns the translation of the small markdown subset doc/'s pages are
written in to scdoc(5), and the tidying of scdoc's output. It does not
render roff itself: scdoc (the program given as SCDOC) does.

The page must open with its man title, "# name(section) - summary". Then:
"## Title" becomes a section (in capitals, as man pages spell them),
"### title" a subsection; paragraphs; "* " or "- " items (continued on
lines indented by two spaces); definition lists ("term", then ":   text"
continued on lines indented by four); code blocks (indented by four
spaces after a blank line, or fenced with ```); and inline `code` (bold),
*emphasis* (underlined), **strong** (bold) and [links](target): a link to
a section of the page reads as that section's title, any other as its
text. Anything else (tables, numbered or nested lists, HTML, a link to a
heading the page lacks) stops the build with the line that holds it, so a
construct the man page would garble cannot slip in unnoticed.

scdoc 1.11 opens every block with a paragraph macro, including those right
after a heading or before the end of an indented block, which mandoc -T
lint reports; it turns hyphenation off before .TH, which turns it back on;
and it keeps a paragraph on one line as given (the translation joins each
paragraph into one). The output is tidied: the blank of an indented block
moves after its end, other empty paragraph macros are dropped, .nh and
.ad l move after .TH (so setting names are not hyphenated), and text lines
are wrapped at 80 bytes.
"""

import re
import subprocess
import sys

WIDTH = 80  # mandoc -T lint's limit for one roff text line, in bytes


class PageError(Exception):
    """A construct of the markdown page the translation does not handle."""

    def __init__(self, path, lineno, message):
        super().__init__(f"{path}:{lineno}: {message}")


def slug(title):
    """The anchor GitHub gives a heading: [Include directive](#include-directive)."""
    title = re.sub(r"[^\w\- ]", "", title.strip().lower())
    return title.replace(" ", "-")


# ---- markdown blocks ----------------------------------------------------------


def parse_blocks(path, lines):
    """Splits the page, after its title line, into (kind, lineno, ...) blocks.

    Kinds: ("section", n, title), ("subsection", n, title), ("para", n, text),
    ("item", n, text), ("def", n, term, text), ("code", n, [lines]). Text is
    still markdown: lines of a paragraph or item are joined by one space.
    """
    blocks = []
    i = 1
    n = len(lines)

    def starts_block(line):
        return (
            line.startswith("#")
            or line.startswith("```")
            or re.match(r"[*-] ", line)
            or re.match(r"\d+\. ", line)
            or line.startswith("|")
            or line.startswith("<")
        )

    while i < n:
        line = lines[i]
        lineno = i + 1
        if not line.strip():
            i += 1
            continue
        if line.startswith("```"):
            body = []
            i += 1
            while i < n and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            if i == n:
                raise PageError(path, lineno, "code block without its closing ```")
            blocks.append(("code", lineno, body))
            i += 1
            continue
        if line.startswith("    "):
            # Only after a blank line (or a heading), as everywhere else the
            # loop has consumed indented lines as continuations already.
            body = []
            while i < n and (lines[i].startswith("    ") or not lines[i].strip()):
                body.append(lines[i][4:])
                i += 1
            while body and not body[-1].strip():
                body.pop()
            blocks.append(("code", lineno, body))
            continue
        m = re.match(r"(#+) (.+)$", line)
        if m:
            level, title = len(m.group(1)), m.group(2).strip()
            if level == 2:
                blocks.append(("section", lineno, title))
            elif level == 3:
                blocks.append(("subsection", lineno, title))
            else:
                raise PageError(path, lineno, "only the title may be a level-1 heading, "
                                "and levels below 3 are not supported")
            i += 1
            continue
        if re.match(r"\s+[*-] ", line) or re.match(r"\s*\d+\. ", line):
            raise PageError(path, lineno, "nested or numbered lists are not supported")
        if line.startswith("|") or line.lstrip().startswith("<"):
            raise PageError(path, lineno, "tables and HTML are not supported")
        if re.match(r"[*-] ", line):
            text = [line[2:].strip()]
            i += 1
            # Continuation lines: indented, or not (markdown's lazy ones).
            while i < n and lines[i].strip():
                nxt = lines[i]
                if re.match(r"\s*[*-] ", nxt) and not nxt.startswith("    "):
                    break
                if not nxt.startswith(" ") and starts_block(nxt):
                    break
                text.append(nxt.strip())
                i += 1
            blocks.append(("item", lineno, " ".join(text)))
            continue
        if i + 1 < n and lines[i + 1].startswith(":   "):
            term = line.strip()
            text = [lines[i + 1][4:].strip()]
            i += 2
            while i < n and lines[i].startswith("    "):
                text.append(lines[i].strip())
                i += 1
            if i < n and lines[i].startswith(":"):
                raise PageError(path, i + 1, "a term may have one definition only")
            blocks.append(("def", lineno, term, " ".join(text)))
            continue
        text = []
        while i < n and lines[i].strip() and not (text and starts_block(lines[i])):
            if i + 1 < n and lines[i + 1].startswith(":   ") and text:
                break
            text.append(lines[i].strip())
            i += 1
        blocks.append(("para", lineno, " ".join(text)))
    return blocks


# ---- inline markup --------------------------------------------------------------

SCDOC_SPECIAL = re.compile(r"([\\*_])")
MD_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|<>])")


def escape(text):
    """Text scdoc must copy as it is: its markup characters escaped."""
    return SCDOC_SPECIAL.sub(r"\\\1", text)


def plain(text):
    """Markdown text without code spans or links: emphasis, escapes, the rest literal."""
    out = []
    pos = 0
    for m in re.finditer(r"\*\*(.+?)\*\*|(?<![\w*])\*([^*\s](?:[^*]*[^*\s])?)\*(?![\w*])", text):
        out.append(escape(MD_ESCAPE.sub(r"\1", text[pos:m.start()])))
        if m.group(1) is not None:
            out.append("*" + escape(MD_ESCAPE.sub(r"\1", m.group(1))) + "*")
        else:
            out.append("_" + escape(MD_ESCAPE.sub(r"\1", m.group(2))) + "_")
        pos = m.end()
    out.append(escape(MD_ESCAPE.sub(r"\1", text[pos:])))
    return "".join(out)


def inline(text, anchors, path, lineno):
    """One block's markdown text as scdoc text: code spans bold, links as their words."""

    def link(m):
        words, target = m.group(1), m.group(2)
        if target.startswith("#"):
            if target[1:] not in anchors:
                raise PageError(path, lineno, f"link to {target}, a heading this page lacks")
            return anchors[target[1:]]
        return words

    text = re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", link, text)
    out = []
    pos = 0
    for m in re.finditer(r"`([^`]+)`", text):
        out.append(plain(text[pos:m.start()]))
        out.append("*" + escape(m.group(1)) + "*")
        pos = m.end()
    rest = text[pos:]
    if "`" in rest:
        raise PageError(path, lineno, "a ` without its closing one")
    out.append(plain(rest))
    return "".join(out)


def section_title(title):
    """A section title in capitals, but for [section] names, which are case-sensitive."""
    parts = re.split(r"(\[[^\]]*\])", title.replace("`", ""))
    return "".join(p if p.startswith("[") else p.upper() for p in parts)


def to_scdoc(path, text, version):
    """The scdoc(5) source of a markdown page."""
    lines = text.split("\n")
    m = re.match(r"# ([\w.-]+)\((\d)\) - (.+)$", lines[0])
    if not m:
        raise PageError(path, 1, 'the page must open with "# name(section) - summary"')
    name, section, summary = m.groups()

    blocks = parse_blocks(path, lines)
    anchors = {}
    for b in blocks:
        if b[0] == "section":
            anchors[slug(b[2])] = section_title(b[2])
        elif b[0] == "subsection":
            anchors[slug(b[2])] = b[2].replace("`", "")

    out = [f'{name.upper()}({section}) "sluice {version}" "sluice manual"', ""]
    out += ["# NAME", "", f"{escape(name)} - {inline(summary, anchors, path, 1)}", ""]
    prev = None
    for b in blocks:
        kind, lineno = b[0], b[1]
        if kind != "item" and prev == "item":
            out.append("")
        if kind == "section":
            out += ["# " + section_title(b[2]), ""]
        elif kind == "subsection":
            if re.search(r"[\\*`]", b[2]):
                raise PageError(path, lineno, "a subsection title must be plain text")
            out += ["## " + b[2], ""]
        elif kind == "para":
            out += [inline(b[2], anchors, path, lineno), ""]
        elif kind == "item":
            out.append("- " + inline(b[2], anchors, path, lineno))
        elif kind == "def":
            term = inline(b[2], anchors, path, lineno)
            if "`" not in b[2] and "*" not in b[2]:
                term = "*" + term + "*"
            out += [term, "\t" + inline(b[3], anchors, path, lineno), ""]
        elif kind == "code":
            out.append("```")
            out += [line.replace("\\", "\\\\") for line in b[2]]
            out += ["```", ""]
        prev = kind
    if prev == "item":
        out.append("")
    return "\n".join(out)


# ---- scdoc's output, tidied ----------------------------------------------------------


def wrap(line):
    """A roff text line cut at spaces into lines of at most WIDTH bytes, where possible.

    A cut is made only at an unescaped single space, and never before a "."
    or "'" (which would start a request), so the text reads the same.
    """
    pieces = []
    while len(line.encode()) > WIDTH:
        cut = -1
        for j, ch in enumerate(line):
            if len(line[:j].encode()) > WIDTH:
                break
            if ch != " " or j == 0 or j + 1 >= len(line):
                continue
            backslashes = len(line[:j]) - len(line[:j].rstrip("\\"))
            if backslashes % 2 == 0 and line[j + 1] not in " .'" and line[j - 1] != " ":
                cut = j
        if cut < 0:
            break
        pieces.append(line[:cut])
        line = line[cut + 1:]
    pieces.append(line)
    return pieces


def tidy(roff):
    """scdoc's roff without empty paragraph macros or trailing blanks, wrapped at WIDTH."""
    lines = [line.rstrip() if not line.endswith("\\ ") else line for line in roff.split("\n")]
    # The blank line that ends an indented block goes after it, where
    # mandoc and groff both keep it ("PP empty" is skipped before .RE).
    for idx in range(len(lines) - 1):
        if lines[idx] == ".P" and lines[idx + 1] == ".RE":
            lines[idx], lines[idx + 1] = ".RE", ".P"
    # .TH turns hyphenation and adjusting back on: scdoc's .nh and .ad l go after it.
    adjust = [x for x in lines if x in (".nh", ".ad l")]
    lines = [x for x in lines if x not in adjust]
    th = next(idx for idx, x in enumerate(lines) if x.startswith(".TH "))
    lines[th + 1:th + 1] = adjust
    heads = (".TH", ".SH", ".SS", ".P", ".RS", ".nh", ".ad")
    kept = []
    for idx, line in enumerate(lines):
        if line == ".P":
            before = kept[-1] if kept else ""
            after = next((x for x in lines[idx + 1:] if x != ""), "")
            if before.split(" ")[0] in heads or after.split(" ")[0] in (".SH", ".SS", ".RE", ".P", ""):
                continue
        kept.append(line)
    out = []
    nofill = False
    for line in kept:
        if line.startswith(".nf"):
            nofill = True
        elif line.startswith(".fi"):
            nofill = False
        if nofill or line.startswith(".") or line.endswith("\\c") or "\\{" in line:
            out.append(line)
        else:
            out += wrap(line)
    return "\n".join(out).rstrip("\n") + "\n"


def main(argv):
    if len(argv) != 5:
        sys.stderr.write("usage: md2man.py SCDOC VERSION INPUT.md OUTPUT\n")
        return 2
    scdoc, version, src, dst = argv[1:]
    with open(src, encoding="utf-8") as f:
        text = f.read()
    try:
        scd = to_scdoc(src, text, version)
    except PageError as e:
        sys.stderr.write(f"md2man.py: {e}\n")
        return 1
    run = subprocess.run([scdoc], input=scd, capture_output=True, text=True)
    if run.returncode != 0:
        sys.stderr.write(f"md2man.py: scdoc failed on {src}: {run.stderr}")
        return 1
    with open(dst, "w", encoding="utf-8") as f:
        f.write(tidy(run.stdout))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

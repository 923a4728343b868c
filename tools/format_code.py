"""Formats the code cells of notebooks to at most 100 characters a line, with `ruff format`, cell by cell.

    python tools/format_code.py nbs/06_stdit.ipynb nbs/07_rflow.ipynb   # rewrite the cells that need it
    python tools/format_code.py --check nbs/*.ipynb                      # exit 1 if any cell would change
    python tools/format_code.py --all nbs/05_layers.ipynb                # every code cell, not only the long ones

By default only the cells with a line over the limit are formatted, so that the diff is the cells a reader would
have scrolled (`--all` formats every code cell). Each cell's source goes through `ruff format --line-length 100`
with the quotes left as written; what ruff cannot read is kept as it is: nbdev's `#|` directive lines at the top
of a cell, IPython lines (`%magic`, `!shell`, `%%cell` magics, `x?`) and cells ruff cannot parse (named, left
unchanged). Full-line comments over the limit are wrapped at spaces, and so are
one-line string literals that stand alone on a line: docstrings (made triple-quoted) and strings inside brackets
(split into adjacent literals, the same value), and the long lines of triple-quoted docstrings. Every formatted cell is checked to parse to the same program as before (Python's `ast`, docstrings up to
whitespace); one that would not is left as it is and named. Formatting is idempotent: a second run changes nothing. Lines that stay long (a long string or docstring,
a comment after code) are listed at the end, to be wrapped by hand; they do not make `--check` fail unless `--strict`.
Outputs and execution counts are not touched, so a formatted notebook needs no re-execution; run `nbdev_export`
afterwards for the exported cells' modules (and `nbdev_clean`).
"""
import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

LIMIT = 100
_directive = re.compile(r"^\s*#\|")
_ipython = re.compile(r"^\s*(%|!)|^\s*\w[\w.]*\?{1,2}\s*$")


def _ruff():
    exe = shutil.which("ruff")
    if exe is None:
        sys.exit("ruff is missing: pip install ruff (the dev extra has it)")
    return exe


def format_source(src, limit=LIMIT, ruff=None):
    "The cell's source formatted (a string), or None when ruff cannot parse it."
    lines = src.split("\n")
    head = 0
    while head < len(lines) and (_directive.match(lines[head]) or (not lines[head].strip() and head < len(lines) - 1
                                                                    and _directive.match(lines[head + 1]))):
        head += 1
    directives, body = lines[:head], lines[head:]
    if any(l.lstrip().startswith("%%") for l in body[:1]):
        return None  # a cell magic: the cell is not Python
    magics = {}
    for i, l in enumerate(body):
        if _ipython.match(l):
            key = f"# __format_code_keep_{i}__"
            magics[key] = l.strip()
            body[i] = l[: len(l) - len(l.lstrip())] + key
    code = "\n".join(body).strip("\n")
    if not code:
        return src
    r = subprocess.run([ruff or _ruff(), "format", "--line-length", str(limit), "--config",
                        "format.quote-style='preserve'", "--stdin-filename", "cell.py", "-"],
                       input=code + "\n", capture_output=True, text=True, check=False)
    if r.returncode:
        return None
    out = wrap_comments(r.stdout.rstrip("\n"), limit)
    if not same_program(code, out):
        return None
    wrapped = wrap_docstrings(wrap_strings(out, limit), limit)
    if wrapped != out:  # the strings split: ruff must still read it (and has the last word on the layout)
        r = subprocess.run([ruff or _ruff(), "format", "--line-length", str(limit), "--config",
                            "format.quote-style='preserve'", "--stdin-filename", "cell.py", "-"],
                           input=wrapped + "\n", capture_output=True, text=True, check=False)
        if r.returncode == 0 and same_program(code, r.stdout):
            out = r.stdout.rstrip("\n")
    for key, line in magics.items():
        out = re.sub(r"^(\s*)" + re.escape(key) + r"$", lambda m: m.group(1) + line, out, flags=re.MULTILINE)
    return "\n".join(directives + [out]) if directives else out


def _normalised(tree):
    "The tree with every docstring's whitespace collapsed (wrapping a docstring changes only that)."
    import ast
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and \
                isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            body[0].value.value = " ".join(body[0].value.value.split())
    return ast.dump(tree)


def same_program(before, after):
    "Whether two sources parse to the same program (docstrings compared up to whitespace)."
    import ast
    try:
        return _normalised(ast.parse(before)) == _normalised(ast.parse(after))
    except SyntaxError:
        return False


_comment = re.compile(r"^(\s*)(#:?)\s(.*)$")


def wrap_comments(src, limit=LIMIT):
    "Full-line comments over `limit` wrapped at spaces into several comment lines (`#:` doc comments stay `#:`)."
    import textwrap
    out = []
    for line in src.split("\n"):
        m = _comment.match(line)
        if len(line) <= limit or not m or line.lstrip().startswith("#|"):
            out.append(line)
            continue
        indent, mark, text = m.groups()
        prefix = f"{indent}{mark} "
        out += textwrap.wrap(text, width=limit, initial_indent=prefix, subsequent_indent=prefix,
                             break_long_words=False, break_on_hyphens=False) or [line]
    return "\n".join(out)


_lone_string = re.compile(r'^(\s*)([fF]?)(")((?:[^"\\]|\\.)*)"(\s*[,)]?\s*)$')


def _split_at(text, width, fstring):
    "Where to split `text` (a string literal's content) at a space before `width`: outside any {field} of an f-string."
    depth, best = 0, None
    for i, ch in enumerate(text[:width]):
        if fstring and ch == "{":
            depth += 1
        elif fstring and ch == "}":
            depth = max(0, depth - 1)
        elif ch == " " and depth == 0 and i > 0:
            best = i + 1  # the space stays at the end of the first piece
    return best


def wrap_strings(src, limit=LIMIT):
    """Long one-line string literals that stand alone on a line, split so that no piece passes `limit`:
    a docstring (after a line ending in `:`) becomes a triple-quoted one wrapped at spaces; a string inside brackets
    (after a line ending in `(`, `[`, `{` or `,`) becomes adjacent literals, which Python joins into the same
    value. Any other long string is left (to be wrapped by hand)."""
    import textwrap
    lines, out = src.split("\n"), []
    for line in lines:
        m = _lone_string.match(line)
        prev = next((l.rstrip() for l in reversed(out) if l.strip()), "")
        if len(line) <= limit or not m:
            out.append(line)
            continue
        indent, prefix, _, text, tail = m.groups()
        if prev.endswith(":") and not prefix and not tail.strip() and '"""' not in text and not text.endswith("\\"):
            body = textwrap.wrap(text, width=limit - len(indent), break_long_words=False, break_on_hyphens=False)
            if len(body) < 2 or len(indent) + 3 + len(body[0]) > limit:
                body = textwrap.wrap(text, width=limit - len(indent) - 3, break_long_words=False,
                                     break_on_hyphens=False)
            body[0] = '"""' + body[0]
            body[-1] = body[-1] + ('"""' if len(indent) + len(body[-1]) + 3 <= limit else "")
            out += [indent + b for b in body] + ([] if body[-1].endswith('"""') else [indent + '"""'])
        elif prev.endswith(("(", "[", "{", ",")):
            pieces, rest = [], text
            room = limit - len(indent) - len(prefix) - 2
            while len(rest) > room:
                at = _split_at(rest, room, bool(prefix))
                if not at:
                    break
                pieces.append(rest[:at])
                rest = rest[at:]
            pieces.append(rest)
            out += [f'{indent}{prefix}"{p}"' for p in pieces[:-1]] + [f'{indent}{prefix}"{pieces[-1]}"{tail}']
        else:
            out.append(line)
    return "\n".join(out)


def wrap_docstrings(src, limit=LIMIT):
    """Lines of triple-quoted docstrings over `limit` broken at their last space before it, the rest on a new line
    at the docstring's indentation (only whitespace inside the docstring changes; markdown table rows are left)."""
    import ast
    try:
        tree = ast.parse(src)
    except SyntaxError:
        return src
    lines = src.split("\n")
    spans = []
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and \
                isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            d = body[0].value
            first = lines[d.lineno - 1]
            if first[d.col_offset:].lstrip("rRuU")[:3] in ('"""', "'''"):
                spans.append((d.lineno - 1, d.end_lineno - 1, d.col_offset))
    for start, end, col in sorted(spans, reverse=True):
        out = []
        for line in lines[start:end + 1]:
            while len(line) > limit and not line.lstrip().startswith("|"):
                cut = line.rfind(" ", col + 4, limit + 1)
                if cut <= col + 3 or not line[:cut].strip():
                    break
                out.append(line[:cut].rstrip())
                line = " " * col + line[cut + 1:]
            out.append(line)
        lines[start:end + 1] = out
    return "\n".join(lines)


def _source(cell):
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else s


def long_lines(src, limit=LIMIT):
    return [l for l in src.split("\n") if len(l) > limit]


def format_notebook(path, check=False, every=False, limit=LIMIT):
    """Formats one notebook in place (not with `check`). Returns (cells changed, cells ruff could not parse,
    lines still over the limit)."""
    path = Path(path)
    text = path.read_text()
    nb = json.loads(text)
    changed, unparsed, still = [], [], []
    ruff = _ruff()
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        src = _source(cell)
        if not every and not long_lines(src, limit):
            continue
        new = format_source(src, limit, ruff)
        if new is None:
            unparsed.append(i)
            new = src
        if new != src:
            changed.append(i)
            if not check:
                cell["source"] = new.splitlines(keepends=True)
        still += [(i, l) for l in long_lines(new, limit)]
    if changed and not check:
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return changed, unparsed, still


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("notebooks", nargs="+")
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a cell would change")
    ap.add_argument("--all", action="store_true", help="format every code cell, not only those with a long line")
    ap.add_argument("--strict", action="store_true", help="also fail when lines over the limit remain")
    ap.add_argument("--line-length", type=int, default=LIMIT)
    a = ap.parse_args(argv)
    bad = False
    for nb in a.notebooks:
        changed, unparsed, still = format_notebook(nb, a.check, a.all, a.line_length)
        verb = "would reformat" if a.check else "reformatted"
        if changed:
            print(f"{nb}: {verb} {len(changed)} cell(s): {changed}")
            bad |= a.check
        for i in unparsed:
            print(f"{nb}: cell {i}: ruff cannot parse it, left as it is")
        for i, l in still:
            print(f"{nb}: cell {i}: {len(l)} characters, wrap by hand: {l.strip()[:80]}")
        bad |= a.strict and bool(still)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()

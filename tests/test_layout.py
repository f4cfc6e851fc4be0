"""The layout shows the product apart from the lab: the core never loads the lab, every module
says its job in its first docstring line, and the README's layout table lists every module."""
import ast
import os
import subprocess
import sys

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..")
PACKAGE = os.path.join(ROOT, "invgc_faiss")


def modules():
    for folder, _, files in os.walk(PACKAGE):
        if "__pycache__" in folder:
            continue
        for name in sorted(files):
            if name.endswith(".py"):
                yield os.path.relpath(os.path.join(folder, name), ROOT).replace(os.sep, "/")


def test_importing_the_library_does_not_import_the_lab():
    code = ("import sys, invgc_faiss; "
            "print(sorted(m for m in sys.modules if m.startswith('invgc_faiss.lab')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         check=True).stdout.strip()
    assert out == "[]"


def test_core_modules_never_import_the_lab_at_module_level():
    for path in modules():
        if path.startswith("invgc_faiss/lab/") or path.endswith("__main__.py"):
            continue
        tree = ast.parse(open(os.path.join(ROOT, path)).read())
        for node in tree.body:  # module level only: lazy imports inside functions are opt-in
            if isinstance(node, ast.ImportFrom):
                assert "lab" not in (node.module or "").split("."), path


@pytest.mark.parametrize("path", list(modules()))
def test_every_module_opens_with_one_line_that_says_its_job(path):
    doc = ast.get_docstring(ast.parse(open(os.path.join(ROOT, path)).read()))
    if path.endswith("__main__.py"):
        return
    assert doc and doc.splitlines()[0].strip(), f"{path} has no opening docstring line"


def test_readme_layout_table_lists_every_module():
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    missing = [p for p in modules() if not p.endswith(("__init__.py", "__main__.py"))
               and f"`{p}`" not in readme]
    assert not missing, f"README layout table misses {missing}"

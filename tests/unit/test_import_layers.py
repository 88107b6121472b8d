"""The package layering, read from the source with `ast` (no module is imported, no process started).

Layers, top to bottom (a package imports only packages below it, never one beside or above it):

    __main__ -> cli
    cli      -> everything below it but testing
    testing  -> anything below cli (the shipped test helpers start servers, send load, inject faults)
    perf     -> server, repository, spec and the base modules
    builder  -> server, repository, serving, spec and the base modules. The builder starts a local server to
                check what it built (builder/serving_check.py, probe_sample.py, serving_graph.py) and asks the
                server's environment which ONNX Runtime the served model will run (serving_ort.py); the server
                never imports the builder.
    server   -> repository, spec and the base modules
    repository -> serving (the contracts the served model reads), spec and the base modules
    client   -> the base modules only (it talks to any Triton server)
    spec     -> dtypes, errors
    serving  -> nothing of tritonforge: its modules are copied into the served model as the package
                `tritonforge_serving` and import each other relatively (or as tritonforge_serving.*), plus the
                stdlib and the serving environment's packages (SERVING_THIRD_PARTY)
    base modules: errors, dtypes (-> errors), hashing, hardware, and the package root (__version__)

Every import counts, at module level or inside a function. An edge is one (importing module, imported module);
`KNOWN` lists the edges that break the layering today and that other work in progress removes.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "tritonforge"

BASE = {"tritonforge", "errors", "dtypes", "hashing", "hardware", "extras"}
ALLOWED: dict[str, set[str]] = {
    "tritonforge": set(),
    "errors": set(),
    "extras": {"errors"},
    "dtypes": {"errors"},
    "hashing": set(),
    "hardware": set(),
    "spec": {"dtypes", "errors"},
    "serving": set(),
    "client": BASE,
    "repository": BASE | {"spec", "serving"},
    "server": BASE | {"spec", "serving", "repository", "client"},
    "builder": BASE | {"spec", "serving", "repository", "server"},
    "perf": BASE | {"spec", "serving", "repository", "server"},
    "testing": BASE | {"spec", "serving", "repository", "server", "builder", "perf", "client"},
    "cli": BASE | {"spec", "serving", "repository", "server", "builder", "perf", "client"},
    "__main__": {"cli"},
}
# Third-party packages the serving modules may import: the serving environment's (serving/requirements.txt)
# and the Python backend's own module.
SERVING_THIRD_PARTY = {"numpy", "onnxruntime", "tokenizers", "redis", "triton_python_backend_utils", "tritonforge_serving"}

# Layering breaks accepted for now (none: a new one must be fixed, or listed here with its reason):
KNOWN: set[tuple[str, str]] = set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _package(module: str) -> str:
    """The layer of a module: tritonforge.X.* -> X; the root package (and its attributes) -> 'tritonforge'."""
    parts = module.split(".")
    if len(parts) < 2:
        return "tritonforge"
    top = ROOT / parts[1]
    return parts[1] if top.is_dir() or top.with_suffix(".py").is_file() else "tritonforge"


def _imports(path: Path) -> list[tuple[str, int]]:
    """(imported module or module.attribute, line) for every import in the file, relative ones resolved."""
    module = _module_name(path)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            found += [(f"{source}.{alias.name}", node.lineno) for alias in node.names]
    return found


def _graph() -> tuple[dict[tuple[str, str], list[str]], dict[str, list[str]]]:
    """Module edges within tritonforge (importer, imported) -> ['file:line'], and the serving modules' other
    top-level imports -> ['file:line']."""
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    serving_third_party: dict[str, list[str]] = defaultdict(list)
    for path in sorted(ROOT.rglob("*.py")):
        module = _module_name(path)
        for target, line in _imports(path):
            where = f"{path.relative_to(ROOT.parent)}:{line}"
            top = target.split(".")[0]
            if top == "tritonforge":
                # 'from tritonforge.x import name': the module is tritonforge.x unless name is a submodule
                imported = target.rsplit(".", 1)[0] if _is_attribute(target) else target
                edges[(module, imported)].append(where)
            elif _package(module) == "serving" and top not in sys.stdlib_module_names:
                serving_third_party[top].append(where)
    return edges, serving_third_party


def _is_attribute(target: str) -> bool:
    """Whether `target` (a.b.c) names an attribute of module a.b rather than a module or package itself."""
    path = ROOT.parent / target.replace(".", "/")
    return not (path.is_dir() or path.with_suffix(".py").is_file())


def _package_graph(edges: dict[tuple[str, str], list[str]]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for importer, imported in edges:
        a, b = _package(importer), _package(imported)
        if a != b:
            graph[a].add(b)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one package (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(set(graph) | {b for targets in graph.values() for b in targets}):
        if node not in index:
            visit(node)
    return out


def _describe(graph: dict[str, set[str]]) -> str:
    return "\n".join(f"  {a} -> {', '.join(sorted(graph[a]))}" for a in sorted(graph))


def test_every_package_imports_only_the_layers_below_it():
    edges, _ = _graph()
    graph = _package_graph(edges)
    assert set(graph) <= set(ALLOWED), f"packages without a layer in ALLOWED: {sorted(set(graph) - set(ALLOWED))}"
    violations = []
    for (importer, imported), where in sorted(edges.items()):
        a, b = _package(importer), _package(imported)
        if a != b and b not in ALLOWED[a] and (importer, imported) not in KNOWN:
            violations.append(f"  {a} -> {b}: {importer} imports {imported} ({', '.join(where)})")
    assert not violations, "imports against the layering:\n" + "\n".join(violations) + "\npackage graph:\n" + _describe(graph)


def test_known_violations_still_exist():
    """An entry of KNOWN that no longer occurs is removed from it, so it cannot hide a later regression."""
    edges, _ = _graph()
    gone = sorted(KNOWN - set(edges))
    assert not gone, f"KNOWN lists imports that are gone (remove them): {gone}"


def test_no_package_level_cycles_beyond_the_known_violations():
    edges, _ = _graph()
    graph = _package_graph({edge: where for edge, where in edges.items() if edge not in KNOWN})
    cycles = _cycles(graph)
    assert not cycles, f"package import cycles: {cycles}\npackage graph:\n{_describe(graph)}"


def test_serving_modules_import_only_the_serving_environment():
    edges, third_party = _graph()
    absolute = sorted(
        (importer, imported)
        for importer, imported in edges
        if _package(importer) == "serving" and _package(imported) != "serving"
    )
    assert not absolute, f"serving modules import tritonforge (they run as tritonforge_serving): {absolute}"
    foreign = {name: where for name, where in third_party.items() if name not in SERVING_THIRD_PARTY}
    assert not foreign, f"serving modules import packages outside the serving environment: {foreign}"

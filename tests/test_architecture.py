"""The architecture docs/architecture.md describes is the one the code has.

The import rules are read from that page's table, so the page and the code cannot drift apart;
the import graph comes from the source (every import statement, also inside functions).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

from minut2mqtt.core.entities import (
    DEVICE_STATES,
    HOME_STATES,
    HOME_VALUES,
    READINGS,
)

ROOT = Path(__file__).parent.parent
PACKAGE = ROOT / "minut2mqtt"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
MAX_MODULE_LINES = 400
IO_LIBRARIES = (
    "paho",
    "flask",
    "werkzeug",
    "requests",
    "requests_oauthlib",
    "oauthlib",
    "waitress",
    "prometheus_client",
    "amqtt",
    "sqlite3",
)


def module_path(name: str) -> str:
    """`minut2mqtt.core.mirror` → `core/mirror.py` (a package → its `__init__.py`)."""
    relative = name.removeprefix("minut2mqtt").lstrip(".").replace(".", "/")
    if (PACKAGE / relative).is_dir():
        return f"{relative}/__init__.py".lstrip("/")
    return f"{relative}.py"


@cache
def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


@cache
def import_graph() -> dict[str, set[str]]:
    """Module → the package's modules it imports (anywhere in its source)."""
    known = modules()
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    source = node.module or ""
                for alias in node.names:
                    submodule = f"{source}.{alias.name}"
                    targets.add(submodule if submodule in known else source)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
        graph[name] = {target for target in targets if target in known and target != name}
    return graph


def third_party_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


@cache
def rules() -> dict[str, tuple[str, ...]]:
    """From the page's table: part (`core/`, `daemon.py`) → what it may import."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    table = text.split("## The parts and what each may import", 1)[1].split("\n## ", 1)[0]
    parts: dict[str, tuple[str, ...]] = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        allowed = tuple(re.findall(r"`([^`]+)`", cells[2]))
        for part in re.findall(r"`([^`]+)`", cells[0]):
            parts[part] = allowed
    return parts


def part_of(path: str) -> str:
    """The table's row for a module: its own file's row, else its folder's."""
    if path in rules():
        return path
    folder = path.split("/")[0] + "/"
    assert folder in rules(), f"{path} belongs to no part of docs/architecture.md's table"
    return folder


def may_import(importer: str, imported: str) -> bool:
    if imported in ("__init__.py", "core/__init__.py") or imported.endswith("/__init__.py"):
        return True  # the version, and packages' docstrings
    part = part_of(importer)
    allowed = (part, *rules()[part])
    return any(
        imported == entry or (entry.endswith("/") and imported.startswith(entry))
        for entry in allowed
    )


def test_every_import_follows_the_table():
    broken = [
        f"{module_path(name)} imports {module_path(target)}"
        for name, targets in import_graph().items()
        for target in sorted(targets)
        if not may_import(module_path(name), module_path(target))
    ]
    assert not broken, "imports that docs/architecture.md does not allow:\n" + "\n".join(broken)


def test_no_import_cycle():
    graph = import_graph()
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        if name in visiting:
            cycle = [*visiting[visiting.index(name) :], name]
            raise AssertionError("import cycle: " + " → ".join(module_path(n) for n in cycle))
        if name in done:
            return
        visiting.append(name)
        for target in sorted(graph[name]):
            visit(target)
        visiting.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)


def test_the_core_and_the_typed_models_load_no_io_library():
    pure = [name for name in modules() if name.startswith("minut2mqtt.core")]
    pure += ["minut2mqtt.minut.models", "minut2mqtt.minut.connect"]
    for name in pure:
        assert not third_party_imports(modules()[name]) & set(IO_LIBRARIES), name
    # and at run time, everything they import included
    probe = (
        f"import sys\nfor name in {pure!r}: __import__(name)\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(IO_LIBRARIES)!r}))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.strip()
    assert loaded == "[]", f"importing the core loads {loaded}"


def test_only_the_demo_imports_the_simulator():
    importers = {
        module_path(name)
        for name, targets in import_graph().items()
        if any(target.startswith("minut2mqtt.simulator") for target in targets)
        and not name.startswith("minut2mqtt.simulator")
    }
    assert importers == {"demo.py"}


def test_the_web_front_never_reaches_the_daemon_or_the_edges():
    for name, targets in import_graph().items():
        if name.startswith("minut2mqtt.web"):
            reached = {module_path(target) for target in targets}
            assert not {p for p in reached if p.startswith(("runtime/", "mqtt/", "daemon"))}, name


def test_no_module_is_over_400_lines():
    long = {
        str(path.relative_to(ROOT)): lines
        for path in modules().values()
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"split these by concern: {long}"


def test_every_module_the_page_names_exists():
    """Paths from the package or the repository; in a folder's row of the table, its files."""
    named: set[str] = set()
    for line in ARCHITECTURE.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        folder = cells[0].strip("`") if len(cells) == 3 and cells[0].endswith("/`") else ""
        for index, cell in enumerate(cells):
            within = folder if folder and index == 1 else ""
            named.update(within + name for name in re.findall(r"`([a-z_/]+(?:\.py|/))`", cell))
    assert len(named) > 40
    missing = [
        name
        for name in sorted(named)
        if not (PACKAGE / name).exists() and not (ROOT / name).exists()
    ]
    assert not missing, f"docs/architecture.md names what does not exist: {missing}"


def test_every_module_is_in_the_table():
    for name in modules():
        part_of(module_path(name))


def test_no_entity_key_is_spelled_outside_the_table():
    """Entity behaviour lives in the table's rows, so no code branches on a key.

    `minut/models.py` reads Minut's JSON, whose field names `battery` and `alarm_status`
    happen to be keys of ours too; the simulator speaks that JSON. (The bridge's own entities
    read keys of its status document through the table's `StatusValue`s; `/healthz` has keys
    of the same names in a document of its own.)
    """
    keys = {spec.key for spec in (*READINGS, *DEVICE_STATES, *HOME_STATES, *HOME_VALUES)}
    exempt = {PACKAGE / "core" / "entities.py", PACKAGE / "minut" / "models.py"}
    spelled = [
        f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}"
        for path in modules().values()
        if path not in exempt and "simulator" not in path.parts
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant) and node.value in keys
    ]
    assert not spelled, "\n".join(spelled)

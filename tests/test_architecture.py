"""The dependency rules of docs/architecture.md, checked on the source: imports go one way, and no
module imports another that imports it back (function-level imports included)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("codec", "recovery", "simnet")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every module of ours that `name` imports, anywhere in the file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in known and t != name}
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def test_no_import_circles():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import circle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_imports_go_one_way():
    allowed_from_codec = {"codec", "codec.tokens", "codec.safe_weights", "codec.hardware"}
    for name, deps in _graph().items():
        if name.startswith("codec"):
            assert not {d for d in deps if not d.startswith("codec")}, f"{name} imports {deps}"
        if name.startswith("recovery"):
            outside = {d for d in deps if not d.startswith("recovery")}
            assert outside <= allowed_from_codec, f"{name} imports {outside - allowed_from_codec}"
        if name.startswith("simnet.network"):
            outside = {d for d in deps if not d.startswith("simnet.network")}
            assert outside <= {"simnet.units", "simnet.seeds"}, f"{name} imports {outside}"
        if name.startswith("simnet.experiment"):
            assert not {d for d in deps if d.startswith(("simnet.commands", "simnet.cli", "simnet.mqtt"))}, name
        if name.startswith("simnet.stream"):  # the stream knows codecs, recovery and the transport's framing
            outside = {d for d in deps if d.startswith("simnet") and not d.startswith("simnet.stream")}
            assert outside <= {"simnet.network.protection"}, f"{name} imports {outside}"


def test_training_stays_out_of_the_runtime():
    """Training (simnet.training) uses the codec and recovery; nothing but the command line uses it."""
    for name, deps in _graph().items():
        if name.startswith(("simnet.training", "simnet.commands")):
            continue
        assert not {d for d in deps if d.startswith("simnet.training")}, f"{name} imports training"
    assert not [p for p in (ROOT / "codec").glob("*.py") if p.stem.startswith("train") or p.stem == "discriminator"]


def test_the_send_and_receive_paths_exist_once():
    """Only the stream's sender packetizes frames and only its reassembly places tokens back: every
    other module goes through them (simnet.stream.sender, simnet.stream.vq, simnet.stream.reassembly)."""
    for name, path in _modules().items():
        if name.startswith(("simnet.stream", "codec")):
            continue
        text = path.read_text()
        for call in (".packetize(", ".coarse_packets(", "Depacketizer(", "parse_compact(", ".assemble("):
            assert call not in text, f"{name} calls {call} outside the stream"


def test_cli_is_the_entry_point_only():
    tree = ast.parse((ROOT / "simnet" / "cli.py").read_text())
    functions = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert functions == ["app", "main"]

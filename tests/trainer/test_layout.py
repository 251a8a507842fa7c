"""The trainer's layout shows the data flow: imports go one way, no cycles.

``cli`` -> ``publishing`` -> ``learning`` -> ``simulation`` (and
``telemetry``, which only the CLI uses) -> ``nova_rl_weigher``; the weigher
never imports the trainer.
"""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
TRAINER = os.path.join(ROOT, 'trainer', 'nova_rl_trainer')
WEIGHER = os.path.join(ROOT, 'nova_rl_weigher')

# A subpackage may import those at its own level or below.
LEVEL = {'simulation': 0, 'telemetry': 1, 'learning': 1, 'publishing': 2,
         'cli': 3}


def _modules(package_dir: str, package: str) -> dict[str, str]:
    out = {}
    for dirpath, _, names in os.walk(package_dir):
        for name in names:
            if not name.endswith('.py'):
                continue
            rel = os.path.relpath(os.path.join(dirpath, name), package_dir)
            mod = package + '.' + rel[:-3].replace(os.sep, '.')
            out[mod.removesuffix('.__init__')] = os.path.join(dirpath, name)
    return out


def _imports(path: str, known: set[str]) -> set[str]:
    """Modules of ``known`` imported by the file (any depth, lazy too)."""
    tree = ast.parse(open(path, encoding='utf-8').read())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f'{node.module}.{a.name}'
                                     for a in node.names]
        else:
            continue
        found |= {n for n in names if n in known}
    return found


TRAINER_MODULES = _modules(TRAINER, 'nova_rl_trainer')


@pytest.mark.parametrize('module', sorted(TRAINER_MODULES))
def test_imports_go_one_way(module):
    parts = module.split('.')
    if len(parts) < 2 or parts[1] not in LEVEL:
        return
    mine = LEVEL[parts[1]]
    for other in _imports(TRAINER_MODULES[module], set(TRAINER_MODULES)):
        sub = other.split('.')[1] if '.' in other else None
        if sub in LEVEL:
            assert LEVEL[sub] <= mine or sub == parts[1], (
                f'{module} imports {other}, a layer above it')


def test_no_import_cycles():
    known = set(TRAINER_MODULES)
    graph = {m: {o for o in _imports(p, known) if o != m}
             for m, p in TRAINER_MODULES.items()}
    # Importing a package's __init__ is not a dependency on its modules.
    graph = {m: {o for o in deps if not m.startswith(o + '.')}
             for m, deps in graph.items()}
    state: dict[str, int] = {}

    def visit(m, path):
        state[m] = 1
        for o in graph.get(m, ()):
            if state.get(o) == 1:
                cycle = path[path.index(o):] + [o]
                raise AssertionError('import cycle: ' + ' -> '.join(cycle))
            if not state.get(o):
                visit(o, path + [o])
        state[m] = 2
    for m in sorted(graph):
        if not state.get(m):
            visit(m, [m])


def test_the_weigher_never_imports_the_trainer():
    for module, path in _modules(WEIGHER, 'nova_rl_weigher').items():
        tree = ast.parse(open(path, encoding='utf-8').read())
        for node in ast.walk(tree):
            names = ([a.name for a in node.names]
                     if isinstance(node, ast.Import) else
                     [node.module or ''] if isinstance(node, ast.ImportFrom)
                     else [])
            assert not any(n.startswith('nova_rl_trainer') for n in names), \
                module

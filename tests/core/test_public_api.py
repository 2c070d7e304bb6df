"""xgen uses Lightning's and torch's public API only (issue 21): no reads or writes of their underscore
attributes, no overrides of their underscore methods, no imports of their private modules or names.

The check reads every module of ``src/xgen`` with :mod:`ast` (not a grep: comments and docstrings do not
count, and ``getattr(x, "_name")`` does). A name is *foreign-private* when it starts with one underscore
and is an attribute of one of Lightning's or torch's objects a model, callback or trainer meets
(:func:`foreign_privates`: the live objects are asked, so a new Lightning's new privates count too).
An offence is

* any attribute access ``x._name`` (read, write or delete, ``self`` included) of a foreign-private name;
* a method or class attribute of an xgen class named like a foreign-private one (an override);
* a string constant equal to a foreign-private name (``getattr(trainer, "_logger_connector")``,
  ``if name == "_current_fx_name"``);
* an access ``x._name`` with ``x`` other than ``self``/``cls`` of an underscore name xgen itself never
  defines (so it belongs to someone else: ``torch._utils``, ``call._call_callback_hooks``);
* an import from a private module of ``torch``/``lightning`` (``torch._utils``) or of a private name.

:data:`ALLOWED` is the explicit allow-list (module -> names); it is empty: Lightning's loop state that
the CUDA-graph path must advance by hand is reached through public attribute names only, in the one
module :mod:`xgen.models.lightning_private` (tests/models/test_lightning_private.py checks Lightning's
behaviour there).
"""

from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src" / "xgen"
FOREIGN_PACKAGES = ("torch", "lightning", "pytorch_lightning", "lightning_fabric")
ALLOWED: dict[str, set[str]] = {}  # "xgen/models/lightning_private.py" -> {"_name", ...}: empty


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__")) and name != "_"


@lru_cache(maxsize=1)
def foreign_objects() -> tuple[object, ...]:
    """Live Lightning and torch objects an xgen model, callback or trainer meets: a trainer (and its loops,
    connectors, strategy, profiler), a LightningModule and data module, the callbacks and checkpoint IO xgen
    subclasses, an optimiser and its Lightning wrapper, nn.Module, a tensor; and the packages themselves."""
    import lightning as L
    import torch
    from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
    from lightning.pytorch.callbacks import Callback, ModelCheckpoint, RichProgressBar
    from lightning.pytorch.core.optimizer import LightningOptimizer

    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu")
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])
    epoch_loop = trainer.fit_loop.epoch_loop
    objects = [trainer, trainer.fit_loop, epoch_loop, epoch_loop.manual_optimization, epoch_loop.automatic_optimization,
               trainer.validate_loop, trainer.strategy, trainer.profiler, trainer.accelerator, trainer.precision_plugin,
               L.LightningModule(), L.LightningDataModule(), Callback(), ModelCheckpoint(), RichProgressBar(),
               TorchCheckpointIO(), opt, LightningOptimizer(opt), torch.nn.Module(), torch.nn.BatchNorm2d(1),
               torch.zeros(1), torch.Generator()]
    objects += [getattr(trainer, n) for n in dir(trainer) if n.endswith("_connector")]
    return tuple(objects)


def _names(o: object) -> set[str]:
    return {n for n in dir(o) if _private(n)}


@lru_cache(maxsize=1)
def foreign_privates() -> frozenset[str]:
    """Every underscore name of :func:`foreign_objects` and of the torch/lightning packages' namespaces."""
    import lightning as L
    import torch
    from lightning.pytorch.loops import training_epoch_loop
    from lightning.pytorch.trainer import call

    names = set().union(*(_names(o) for o in foreign_objects()))
    for m in (torch, torch.nn, torch.nn.functional, torch.distributed, torch.optim, L, L.pytorch, call,
              training_epoch_loop):
        names |= _names(m)
    return frozenset(names)


def inherited_privates(cls: type) -> set[str]:
    """The underscore names ``cls`` inherits from Lightning/torch: those of every foreign object it is a
    subclass of (instance attributes included) and of its foreign bases."""
    out: set[str] = set()
    for o in foreign_objects():
        if isinstance(o, type) or not issubclass(cls, type(o)):
            continue
        out |= _names(o)
    for base in cls.__mro__[1:]:
        if base.__module__.split(".")[0] in FOREIGN_PACKAGES:
            out |= _names(base)
    return out


def defined_in_class(node: ast.ClassDef) -> dict[str, ast.AST]:
    """Underscore names a class body defines: methods, class attributes, and ``self._x = ...`` in its methods."""
    out: dict[str, ast.AST] = {}
    for item in node.body:
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out.setdefault(item.name, item)
            for sub in ast.walk(item):
                if (isinstance(sub, ast.Attribute) and isinstance(sub.ctx, ast.Store) and isinstance(sub.value, ast.Name)
                        and sub.value.id in ("self", "cls")):
                    out.setdefault(sub.attr, sub)
        elif isinstance(item, (ast.Assign, ast.AnnAssign)):
            for t in getattr(item, "targets", None) or [item.target]:
                if isinstance(t, ast.Name):
                    out.setdefault(t.id, item)
    return {n: v for n, v in out.items() if _private(n)}


def own_privates(trees: list[ast.AST]) -> set[str]:
    """Underscore names xgen defines itself: functions, classes, assignments (module, class, attributes),
    arguments and import aliases. A name that is also a Lightning/torch private counts only where xgen
    assigns it to ``self``/``cls`` or defines it in a class (an override there is caught separately)."""
    foreign = foreign_privates()
    out: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                out.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                out.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                on_self = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
                if on_self or node.attr not in foreign:
                    out.add(node.attr)
            elif isinstance(node, ast.arg):
                out.add(node.arg)
            elif isinstance(node, ast.alias) and node.asname:
                out.add(node.asname)
    return {n for n in out if _private(n)}


def _foreign_module(module: str) -> bool:
    return module.split(".")[0] in FOREIGN_PACKAGES


def offences(source: str, where: str, own: set[str], namespace: dict[str, object]) -> list[str]:
    """Every use of a Lightning/torch private in ``source`` as ``where:line: what``. ``namespace`` holds the
    module's classes (imported, or the snippet executed): an xgen class that defines a name it inherits
    from Lightning/torch overrides (or shadows) a private, and that name is then not xgen's own."""
    tree = ast.parse(source, filename=where)
    foreign = foreign_privates()
    out: list[str] = []
    own = set(own)

    def bad(node: ast.AST, what: str) -> None:
        out.append(f"{where}:{getattr(node, 'lineno', 0)}: {what}")

    # classes (including mixins of a Lightning/torch subclass) that define an inherited private
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    inherited: dict[str, set[str]] = {}
    for name in classes:
        cls = namespace.get(name)
        if isinstance(cls, type):
            for c in cls.__mro__:
                if c.__name__ in classes and namespace.get(c.__name__) is c:
                    inherited.setdefault(c.__name__, set()).update(inherited_privates(cls))
    for name, node in classes.items():
        for n, item in defined_in_class(node).items():
            if n in inherited.get(name, ()):
                bad(item, f"{name}.{n} overrides or shadows a Lightning/torch private")
                own.discard(n)

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            if node.attr not in own:
                bad(node, f"attribute {node.attr}, a Lightning/torch private (not defined by xgen)")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in foreign \
                and node.value not in own:
            bad(node, f"string {node.value!r} names a Lightning/torch private")
        elif isinstance(node, ast.ImportFrom) and node.module and _foreign_module(node.module):
            if any(_private(p) for p in node.module.split(".")):
                bad(node, f"import from private module {node.module}")
            for a in node.names:
                if _private(a.name):
                    bad(node, f"import of private {a.name} from {node.module}")
        elif isinstance(node, ast.Import):
            for a in node.names:
                if _foreign_module(a.name) and any(_private(p) for p in a.name.split(".")):
                    bad(node, f"import of private module {a.name}")
    return out


def _modules() -> dict[str, str]:
    return {str(p.relative_to(SRC.parent)): p.read_text() for p in sorted(SRC.rglob("*.py"))}


def _namespace(where: str) -> dict[str, object]:
    import importlib

    name = where[:-3].replace("/", ".").removesuffix(".__init__")
    if name.endswith(".__main__"):  # importing it runs the command
        return {}
    return vars(importlib.import_module(name))


def test_xgen_uses_only_public_lightning_and_torch_api():
    sources = _modules()
    assert len(sources) > 50
    own = own_privates([ast.parse(s) for s in sources.values()])
    found = []
    for where, src in sources.items():
        allowed = ALLOWED.get(where, set())
        found += [o for o in offences(src, where, own, _namespace(where))
                  if not any(f" {n}" in o for n in allowed)]
    assert not found, "Lightning/torch private API used:\n" + "\n".join(found)


def test_the_allow_list_is_empty_or_names_one_module():
    assert len(ALLOWED) <= 1
    for where in ALLOWED:
        assert (SRC.parent / where).is_file(), where


def test_the_known_private_names_are_foreign_privates():
    assert {"_logger_connector", "_current_fx_name", "_automatic_optimization", "_trainer", "_save_checkpoint",
            "_is_training_done", "_batches_that_stepped", "_utils"} <= foreign_privates()


def _check(snippet: str) -> list[str]:
    namespace: dict[str, object] = {"__name__": "snippet"}
    exec(compile(snippet, "snippet.py", "exec"), namespace)
    return offences(snippet, "snippet.py", own_privates([ast.parse(snippet)]), namespace)


@pytest.mark.parametrize("snippet, what", [
    ("def f(trainer):\n    return trainer._logger_connector.should_update_logs\n", "_logger_connector"),
    ("def f(trainer):\n    return trainer.fit_loop.epoch_loop._is_training_done\n", "_is_training_done"),
    ("class M:\n    def f(self):\n        return self._trainer\n", "_trainer"),
    ("import lightning as L\nclass M(L.LightningModule):\n    @property\n    def automatic_optimization(self):\n"
     "        return self._automatic_optimization\n", "_automatic_optimization"),
    ("import lightning as L\nclass M(L.LightningModule):\n    def f(self, v):\n        self._automatic_optimization = v\n",
     "_automatic_optimization"),
    ("def f(m):\n    m._current_fx_name = 'x'\n", "_current_fx_name"),
    ("class M:\n    def __setattr__(self, name, value):\n        if name == '_current_fx_name':\n            pass\n",
     "'_current_fx_name'"),
    ("from lightning.pytorch.callbacks import ModelCheckpoint\nclass C(ModelCheckpoint):\n"
     "    def _save_checkpoint(self, trainer, filepath):\n        super()._save_checkpoint(trainer, filepath)\n",
     "_save_checkpoint"),
    ("from torch._utils import _flatten_dense_tensors\n", "torch._utils"),
    ("import torch._dynamo\n", "torch._dynamo"),
    ("def f(call):\n    call._call_callback_hooks = None\n", "_call_callback_hooks"),
    ("import torch\nx = isinstance(1, torch.nn.modules.batchnorm._BatchNorm)\n", "_BatchNorm"),
    ("def f(t):\n    return getattr(t, '_logger_connector')\n", "'_logger_connector'"),
])
def test_the_check_finds_private_uses(snippet, what):
    found = _check(snippet)
    assert found and any(what in o for o in found), found


def test_the_check_passes_public_uses_and_xgen_privates():
    snippet = ("import lightning as L\nclass M(L.LightningModule):\n    def _step(self):\n        self._sums = {}\n"
               "        return self.trainer.global_step\n"
               "class Batches:\n    def _indices(self):\n        return []\n"
               "def f(m, trainer, b):\n    m._step()\n    return trainer.log_every_n_steps, m._sums, b._indices()\n")
    assert _check(snippet) == []

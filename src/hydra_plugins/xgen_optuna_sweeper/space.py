"""The search space: Hydra sweep overrides -> Optuna ``suggest_*`` calls -> override strings.

One override per hyperparameter, in Hydra's override grammar:

* ``choice(a, b, c)`` (or ``a,b,c``)   -> ``suggest_categorical`` (config groups too: ``model/net: choice(mlp, conv)``)
* ``range(lo, hi, step)``              -> ``suggest_int`` / ``suggest_float`` with ``step`` (``hi`` excluded, as in Hydra)
* ``interval(lo, hi)``                 -> ``suggest_float(lo, hi)`` (both ends included, as in Optuna)
* ``tag(log, interval(lo, hi))``       -> log scale; ``tag(int, interval(lo, hi))`` -> ``suggest_int``
* anything else (``model.lr=0.01``)    -> a fixed override passed to every trial

The Optuna parameter name is the override key without its ``+``/``++`` prefix (``model.lr``).
"""

# (no `from __future__ import annotations`: Hydra executes plugin modules outside sys.modules, where
# dataclasses cannot resolve string annotations)
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.errors import HydraException

if TYPE_CHECKING:  # optuna is imported lazily: Hydra imports plugin modules on every start
    import optuna

INTERVAL_TAGS = frozenset({"log", "int"})
PRIMITIVES = (str, int, float, bool, type(None))


class SearchSpaceError(HydraException):
    """A ``hydra.sweeper.params`` entry (or a command-line sweep) cannot be searched by Optuna."""


@dataclass(frozen=True)
class Param:
    """One searched hyperparameter: how to ask Optuna for it, and how to write it as an override."""

    key: str                  # override key as written, with any +/++ prefix (e.g. "model.lr")
    name: str                 # Optuna parameter name (the key without its prefix)
    kind: str                 # "categorical" | "int" | "float"
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()
    choice_strings: tuple[str, ...] = field(default=(), compare=False)

    def suggest(self, trial: "optuna.Trial") -> str:
        """Ask the trial for a value; return the override ``key=value`` that sets it."""
        if self.kind == "categorical":
            value = trial.suggest_categorical(self.name, list(self.choices))
            return f"{self.key}={self.choice_strings[self.choices.index(value)]}"
        if self.kind == "int":
            value = trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1),
                                      log=self.log)
            return f"{self.key}={int(value)}"
        value = trial.suggest_float(self.name, float(self.low), float(self.high), step=self.step, log=self.log)
        return f"{self.key}={format_float(value)}"


def format_float(value: float) -> str:
    """A float as Hydra's grammar reads it back exactly (repr round-trips; 1e-06 parses as a float)."""
    text = repr(float(value))
    return text if any(c in text for c in ".eE") or text in ("inf", "-inf", "nan") else text + ".0"


def _element(value: Any, text: str) -> Any:
    """A choice element as Optuna stores it: the Python value if primitive, else its override text."""
    value = getattr(value, "text", value)  # QuotedString -> str
    return value if isinstance(value, PRIMITIVES) else text


def _param(override: Override) -> Param:
    key = override.get_key_element()
    name = key.lstrip("+")
    value = override.value()
    if override.is_choice_sweep():
        strings = tuple(override.sweep_string_iterator())
        if isinstance(value, ChoiceSweep):
            raw = value.list
        elif isinstance(value, list):  # a,b,c
            raw = value
        else:  # glob(...): group options
            raw = list(strings)
        choices = tuple(_element(v, s) for v, s in zip(raw, strings))
        if len(set(map(repr, choices))) != len(choices):
            raise SearchSpaceError(f"hydra.sweeper.params.{name}: repeated values in {override.input_line}")
        return Param(key, name, "categorical", choices=choices, choice_strings=strings)
    if isinstance(value, RangeSweep):
        values = list(value.range())
        if not values:
            raise SearchSpaceError(f"hydra.sweeper.params.{name}: {override.input_line} is empty")
        lo, hi, step = min(values), max(values), abs(value.step)
        if all(isinstance(v, int) for v in values) and isinstance(value.step, int):
            return Param(key, name, "int", low=lo, high=hi, step=step)
        return Param(key, name, "float", low=float(lo), high=float(hi), step=float(step))
    if isinstance(value, IntervalSweep):
        tags = set(value.tags or ())
        unknown = tags - INTERVAL_TAGS
        if unknown:
            raise SearchSpaceError(f"hydra.sweeper.params.{name}: unknown tag(s) {sorted(unknown)} in "
                                   f"{override.input_line}; supported: {sorted(INTERVAL_TAGS)}")
        lo, hi, log = float(value.start), float(value.end), "log" in tags
        if not lo < hi:
            raise SearchSpaceError(f"hydra.sweeper.params.{name}: interval({lo}, {hi}) needs low < high")
        if log and lo <= 0:
            raise SearchSpaceError(f"hydra.sweeper.params.{name}: a log-scale interval needs low > 0, got {lo}")
        if "int" in tags:
            return Param(key, name, "int", low=math.ceil(lo), high=math.floor(hi), step=1, log=log)
        return Param(key, name, "float", low=lo, high=hi, log=log)
    raise SearchSpaceError(f"hydra.sweeper.params.{name}: cannot search {override.input_line}; use choice(), "
                           "range(), interval() or tag(log, interval())")


def parse_search_space(params: Mapping[str, Any] | None, arguments: Sequence[str],
                       config_loader: Any = None) -> tuple[list[Param], list[str]]:
    """Split config ``params`` plus command-line ``arguments`` into (searched params, fixed overrides).

    A command-line override of a key replaces the config's entry for that key: a sweep there joins the
    search space, a plain value fixes the parameter.
    """
    parser = OverridesParser.create(config_loader=config_loader)
    lines = [f"{k}={v}" for k, v in (params or {}).items()] + list(arguments)
    try:
        overrides = parser.parse_overrides(lines)
    except HydraException as e:
        raise SearchSpaceError(f"hydra.sweeper.params: {e}") from e
    by_name: dict[str, Override] = {}
    for o in overrides:  # later (command line) wins
        name = o.get_key_element().lstrip("+~")
        by_name.pop(name, None)
        by_name[name] = o
    space: list[Param] = []
    fixed: list[str] = []
    for o in by_name.values():
        if o.is_sweep_override():
            space.append(_param(o))
        else:
            fixed.append(o.input_line)
    return space, fixed

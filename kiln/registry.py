"""Registries: name -> class/function tables and building objects from ``type=`` dicts.

The core is small: a name, a dict, ``register_module`` that works as a decorator or a plain
call, and ``get``/``build`` that fail with messages naming the registry. Scopes, a parent/child
tree, lazily imported ``locations`` and plugin discovery are layered on top.

Example::

    >>> from kiln.registry import Registry
    >>> OPTIMS = Registry('optimizer')
    >>> @OPTIMS.register_module()
    ... class MyOptim:
    ...     def __init__(self, lr=0.01):
    ...         self.lr = lr
    >>> OPTIMS.build(dict(type='MyOptim', lr=0.1)).lr
    0.1
"""

from __future__ import annotations

import copy
import importlib
import logging
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "Registry",
    "build_from_cfg",
    "import_modules",
    "load_plugins",
    "MODELS",
    "DATASETS",
    "TRANSFORMS",
    "HOOKS",
    "OPTIMIZERS",
    "OPTIM_WRAPPERS",
    "PARAM_SCHEDULERS",
    "EVALUATORS",
    "WRITERS",
    "SAMPLERS",
    "DATA_LOADERS",
    "RUNNERS",
    "LOOPS",
    "TASK_UTILS",
    "VISUALIZERS",
    "VIS_BACKENDS",
    "VISBACKENDS",
    "BACKBONES",
    "NECKS",
    "HEADS",
    "DETECTORS",
    "LOSSES",
    "ROI_EXTRACTORS",
    "SHARED_HEADS",
    "META_ARCH_REGISTRY",
    "BACKBONE_REGISTRY",
]

PLUGIN_ENTRY_POINT_GROUP = "kiln.plugins"


def _defined_where(obj: Any) -> str:
    module = getattr(obj, "__module__", None) or "?"
    qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", repr(obj))
    return f"{module}.{qualname}"


def _cfg_path_join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


class Registry:
    """A table mapping names to classes or functions, with a ``build`` method.

    Args:
        name: what the registry holds (used in messages), e.g. ``'model'``.
        build_func: ``f(cfg, registry, default_args)`` replacing :func:`build_from_cfg`.
            Children inherit the parent's build function unless they set their own.
        parent: a parent registry. Lookups that miss here continue in the parent, and
            ``parent.get('scope.Name')`` searches the child registered under ``scope``.
        scope: the name of this registry's scope (default: the top-level package of the
            module creating it, e.g. ``'kiln'`` or ``'my_project'``).
        locations: module paths imported on the first lookup, so that their
            ``@register_module()`` decorators run without an explicit import.
    """

    def __init__(
        self,
        name: str,
        build_func: Callable | None = None,
        parent: Registry | None = None,
        scope: str | None = None,
        locations: Sequence[str] = (),
    ) -> None:
        self._name = name
        self._module_dict: dict[str, Any] = {}
        self._children: dict[str, Registry] = {}
        self._locations = list(locations)
        self._imported = not self._locations
        if scope is None:
            caller = sys._getframe(1)
            module = caller.f_globals.get("__name__", "kiln") if caller is not None else "kiln"
            scope = module.split(".")[0]
            if scope == "__main__":
                scope = "main"
        self._scope = scope
        self.parent = parent
        if parent is not None:
            if scope in parent._children and parent._children[scope] is not self:
                raise KeyError(
                    f"Registry '{parent.name}' already has a child with scope '{scope}'; "
                    f"pass a distinct scope= to Registry('{name}', parent=..., scope=...)."
                )
            parent._children[scope] = self
        self._build_func = build_func
        if build_func is None and parent is not None:
            self._build_func = parent._build_func

    # ------------------------------------------------------------------ basics
    @property
    def name(self) -> str:
        """What the registry holds, e.g. ``'model'`` (used in messages)."""
        return self._name

    @property
    def scope(self) -> str:
        """The scope name; ``'scope.Name'`` lookups find this registry by it."""
        return self._scope

    @property
    def children(self) -> dict[str, Registry]:
        """Child registries by scope."""
        return self._children

    @property
    def module_dict(self) -> dict[str, Any]:
        """This registry's own name → object table (``locations`` imported first)."""
        self._import_locations()
        return self._module_dict

    def __len__(self) -> int:
        return len(self.module_dict)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self.module_dict))

    def keys(self) -> list[str]:
        """Sorted registered names (this registry only, not its parents)."""
        return sorted(self.module_dict)

    def items(self) -> list[tuple[str, Any]]:
        """Sorted ``(name, object)`` pairs (this registry only)."""
        return sorted(self.module_dict.items())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def __repr__(self) -> str:
        lines = [f"Registry(name={self._name!r}, scope={self._scope!r}, items={len(self)})"]
        for key, obj in self.items():
            lines.append(f"  {key:<32} {_defined_where(obj)}")
        return "\n".join(lines)

    # ------------------------------------------------------------- locations
    def _import_locations(self) -> None:
        if self._imported:
            return
        self._imported = True  # set first: the imported modules register into us
        for loc in self._locations:
            try:
                importlib.import_module(loc)
            except ModuleNotFoundError as exc:
                if exc.name != loc:  # the location exists but is broken: a real bug
                    raise
                logger.warning("Registry '%s': location '%s' could not be imported: %s",
                               self._name, loc, exc)

    # ------------------------------------------------------------- register
    def _register(self, obj: Any, names: str | Sequence[str] | None, force: bool) -> None:
        if not callable(obj):
            raise TypeError(
                f"Registry '{self._name}' can only register classes or functions, got {obj!r} "
                f"of type {type(obj).__name__}."
            )
        if names is None:
            names = [obj.__name__]
        elif isinstance(names, str):
            names = [names]
        for key in names:
            if not isinstance(key, str):
                raise TypeError(f"Registry '{self._name}': name must be a str, got {key!r}.")
            existing = self._module_dict.get(key)
            if existing is not None and existing is not obj and not force:
                raise KeyError(
                    f"'{key}' is already registered in registry '{self._name}' "
                    f"(defined in {_defined_where(existing)}); the new one is defined in "
                    f"{_defined_where(obj)}. Use another name, or register_module(force=True) "
                    f"to replace it."
                )
            self._module_dict[key] = obj

    def register_module(
        self,
        name: str | Sequence[str] | None = None,
        force: bool = False,
        module: Any = None,
    ) -> Any:
        """Register a class or function.

        Use as a decorator (``@REG.register_module()``, ``@REG.register_module('Alias')``,
        ``@REG.register_module`` without parentheses) or as a call
        (``REG.register_module(module=MyClass)``). ``name`` may be a list of aliases.
        """
        if not isinstance(force, bool):
            raise TypeError(f"force must be a bool, got {type(force).__name__}.")
        # @REG.register_module without parentheses: the decorated object arrives as `name`.
        if name is not None and not isinstance(name, (str, list, tuple)) and callable(name):
            self._register(name, None, force)
            return name
        if module is not None:
            self._register(module, name, force)
            return module

        def decorator(obj: Any) -> Any:
            self._register(obj, name, force)
            return obj

        return decorator

    def register(self, obj: Any = None, *, name: str | None = None, force: bool = False) -> Any:
        """Detectron2-style registration: ``@REG.register()`` or ``REG.register(obj)``."""
        if obj is None:
            return self.register_module(name=name, force=force)
        self._register(obj, name, force)
        return obj

    # ------------------------------------------------------------------ get
    def _get_local(self, key: str) -> Any:
        self._import_locations()
        return self._module_dict.get(key)

    def _root(self) -> Registry:
        reg = self
        while reg.parent is not None:
            reg = reg.parent
        return reg

    def _find_scope(self, scope: str) -> Registry | None:
        if scope == self._scope:
            return self
        stack = [self._root()]
        while stack:
            reg = stack.pop()
            if reg._scope == scope:
                return reg
            stack.extend(reg._children.values())
        return None

    def get(self, key: str) -> Any:
        """Return the object registered as ``key`` (or ``'scope.key'``), or ``None``.

        The lookup checks this registry, then its parents. ``'scope.Name'`` looks in the
        registry of that scope anywhere in the tree. The first miss anywhere loads the
        ``kiln.plugins`` entry points (see :func:`load_plugins`) and looks again.
        """
        if not isinstance(key, str):
            raise TypeError(f"Registry key must be a str, got {type(key).__name__}.")
        obj = self._lookup(key)
        if obj is None and not _plugins_loaded:
            # A miss may be a module that an installed plugin provides: discover plugins
            # once (entry-point group ``kiln.plugins``) and look again.
            load_plugins()
            obj = self._lookup(key)
        return obj

    def _lookup(self, key: str) -> Any:
        if "." in key:
            scope, _, short = key.partition(".")
            target = self._find_scope(scope)
            if target is not None:
                return target._lookup(short)
        reg: Registry | None = self
        while reg is not None:
            obj = reg._get_local(key)
            if obj is not None:
                return obj
            reg = reg.parent
        return None

    def _all_names(self) -> list[str]:
        names: set[str] = set()
        reg: Registry | None = self
        while reg is not None:
            names.update(reg.module_dict)
            reg = reg.parent
        return sorted(names)

    def unknown_type_message(self, key: str, cfg_path: str = "") -> str:
        """The error text for an unknown ``type``: registry, close names, how to register."""
        import difflib

        close = difflib.get_close_matches(key, self._all_names(), n=3, cutoff=0.5)
        if not close:
            lowered = key.lower()
            close = [n for n in self._all_names() if lowered in n.lower() or n.lower() in lowered][:3]
        where = f" (at config key '{cfg_path}')" if cfg_path else ""
        hint = f" Did you mean: {', '.join(repr(c) for c in close)}?" if close else ""
        return (
            f"'{key}' is not registered in the '{self._name}' registry{where}.{hint} "
            f"To use a custom module, decorate it with @{self._name.upper()}S.register_module() "
            f"(or @<registry>.register_module()) and make sure its module is imported: add "
            f"custom_imports=dict(imports=['your.module']) to the config, or expose it through "
            f"the '{PLUGIN_ENTRY_POINT_GROUP}' entry-point group of an installed package."
        )

    # ---------------------------------------------------------------- build
    def build(self, cfg: Any, default_args: Mapping | None = None, *, cfg_path: str = "") -> Any:
        """Build an object (or a list of objects) from a config dict with a ``type`` key."""
        if self._build_func is not None:
            if _accepts_cfg_path(self._build_func):
                return self._build_func(cfg, self, default_args, cfg_path=cfg_path)
            return self._build_func(cfg, self, default_args)
        return build_from_cfg(cfg, self, default_args, cfg_path=cfg_path)


_CFG_PATH_SUPPORT: dict[Any, bool] = {}


def _accepts_cfg_path(func: Callable) -> bool:
    """Whether a custom build function takes ``cfg_path=`` (cached: build is called often)."""
    known = _CFG_PATH_SUPPORT.get(func)
    if known is None:
        import inspect

        try:
            params = inspect.signature(func).parameters
            known = "cfg_path" in params or any(
                p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        except (TypeError, ValueError):
            known = False
        _CFG_PATH_SUPPORT[func] = known
    return known


def _is_config_like(obj: Any) -> bool:
    return isinstance(obj, Mapping)


def build_from_cfg(
    cfg: Any,
    registry: Registry,
    default_args: Mapping | None = None,
    *,
    cfg_path: str = "",
) -> Any:
    """Build an object from ``cfg`` using ``registry``.

    ``cfg['type']`` may be a registered name, ``'scope.Name'``, or a class/callable. Keys of
    ``default_args`` fill in keys missing from ``cfg``. ``cfg`` itself is never modified.
    A list of configs builds a list of objects.
    """
    if isinstance(cfg, (list, tuple)):
        return [
            build_from_cfg(c, registry, default_args, cfg_path=_cfg_path_join(cfg_path, str(i)))
            for i, c in enumerate(cfg)
        ]
    if not _is_config_like(cfg):
        where = f" at config key '{cfg_path}'" if cfg_path else ""
        raise TypeError(
            f"Cannot build from {cfg!r}{where} with registry '{registry.name}': expected a dict "
            f"with a 'type' key, got {type(cfg).__name__}."
        )
    if default_args is not None and not _is_config_like(default_args):
        raise TypeError(f"default_args must be a dict or None, got {type(default_args).__name__}.")
    if "type" not in cfg and (default_args is None or "type" not in default_args):
        where = f" at config key '{cfg_path}'" if cfg_path else ""
        raise KeyError(
            f"Config{where} has no 'type' key, so registry '{registry.name}' cannot tell what to "
            f"build. Keys present: {sorted(cfg)}. Add type='<RegisteredName>'."
        )
    args = {k: v for k, v in cfg.items()}
    if default_args is not None:
        for k, v in default_args.items():
            args.setdefault(k, v)
    obj_type = args.pop("type")
    if isinstance(obj_type, str):
        obj_cls = registry.get(obj_type)
        if obj_cls is None:
            raise KeyError(registry.unknown_type_message(obj_type, cfg_path))
    elif callable(obj_type):
        obj_cls = obj_type
    else:
        raise TypeError(
            f"'type' at config key '{cfg_path or '<root>'}' must be a str or a class/callable, "
            f"got {obj_type!r}."
        )
    # Deep-copy nested containers so the built object never aliases (and mutates) the config.
    args = {k: copy.deepcopy(v) if isinstance(v, (dict, list)) else v for k, v in args.items()}
    try:
        return obj_cls(**args)
    except TypeError as exc:
        bad = _unexpected_keys(obj_cls, args)
        # Keys that match the signature mean the TypeError came from inside the constructor:
        # re-raise it untouched. Without a readable signature, wrap only argument errors.
        if bad == [] or (bad is None and "argument" not in str(exc)):
            raise
        name = getattr(obj_cls, "__name__", repr(obj_cls))
        where = f"config key '{cfg_path}'" if cfg_path else "the config"
        detail = f" Offending keys: {bad}." if bad else ""
        raise TypeError(
            f"Failed to build {name} (registry '{registry.name}') from {where}: {exc}.{detail} "
            f"Check the keys against {name}'s signature: {_signature_text(obj_cls)}."
        ) from exc


def _signature_text(obj: Any) -> str:
    try:
        import inspect

        return f"{getattr(obj, '__name__', obj)}{inspect.signature(obj)}"
    except (TypeError, ValueError):
        return "<unavailable>"


def _unexpected_keys(obj: Any, args: Mapping) -> list[str] | None:
    import inspect  # only on the error path: keeps `import kiln.registry` cheap

    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    params = sig.parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        missing = [
            n for n, p in params.items()
            if p.default is inspect.Parameter.empty
            and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
            and n not in args
        ]
        # **kwargs may be forwarded to a base class whose signature we cannot see: a clean
        # result here proves nothing, so report "unknown" (None) rather than "fine" ([]).
        return [f"missing: {m}" for m in missing] or None
    unexpected = [k for k in args if k not in params]
    missing = [
        n for n, p in params.items()
        if p.default is inspect.Parameter.empty
        and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        and n not in args
    ]
    return [f"unexpected: {k}" for k in unexpected] + [f"missing: {m}" for m in missing]


def build_model_from_cfg(
    cfg: Any, registry: Registry, default_args: Mapping | None = None, *, cfg_path: str = ""
) -> Any:
    """Like :func:`build_from_cfg`, but a list of configs builds an ``nn.Sequential``."""
    if isinstance(cfg, (list, tuple)):
        import torch.nn as nn

        return nn.Sequential(*build_from_cfg(cfg, registry, default_args, cfg_path=cfg_path))
    return build_from_cfg(cfg, registry, default_args, cfg_path=cfg_path)


def import_modules(imports: str | Sequence[str], allow_failed_imports: bool = False) -> list[Any]:
    """Import modules by dotted path (``custom_imports`` in a config)."""
    if isinstance(imports, str):
        imports = [imports]
    if not isinstance(imports, (list, tuple)):
        raise TypeError(f"custom_imports.imports must be a str or list of str, got {imports!r}.")
    modules = []
    for name in imports:
        if not isinstance(name, str):
            raise TypeError(f"custom_imports.imports entries must be str, got {name!r}.")
        try:
            modules.append(importlib.import_module(name))
        except ImportError as exc:
            if not allow_failed_imports:
                raise ImportError(
                    f"custom_imports: failed to import '{name}': {exc}. Check that the module is on "
                    f"PYTHONPATH or installed, or set allow_failed_imports=True."
                ) from exc
            logger.warning("custom_imports: failed to import %s; skipped (%s)", name, exc)
            modules.append(None)
    return modules


_plugins_loaded = False


def load_plugins(force: bool = False) -> list[str]:
    """Import every module advertised in the ``kiln.plugins`` entry-point group.

    A pip-installed package declares ``[project.entry-points."kiln.plugins"] name = "pkg.module"``
    (the module is imported) or ``name = "pkg.module:setup"`` (``setup()`` is called after the
    import), and its registrations become visible without any import in the config. Called
    automatically on the first lookup that misses in any registry, and by the runner/CLI at
    start-up. A plugin that fails to import is logged as a warning and skipped. Returns the
    names of the plugins loaded.
    """
    global _plugins_loaded
    if _plugins_loaded and not force:
        return []
    _plugins_loaded = True
    from importlib.metadata import entry_points

    loaded = []
    for ep in entry_points(group=PLUGIN_ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            # ``name = "pkg.mod:setup"`` names a function to call; a module needs no call.
            if ep.attr and callable(obj) and not isinstance(obj, type):
                obj()
            loaded.append(ep.name)
        except Exception as exc:  # a broken plugin must not break kiln; say so loudly
            logger.warning("kiln plugin '%s' (%s) failed to load: %s", ep.name, ep.value, exc)
    return loaded


# --------------------------------------------------------------------------------------------
# Root registries. ``locations`` are imported on first lookup so that ``import kiln`` stays
# cheap while ``MODELS.build(dict(type='ResNet', ...))`` just works.
# --------------------------------------------------------------------------------------------
MODELS = Registry("model", build_func=build_model_from_cfg, scope="kiln",
                  locations=["kiln.models"])
DATASETS = Registry("dataset", scope="kiln", locations=["kiln.data.datasets"])
TRANSFORMS = Registry("transform", scope="kiln", locations=["kiln.data.transforms"])
SAMPLERS = Registry("sampler", scope="kiln", locations=["kiln.data.samplers"])
DATA_LOADERS = Registry("data_loader", scope="kiln", locations=["kiln.data.build"])
HOOKS = Registry("hook", scope="kiln", locations=["kiln.engine.hooks"])
OPTIMIZERS = Registry("optimizer", scope="kiln", locations=["kiln.engine.optim"])
OPTIM_WRAPPERS = Registry("optim_wrapper", scope="kiln", locations=["kiln.engine.optim"])
PARAM_SCHEDULERS = Registry("param_scheduler", scope="kiln",
                            locations=["kiln.engine.schedulers", "kiln.engine.schedulers_mm"])
EVALUATORS = Registry("evaluator", scope="kiln", locations=["kiln.evaluation"])
WRITERS = Registry("writer", scope="kiln", locations=["kiln.engine.writers"])
RUNNERS = Registry("runner", scope="kiln", locations=["kiln.engine.runner", "kiln.engine.mmcv_runner"])
LOOPS = Registry("loop", scope="kiln", locations=["kiln.engine.loops"])
TASK_UTILS = Registry("task_util", scope="kiln", locations=["kiln.models"])
VISUALIZERS = Registry("visualizer", scope="kiln", locations=["kiln.visualization.det_visualizer"])
VIS_BACKENDS = Registry("vis_backend", scope="kiln", locations=["kiln.visualization.vis_backends"])
VISBACKENDS = VIS_BACKENDS  # MMEngine's spelling, for code written against mmengine.registry

# MM-style names and Detectron2-style names resolve to MODELS so seed-style code works:
# ``@BACKBONES.register_module()`` registers into MODELS and ``DETECTORS.build`` builds from it.
BACKBONES = MODELS
NECKS = MODELS
HEADS = MODELS
DETECTORS = MODELS
LOSSES = MODELS
ROI_EXTRACTORS = MODELS
SHARED_HEADS = MODELS
META_ARCH_REGISTRY = MODELS
BACKBONE_REGISTRY = MODELS

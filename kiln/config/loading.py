"""Reading config files: .py/.json/.yaml, ``_base_`` inheritance and ``{{ ... }}`` variables.

Order of work for one file (bases first, recursively), the order MMEngine 0.10 uses so that
MMDetection's own configs resolve to the values MMEngine gives them:

1. text substitution: ``{{ fileDirname }}``-style predefined variables and
   ``{{$NAME:default}}`` environment variables;
2. ``{{_base_.a.b}}`` references become placeholders, resolved after the file has run;
3. the ``_base_`` list is read (for .py files from the syntax tree, without running code);
4. bases load and merge (two bases may define the same key only with equal values); each
   base's values are rebuilt as fresh containers, so no two keys share an object;
5. the file itself is evaluated — a .py file runs with ``_base_`` bound to the merged base
   config *itself*, so ``_base_.model.x = v``, ``del _base_.x``, ``model = _base_.model;
   model.x = v`` and ``_base_.pipeline[2] = ...`` edit the bases in place. Top-level
   assignments named by a variable override are replaced by the override value first, so
   values computed from them see the override;
6. the file's values are copied (aliases of base objects become independent), its
   ``{{_base_.x}}`` placeholders take the values of the edited bases, and its keys merge over
   the bases (``_delete_=True`` replaces instead of merging).
"""

from __future__ import annotations

import ast
import copy
import json
import os
import os.path as osp
import re
import types
from collections.abc import Iterator, Mapping
from typing import Any

from .config_dict import ConfigDict
from .errors import ConfigError, invalid_yaml
from .merge import merge_into

BASE_KEYS = ("_base_", "_BASE_")
RESERVED_KEYS = ("filename", "text", "pretty_text")
SUFFIXES = (".py", ".json", ".yaml", ".yml")
OVERRIDES_NAME = "__kiln_overrides__"

_PREDEFINED_RE = re.compile(
    r"\{\{\s*(fileDirname|fileBasename|fileBasenameNoExtension|fileExtname)\s*\}\}"
)
_ENV_RE = re.compile(r"\{\{\s*\$([A-Za-z_][A-Za-z0-9_]*)\s*(?::([^}]*))?\}\}")
_BASE_REF_RE = re.compile(r"(['\"]?)\{\{\s*_base_\.([\w.]+)\s*\}\}\1")
_PLACEHOLDER_RE = re.compile(r"['\"]?(__kiln_base_ref_\d+__)['\"]?")


class LoadedFile:
    """The result of loading one file: merged dict, its text, and the files it read."""

    __slots__ = ("cfg", "text", "files", "applied_vars")

    def __init__(self, cfg: ConfigDict, text: str, files: list[str], applied_vars: set[str]):
        self.cfg = cfg
        self.text = text
        self.files = files
        self.applied_vars = applied_vars


def check_suffix(filename: str) -> str:
    """Return the suffix of a config path or fail listing the supported ones."""
    suffix = osp.splitext(filename)[1].lower()
    if suffix not in SUFFIXES:
        raise ConfigError(
            f"Config file {filename!r} has an unsupported extension {suffix!r}; use one of "
            f"{', '.join(SUFFIXES)}."
        )
    return suffix


def _substitute_predefined(text: str, filename: str) -> str:
    if "{{" not in text:
        return text
    dirname = osp.dirname(osp.abspath(filename))
    base = osp.basename(filename)
    stem, ext = osp.splitext(base)
    values = {
        "fileDirname": dirname.replace("\\", "/"),
        "fileBasename": base,
        "fileBasenameNoExtension": stem,
        "fileExtname": ext,
    }
    return _PREDEFINED_RE.sub(lambda m: values[m.group(1)], text)


def _substitute_env(text: str, filename: str) -> str:
    if "{{" not in text:
        return text

    def repl(m: re.Match) -> str:
        name, default = m.group(1), m.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is None:
            raise ConfigError(
                f"{filename}: environment variable '{name}' is not set and "
                f"'{{{{${name}}}}}' has no default. Set it, or write '{{{{${name}:default}}}}'."
            )
        return default.strip()

    return _ENV_RE.sub(repl, text)


def _substitute_base_refs(text: str) -> tuple[str, dict[str, str]]:
    refs: dict[str, str] = {}
    if "_base_." not in text:
        return text, refs

    def repl(m: re.Match) -> str:
        token = f"__kiln_base_ref_{len(refs)}__"
        refs[token] = m.group(2)
        return f'"{token}"'

    return _BASE_REF_RE.sub(repl, text), refs


def _lookup(cfg: Mapping, dotted: str, filename: str) -> Any:
    node: Any = cfg
    for seg in dotted.split("."):
        if isinstance(node, (list, tuple)) and seg.lstrip("-").isdigit():
            idx = int(seg)
            if not -len(node) <= idx < len(node):
                raise ConfigError(f"{filename}: '{{{{_base_.{dotted}}}}}': index {idx} is out of range.")
            node = node[idx]
        elif isinstance(node, Mapping) and seg in node:
            node = node[seg]
        else:
            raise ConfigError(
                f"{filename}: '{{{{_base_.{dotted}}}}}' refers to a key that the base configs do "
                f"not define ('{seg}' is missing)."
            )
    return copy.deepcopy(node)


def _resolve_refs(value: Any, refs: dict[str, str], base: Mapping, filename: str) -> Any:
    if isinstance(value, str) and "__kiln_base_ref_" in value:
        m = _PLACEHOLDER_RE.fullmatch(value)
        if m and m.group(1) in refs:
            return _lookup(base, refs[m.group(1)], filename)
        return _PLACEHOLDER_RE.sub(
            lambda mm: str(_lookup(base, refs[mm.group(1)], filename)), value
        )
    if isinstance(value, dict):
        for k in list(value):
            value[k] = _resolve_refs(value[k], refs, base, filename)
        return value
    if isinstance(value, list):
        return [_resolve_refs(v, refs, base, filename) for v in value]
    if isinstance(value, tuple):
        return type(value)(_resolve_refs(v, refs, base, filename) for v in value)
    return value


def _syntax_error(exc: SyntaxError, filename: str) -> ConfigError:
    line = (exc.text or "").rstrip()
    caret = f"\n    {line}" if line else ""
    return ConfigError(f"{filename}, line {exc.lineno}: invalid Python syntax: {exc.msg}{caret}")


def _py_base_list(tree: ast.Module, filename: str) -> list[str] | str | None:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id in BASE_KEYS for t in node.targets
        ):
            try:
                return ast.literal_eval(node.value)
            except ValueError:
                raise ConfigError(
                    f"{filename}, line {node.lineno}: _base_ must be a string or a list of "
                    f"strings written literally (it is read before the file runs)."
                ) from None
    return None


def _is_target(node: ast.stmt, names: Mapping) -> str | None:
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
        t = node.targets[0]
        if isinstance(t, ast.Name) and t.id in names:
            return t.id
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value:
        if node.target.id in names:
            return node.target.id
    return None


class StaleInheritedValueWarning(UserWarning):
    """A child config re-assigns a variable (``data_root``) that its bases computed other values from;
    those inherited values keep the base's value (MMEngine's rule, which kiln keeps)."""


def _warn_stale_inherited(tree: ast.Module, base_cfg: Mapping, merged: Mapping, filename: str) -> None:
    """Warn when a child's ``name = 'text'`` differs from the bases' ``name`` while inherited values still
    hold the bases' text: ``data_root = '/data/mine/'`` in a child leaves ``ann_file='data/coco/...'``
    computed in the base. Re-deriving them silently would change what published configs mean (measured:
    57 of 1431 MMDetection 3.3.0/2.28.2 configs, e.g. grounding_dino children setting data_root and
    dataset_type), so kiln says it instead and names the override that does re-derive them."""
    import warnings

    for name, value in _string_variables(tree).items():
        old = base_cfg.get(name)
        if not isinstance(old, str) or old == value or len(old) < 3:
            continue
        stale = [path for path, leaf in _string_leaves(merged) if path != name and leaf.startswith(old)]
        if stale:
            shown = ", ".join(stale[:3]) + (f" and {len(stale) - 3} more" if len(stale) > 3 else "")
            warnings.warn(
                f"{filename} sets {name}={value!r}, but values inherited from its base configs were "
                f"computed from the base's {name}={old!r} and still use it: {shown}. A child's variable does "
                f"not change what its bases computed (as in MMEngine). Set those values in this file, or "
                f"pass `--cfg-options {name}={value}`, which re-derives them.",
                StaleInheritedValueWarning, stacklevel=2)


def _string_leaves(obj: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from _string_leaves(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _string_leaves(v, f"{prefix}.{i}")
    elif isinstance(obj, str):
        yield prefix, obj


def _string_variables(tree: ast.Module) -> dict[str, str]:
    """Top-level ``name = 'text'`` assignments of a config file (names not starting with ``_``)."""
    out = {}
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else (
            node.target if isinstance(node, ast.AnnAssign) else None)
        if isinstance(target, ast.Name) and not target.id.startswith("_") \
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            out[target.id] = node.value.value
    return out


def _fresh(value: Any) -> Any:
    """Rebuild dicts, lists and tuples (leaves stay): a loaded base shares no container.

    MMEngine converts each loaded base to new ``ConfigDict`` objects at every level, which
    breaks the sharing that ``test_dataloader = val_dataloader`` creates in a base file; an
    in-place edit of ``_base_.val_dataloader`` must not reach ``test_dataloader``.
    """
    if isinstance(value, dict):
        out = ConfigDict()
        for k, v in value.items():
            dict.__setitem__(out, k, _fresh(v))
        return out
    if isinstance(value, list):
        return [_fresh(v) for v in value]
    if type(value) is tuple:
        return tuple(_fresh(v) for v in value)
    return value


_MM_PACKAGES = ("mmengine", "mmcv", "mmdet")


def _refuse_mm_import(node: ast.stmt, module: str, filename: str) -> None:
    raise ConfigError(
        f"{filename}, line {node.lineno}: the file imports '{module}'. kiln configs are plain "
        f"values (`_base_ = [...]`, dicts with type strings) and kiln does not use OpenMMLab "
        f"packages; if this is a helper script that sits in a configs/ tree, it is not a config. "
        f"For an MMEngine pure-Python config use the configs/ tree file of the same name."
    )


def _refuse_read_base(tree: ast.Module, filename: str) -> None:
    """Refuse MMEngine's pure-Python ("lazy import") configs with one message.

    Those files (``mmdet/configs/`` in MMDetection 3.x) import their bases with ``with
    read_base(): from .._base_.x import *`` and name classes instead of type strings; kiln
    reads the ``configs/`` tree form of the same configs.
    """
    for node in tree.body:
        uses = False
        if isinstance(node, ast.With):
            uses = any(
                isinstance(item.context_expr, ast.Call)
                and getattr(item.context_expr.func, "id", getattr(item.context_expr.func, "attr", ""))
                == "read_base"
                for item in node.items
            )
        elif isinstance(node, ast.ImportFrom):
            uses = node.level > 0 or any(a.name == "read_base" for a in node.names)
            if not uses and (node.module or "").split(".")[0] in _MM_PACKAGES:
                _refuse_mm_import(node, node.module or "", filename)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in _MM_PACKAGES:
                    _refuse_mm_import(node, alias.name, filename)
        if uses:
            raise ConfigError(
                f"{filename}, line {node.lineno}: this is an MMEngine pure-Python config "
                f"(`with read_base():` / relative imports of other configs, classes instead of "
                f"type strings), which kiln does not read. Use the config of the same name from "
                f"MMDetection's configs/ tree instead (its model part is written with '-', e.g. "
                f"configs/faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py for mmdet/configs/"
                f"faster_rcnn/faster_rcnn_r50_fpn_1x_coco.py; the mmdet package ships that tree "
                f"as mmdet/.mim/configs/): it inherits with `_base_ = [...]`."
            )


def _exec_py(tree: ast.Module, filename: str, base: ConfigDict, var_overrides: Mapping,
             applied: set[str]) -> dict:
    body = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id in BASE_KEYS for t in node.targets
        ):
            continue  # `_base_` stays bound to the merged base config
        name = _is_target(node, var_overrides)
        if name is not None:
            new_value = ast.Subscript(
                value=ast.Name(id=OVERRIDES_NAME, ctx=ast.Load()),
                slice=ast.Constant(value=name),
                ctx=ast.Load(),
            )
            for sub in ast.walk(new_value):  # locate only the new nodes; the rest has positions
                ast.copy_location(sub, node.value)
            node.value = new_value
            applied.add(name)
        body.append(node)
    tree.body = body
    namespace: dict[str, Any] = {
        "__file__": filename,
        "__name__": "__kiln_config__",
        "_base_": base,
        OVERRIDES_NAME: dict(var_overrides),
    }
    # Python configs are code: they run with the user's privileges (documented in config.md).
    try:
        exec(compile(tree, filename, "exec"), namespace)
    except Exception as exc:
        line = "?"
        tb = exc.__traceback__
        while tb is not None:  # the deepest frame that belongs to the config file
            if tb.tb_frame.f_code.co_filename == filename:
                line = str(tb.tb_lineno)
            tb = tb.tb_next
        raise ConfigError(
            f"{filename}, line {line}: the config raised {type(exc).__name__}: {exc}"
        ) from exc
    return {
        k: v for k, v in namespace.items()
        if not k.startswith("__") and k not in BASE_KEYS
        and not isinstance(v, (types.ModuleType, types.FunctionType))
    }


def _parse_data(text: str, filename: str, suffix: str) -> dict:
    if suffix == ".json":
        try:
            data = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{filename}, line {exc.lineno}: invalid JSON: {exc.msg}") from None
    else:
        from kiln.fileio.yaml_io import YAMLError, yaml_load

        try:
            data = yaml_load(text)
        except YAMLError as exc:
            raise invalid_yaml(filename, exc) from None
        data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(
            f"{filename}: a config must be a mapping at the top level, got {type(data).__name__}."
        )
    return data


def resolve_package_path(name: str, what: str = "config") -> str:
    """Resolve ``'pkg::rel/path'`` to a config shipped inside an installed package.

    ``kiln::...`` is resolved by :func:`kiln.model_zoo.resolve_config_path` (suffix optional,
    close matches on a miss); other packages are searched in ``<pkg>/configs`` and
    ``<pkg>/model_zoo/configs``.
    """
    pkg, _, rel = name.partition("::")
    if pkg == "kiln":
        from kiln.model_zoo.paths import resolve_config_path

        try:
            return resolve_config_path(name)
        except FileNotFoundError as exc:
            raise ConfigError(f"{what} {exc}") from None
    import importlib.util

    spec = importlib.util.find_spec(pkg) if pkg else None
    roots = list(spec.submodule_search_locations or []) if spec else []
    for root in roots:
        for sub in ("configs", osp.join("model_zoo", "configs")):
            base = osp.join(root, sub, rel)
            for cand in (base, *(base + s for s in SUFFIXES)):
                if osp.isfile(cand):
                    return cand
    raise ConfigError(f"{what} '{name}' not found in package '{pkg}' (looked in its configs/ "
                      f"and model_zoo/configs/ directories).")


def resolve_base_path(entry: str, filename: str) -> str:
    """Resolve one ``_base_`` entry relative to the including file (``pkg::rel`` too)."""
    if not isinstance(entry, str):
        raise ConfigError(f"{filename}: _base_ entries must be strings, got {entry!r}.")
    if "::" in entry:
        return resolve_package_path(entry, f"{filename}: base config")
    path = osp.expanduser(entry)
    if not osp.isabs(path):
        path = osp.join(osp.dirname(osp.abspath(filename)), path)
    return osp.normpath(path)


def load_config_text(
    text: str,
    filename: str,
    *,
    var_overrides: Mapping | None = None,
    use_predefined_variables: bool = True,
    use_environment_variables: bool = True,
    _stack: tuple[str, ...] = (),
) -> LoadedFile:
    """Load a config from its text; ``filename`` gives the format and resolves relative bases."""
    suffix = check_suffix(filename)
    var_overrides = var_overrides or {}
    raw_text = text
    if use_predefined_variables:
        text = _substitute_predefined(text, filename)
    if use_environment_variables:
        text = _substitute_env(text, filename)
    text, refs = _substitute_base_refs(text)

    if suffix == ".py":
        try:
            tree = ast.parse(text, filename=filename)
        except SyntaxError as exc:
            raise _syntax_error(exc, filename) from None
        _refuse_read_base(tree, filename)
        base_entries = _py_base_list(tree, filename)
        data = None
    else:
        tree = None
        data = _parse_data(text, filename, suffix)
        base_entries = None
        for key in BASE_KEYS:
            if key in data:
                base_entries = data.pop(key)

    files = [osp.abspath(filename)]
    applied: set[str] = set()
    base_cfg = ConfigDict()
    if base_entries:
        entries = [base_entries] if isinstance(base_entries, str) else list(base_entries)
        owner: dict[str, str] = {}
        for entry in entries:
            path = resolve_base_path(entry, filename)
            if path in _stack or path == osp.abspath(filename):
                chain = " -> ".join((*_stack, osp.abspath(filename), path))
                raise ConfigError(f"Circular _base_ inheritance: {chain}")
            if not osp.isfile(path):
                raise ConfigError(f"{filename}: base config '{entry}' not found (looked at {path}).")
            with open(path, encoding="utf-8") as f:
                sub = load_config_text(
                    f.read(), path, var_overrides=var_overrides,
                    use_predefined_variables=use_predefined_variables,
                    use_environment_variables=use_environment_variables,
                    _stack=(*_stack, osp.abspath(filename)),
                )
            files.extend(sub.files)
            applied |= sub.applied_vars
            for key, value in sub.cfg.items():
                if key in base_cfg and base_cfg[key] != value:
                    raise ConfigError(
                        f"{filename}: key '{key}' is defined differently in base configs "
                        f"{owner[key]} and {path}. Define it in one base only, or set it in "
                        f"{osp.basename(filename)} itself."
                    )
                owner.setdefault(key, path)
                dict.__setitem__(base_cfg, key, _fresh(value))

    if suffix == ".py":
        assert tree is not None
        # `_base_` is the merged base config itself: the file's edits change it in place.
        data = _exec_py(tree, filename, base_cfg, var_overrides, applied)
        # The file's values are copied before merging (MMEngine does the same), so a value
        # that aliases a base object (`model = _base_.model`) is merged as the value it has now.
        try:
            data = copy.deepcopy(data)
        except Exception as exc:  # a top-level value that is not plain data (a lock, a socket)
            raise ConfigError(
                f"{filename}: a top-level value cannot be copied ({type(exc).__name__}: {exc}); "
                f"config values must be plain data (dicts, lists, numbers, strings). Delete "
                f"helper objects at the end of the file (`del name`) or make the name start with '__'."
            ) from exc
    assert data is not None
    if refs:
        data = _resolve_refs(data, refs, base_cfg, filename)
    for key in RESERVED_KEYS:
        if key in data:
            raise ConfigError(
                f"{filename}: '{key}' is a reserved name in kiln configs (Config.{key} is a "
                f"property); rename the key."
            )
    merged = merge_into(data, base_cfg, where=f"{filename}: ")  # strips `_delete_` as it goes
    if tree is not None and base_entries:
        _warn_stale_inherited(tree, base_cfg, merged, filename)
    return LoadedFile(merged, raw_text, files, applied)


def load_config_file(filename: str, **kwargs: Any) -> LoadedFile:
    """Load a config file (see :func:`load_config_text`)."""
    filename = osp.expanduser(str(filename))
    if "::" in filename and "://" not in filename:
        filename = resolve_package_path(filename)
    check_suffix(filename)
    if not osp.isfile(filename):
        raise ConfigError(f"Config file {filename!r} does not exist (cwd: {os.getcwd()}).")
    with open(filename, encoding="utf-8") as f:
        return load_config_text(f.read(), filename, **kwargs)

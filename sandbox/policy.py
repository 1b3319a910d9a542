"""The policy layer: a relaxed RestrictedPython compile step plus guarded builtins for one cell.

What it does: compiles model-written code with a RestrictedPython transformer relaxed enough
for real math programs (star imports, augmented assignment on items and attributes, dunder
methods, annotations, `nonlocal`, `match` (class patterns by public keyword attributes
only), `sorted`/`zip`/`str.format`,
`if __name__ == "__main__":`), and closes
the usual introspection escapes (`__subclasses__`, `__globals__`, frame/generator/traceback
attributes, attribute traversal inside format strings) and imports outside an allow-list.
A violation raises `PolicyImportError`/`PolicyAttributeError` at run time or is reported as a
`PolicyViolation` at compile time; the session classifies both as ``blocked``.

What it deliberately does not do: act as the security boundary. RestrictedPython's own README
says it is not one, and `sympy.sympify("...")` evaluates strings with the real builtins; the
OS layer (`sandbox.isolation`) must hold even when this layer is bypassed. It never runs code
itself and is imported only inside the driver/session processes (it imports RestrictedPython).
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import operator
import re
import string
import sys
import types

from RestrictedPython import Guards
from RestrictedPython.transformer import INSPECT_ATTRIBUTES, RestrictingNodeTransformer

# Modules (by top-level name) that user code may import; the driver pre-imports the heavy ones.
ALLOWED_MODULES = frozenset({
    "__future__", "abc", "array", "bisect", "calendar", "cmath", "collections", "copy",
    "dataclasses", "datetime", "decimal", "enum", "fractions", "functools", "heapq",
    "itertools", "json", "math", "mpmath", "numbers", "numpy", "operator", "pprint", "random",
    "re", "scipy", "statistics", "string", "sympy", "textwrap", "time", "typing",
    "unicodedata",
})
# Submodules of allowed packages that reach compilers, loaders, files or processes.
DENIED_SUBMODULES = (
    "numpy.f2py", "numpy.distutils", "numpy.ctypeslib", "numpy.testing", "numpy._core._multiarray_tests",
    "sympy.utilities.autowrap", "sympy.utilities.codegen", "sympy.testing", "sympy.external",
    "sympy.utilities.source", "sympy.utilities.runtests", "sympy.utilities.pkgdata",
    "sympy.utilities.tmpfiles", "sympy.interactive", "sympy.printing.preview",
    "scipy._lib", "json.tool",
)
# Attributes no user code needs and every classic escape does.
BLOCKED_ATTRIBUTES = frozenset(INSPECT_ATTRIBUTES) | frozenset({
    "__subclasses__", "__globals__", "__code__", "__closure__", "__builtins__", "__base__",
    "__bases__", "__mro__", "mro", "__dict__", "__getattribute__", "__reduce__",
    "__reduce_ex__", "__import__", "__loader__", "__spec__", "__traceback__", "__self__",
    "__func__", "__wrapped__", "__objclass__", "__defaults__", "__kwdefaults__",
    "__context__", "__cause__", "__setattr__", "__delattr__", "__init_subclass__",
    "__class_getitem__", "__getstate__", "__setstate__", "__qualname__", "gi_running",
    "f_lineno", "tb_lasti", "co_consts", "co_names", "func_globals", "im_func",
    "attrgetter", "methodcaller", "Formatter", "_getframe", "modules",
    # typing evaluates string annotations with plain `eval` (no attribute guards; with
    # `globalns={}` even the real builtins); singledispatch's `register` calls it
    "get_type_hints", "ForwardRef", "_evaluate", "_eval_type", "singledispatch",
    "singledispatchmethod",
})
# Module-level names that user code must not rebind (the guards the transformer calls).
RESERVED_NAMES = frozenset({
    "__builtins__", "__metaclass__", "__import__", "__build_class__", "__loader__",
    "__spec__", "_print", "printed",
})
_GUARD_NAME = re.compile(r"^_[^_].*_$|^_tmp\d*$")


class PolicyViolation(Exception):
    """Compile-time refusal by the policy layer (message names line and construct)."""


class _Blocked:
    """Marker mixin: an exception raised by the policy layer at run time."""


class PolicyImportError(_Blocked, ImportError):
    """An import outside the allow-list."""


class PolicyAttributeError(_Blocked, AttributeError):
    """An attribute (or module reached through one) outside the allow-list."""


class PolicyPermissionError(_Blocked, PermissionError):
    """A file outside the session's work dir."""


def is_blocked(exc: BaseException) -> bool:
    return isinstance(exc, _Blocked)


# ---------------------------------------------------------------------------------------------
# Compile time


def _is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def name_is_reserved(name: str) -> bool:
    return name in RESERVED_NAMES or bool(_GUARD_NAME.match(name))


class RelaxedPolicy(RestrictingNodeTransformer):
    """RestrictedPython's transformer with the relaxations real math code needs."""

    def check_name(self, node, name, allow_magic_methods=False):
        if name is None:
            return
        if name_is_reserved(name) or name in BLOCKED_ATTRIBUTES:
            self.error(node, f'"{name}" is a reserved name.')

    def check_import_names(self, node):
        for alias in node.names:
            if alias.name != "*":
                self.check_name(node, alias.asname or alias.name.split(".")[0])
                # `from operator import attrgetter as g`: the imported name counts too
                for part in alias.name.split("."):
                    if part in BLOCKED_ATTRIBUTES:
                        self.error(node, f'import of "{alias.name}" is not allowed.')
        return self.node_contents_visit(node)

    def visit_Attribute(self, node):
        if node.attr in BLOCKED_ATTRIBUTES or name_is_reserved(node.attr):
            self.error(node, f'access to attribute "{node.attr}" is not allowed.')
        if node.attr.endswith("__roles__"):
            self.error(node, f'access to attribute "{node.attr}" is not allowed.')
        node = self.node_contents_visit(node)
        if isinstance(node.ctx, ast.Load):
            call = ast.Call(func=ast.Name("_getattr_", ast.Load()),
                            args=[node.value, ast.Constant(node.attr)], keywords=[])
            ast.copy_location(call, node)
            return call
        wrapped = ast.Call(func=ast.Name("_write_", ast.Load()), args=[node.value], keywords=[])
        ast.copy_location(wrapped, node.value)
        node.value = wrapped
        return node

    def visit_AugAssign(self, node):
        return self.node_contents_visit(node)

    def visit_AnnAssign(self, node):
        return self.node_contents_visit(node)

    def visit_Nonlocal(self, node):
        for name in node.names:
            self.check_name(node, name)
        return self.node_contents_visit(node)

    def visit_Match(self, node):
        return self.node_contents_visit(node)

    visit_match_case = visit_MatchValue = visit_MatchSingleton = visit_MatchSequence = visit_Match
    visit_MatchOr = visit_Match

    def visit_MatchClass(self, node):
        # `case object(__globals__=g)` reads attributes without `_getattr_`: no private ones.
        # Positional sub-patterns read the names in `__match_args__`, which a class built by
        # `type(...)` with an `__instancecheck__` metaclass picks at run time: none at all.
        if node.patterns:
            self.error(node, "positional sub-patterns in class patterns are not allowed "
                             "(use keyword patterns).")
        for attr in node.kwd_attrs:
            if attr.startswith("_") or attr in BLOCKED_ATTRIBUTES or name_is_reserved(attr):
                self.error(node, f'match on attribute "{attr}" is not allowed.')
        return self.node_contents_visit(node)

    def visit_MatchAs(self, node):
        self.check_name(node, node.name)  # `case _getattr_:` would rebind a guard
        return self.node_contents_visit(node)

    visit_MatchStar = visit_MatchAs

    def visit_MatchMapping(self, node):
        self.check_name(node, node.rest)
        return self.node_contents_visit(node)


@dataclasses.dataclass(frozen=True)
class CompiledCell:
    """A cell ready to `exec`: `display` is True when its last statement is a bare expression."""

    code: types.CodeType
    display: bool


DISPLAY_NAME = "_display_"


def compile_cell(source: str, filename: str = "<cell>") -> CompiledCell:
    """Parse, check with the relaxed policy, and compile one cell.

    Raises SyntaxError for code Python itself rejects (the message the model expects) and
    PolicyViolation for code the policy refuses. A trailing bare expression is rewritten to
    ``_display_(<expr>)`` so its value can be shown Jupyter-style.
    """
    tree = ast.parse(source, filename, "exec")
    errors: list[str] = []
    RelaxedPolicy(errors, [], {}).visit(tree)
    if errors:
        raise PolicyViolation("; ".join(errors))
    display = bool(tree.body) and isinstance(tree.body[-1], ast.Expr)
    if display:
        last = tree.body[-1]
        call = ast.Call(func=ast.Name(DISPLAY_NAME, ast.Load()), args=[last.value], keywords=[])
        tree.body[-1] = ast.copy_location(ast.Expr(call), last)
    ast.fix_missing_locations(tree)
    return CompiledCell(compile(tree, filename, "exec"), display)


# ---------------------------------------------------------------------------------------------
# Run time guards


def _module_allowed(name: str) -> bool:
    root = name.partition(".")[0]
    if root not in ALLOWED_MODULES:
        return False
    return not any(name == denied or name.startswith(denied + ".") for denied in DENIED_SUBMODULES)


def check_module(module: types.ModuleType) -> types.ModuleType:
    if module in _SHIMS.values() or _module_allowed(getattr(module, "__name__", "")):
        return module
    raise PolicyAttributeError(f"module '{module.__name__}' is not allowed in the sandbox")


class _SafeFormatter(string.Formatter):
    """`str.format` whose field names cannot walk into blocked or private attributes."""

    def get_field(self, field_name, args, kwargs):
        for part in re.split(r"[.\[]", field_name)[1:]:
            if part.startswith("_") or part in BLOCKED_ATTRIBUTES:
                raise PolicyAttributeError(f"format field '{field_name}' is not allowed")
        return super().get_field(field_name, args, kwargs)


_FORMATTER = _SafeFormatter()


def _format_method(template: str):
    def format(*args, **kwargs):
        return _FORMATTER.vformat(template, args, kwargs)

    def format_map(mapping):
        return _FORMATTER.vformat(template, (), mapping)

    return {"format": format, "format_map": format_map}


def _unbound_format(template, *args, **kwargs):
    return _FORMATTER.vformat(template, args, kwargs)


def _unbound_format_map(template, mapping):
    return _FORMATTER.vformat(template, (), mapping)


_STR_TYPE_FORMAT = {"format": _unbound_format, "format_map": _unbound_format_map}


def guarded_getattr(obj, name, *default):
    """`getattr` for user code: blocked names, private module attributes, disallowed modules."""
    if type(name) is not str:
        raise TypeError("attribute name must be string")
    if name in BLOCKED_ATTRIBUTES or name_is_reserved(name):
        raise PolicyAttributeError(f"access to attribute '{name}' is not allowed in the sandbox")
    if isinstance(obj, types.ModuleType):
        if name[:1] == "_" and not _is_dunder(name):
            raise PolicyAttributeError(f"access to private module attribute '{name}' is not allowed")
        check_module(obj)  # a disallowed module obtained some other way stays unusable
    if name in _STR_TYPE_FORMAT:
        if isinstance(obj, str):
            return _format_method(obj)[name]
        if obj is str:
            return _STR_TYPE_FORMAT[name]
    value = getattr(obj, name, *default)
    if isinstance(value, types.ModuleType):
        check_module(value)
    return value


def guarded_setattr(obj, name, value):
    if type(name) is not str or name in BLOCKED_ATTRIBUTES or name_is_reserved(name):
        raise PolicyAttributeError(f"setting attribute '{name}' is not allowed in the sandbox")
    setattr(obj, name, value)


def guarded_delattr(obj, name):
    if type(name) is not str or name in BLOCKED_ATTRIBUTES or name_is_reserved(name):
        raise PolicyAttributeError(f"deleting attribute '{name}' is not allowed in the sandbox")
    delattr(obj, name)


def guarded_hasattr(obj, name):
    try:
        guarded_getattr(obj, name)
    except AttributeError:
        return False
    return True


def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
    """`__import__` for user code: allow-listed modules only, no relative imports."""
    if level:
        raise PolicyImportError("relative imports are not allowed in the sandbox")
    if name in _SHIMS:
        return _SHIMS[name]
    if not _module_allowed(name):
        raise PolicyImportError(f"import of '{name}' is not allowed in the sandbox")
    module = builtins.__import__(name, globals, locals, fromlist, 0)
    for item in fromlist or ():
        if item in BLOCKED_ATTRIBUTES:
            raise PolicyImportError(f"import of '{item}' is not allowed in the sandbox")
        if item != "*":
            value = getattr(module, item, None)
            if isinstance(value, types.ModuleType):
                check_module(value)
            elif item.startswith("_") and not _is_dunder(item):
                raise PolicyImportError(f"import of private name '{item}' is not allowed")
    return module


def _open_in_workdir(file, mode="r", *args, **kwargs):
    """`open` for user code: relative paths inside the session's work dir only."""
    path = str(file)
    if not isinstance(file, (str, bytes)) or path.startswith("/") or ".." in path.split("/"):
        raise PolicyPermissionError(f"open({file!r}): only files in the working directory are allowed")
    return open(path, mode, *args, **kwargs)


def _no_input(*_args):
    raise EOFError("EOF when reading a line")


def _apply(func, *args, **kwargs):
    return func(*args, **kwargs)


def _write_guard(obj):
    return obj


def _inplacevar(op, x, y):
    return _INPLACE[op](x, y)


_INPLACE = {
    "+=": operator.iadd, "-=": operator.isub, "*=": operator.imul, "/=": operator.itruediv,
    "//=": operator.ifloordiv, "%=": operator.imod, "**=": operator.ipow,
    "<<=": operator.ilshift, ">>=": operator.irshift, "&=": operator.iand,
    "|=": operator.ior, "^=": operator.ixor, "@=": operator.imatmul,
}


class PrintToStdout:
    """RestrictedPython's `_print_` protocol, writing straight to the session's stdout."""

    def __init__(self, _getattr_=None):
        pass

    def __call__(self) -> str:
        return ""

    @staticmethod
    def _call_print(*objects, **kwargs):
        print(*objects, **kwargs)  # noqa: T201 (this is user code's print)


_MAX_RECURSION = 20_000


def _setrecursionlimit(limit: int) -> None:
    sys.setrecursionlimit(max(50, min(int(limit), _MAX_RECURSION)))


def _exit(code=None):
    raise SystemExit(code)


def _make_sys_shim() -> types.ModuleType:
    shim = types.ModuleType("sys", "The sandbox's subset of the sys module.")
    for name in ("maxsize", "float_info", "int_info", "version", "version_info", "hexversion",
                 "byteorder", "getrecursionlimit", "set_int_max_str_digits",
                 "get_int_max_str_digits", "getsizeof", "implementation", "platform"):
        if hasattr(sys, name):
            setattr(shim, name, getattr(sys, name))
    shim.setrecursionlimit = _setrecursionlimit
    shim.exit = _exit
    shim.argv = [""]
    return shim


_SHIMS = types.MappingProxyType({"sys": _make_sys_shim()})


def bind_streams(stdout, stderr) -> None:
    """Point the `sys` shim's `stdout`/`stderr` at the session's streams."""
    _SHIMS["sys"].stdout = stdout
    _SHIMS["sys"].stderr = stderr

_SAFE_BUILTIN_NAMES = ["abs", "all", "any", "ascii", "bin", "bool", "bytearray", "bytes", "callable", "chr", "classmethod", "complex", "dict", "divmod", "enumerate", "filter", "float", "format", "frozenset", "hash", "hex", "id", "int", "isinstance", "issubclass", "iter", "len", "list", "map", "max", "min", "next", "object", "oct", "ord", "pow", "property", "range", "repr", "reversed", "round", "set", "slice", "sorted", "staticmethod", "str", "sum", "super", "tuple", "type", "zip", "NotImplemented", "Ellipsis", "None", "True", "False", "__build_class__"]


def _exception_names() -> list[str]:
    return [n for n, v in vars(builtins).items()
            if isinstance(v, type) and issubclass(v, BaseException)]


def make_builtins() -> dict:
    """The builtins user code sees: safe functions, every exception class, guarded hooks."""
    table = {name: getattr(builtins, name) for name in _SAFE_BUILTIN_NAMES}
    table.update({name: getattr(builtins, name) for name in _exception_names()})
    table.update({
        "__import__": guarded_import, "getattr": guarded_getattr, "setattr": guarded_setattr,
        "delattr": guarded_delattr, "hasattr": guarded_hasattr, "open": _open_in_workdir,
        "input": _no_input, "exit": _exit, "quit": _exit, "print": print,
    })
    return table


def make_globals(display) -> dict:
    """A fresh user namespace: guarded builtins plus the hooks the transformer calls."""
    return {
        "__builtins__": make_builtins(),
        "__name__": "__main__",
        "__metaclass__": type,
        "_getattr_": guarded_getattr,
        "_getitem_": operator.getitem,
        "_getiter_": iter,
        "_iter_unpack_sequence_": Guards.guarded_iter_unpack_sequence,
        "_unpack_sequence_": Guards.guarded_unpack_sequence,
        "_write_": _write_guard,
        "_inplacevar_": _inplacevar,
        "_apply_": _apply,
        "_print_": PrintToStdout,
        DISPLAY_NAME: display,
    }

# sundial's Python bootstrap, run as `python -c BOOTSTRAP KIND TARGET FUNCTION`.
#
#   KIND=file    TARGET is the absolute path of a .py file, loaded by path
#   KIND=module  TARGET is a dotted module name, imported
#
# Calls FUNCTION(**parameters) with the JSON object in SUNDIAL_PARAMETERS and, when the
# result is awaitable, runs it with asyncio.run. Return: exit 0. Exception: traceback on
# stderr, exit 1. Missing file, module or function: one line on stderr naming it, exit 1.
# With SUNDIAL_RELEASE=stdin (`prestart_seconds`) the process was started ahead of its
# slot: it imports the entrypoint, then waits for one byte on stdin before calling; end of
# input instead (cancelled, or the daemon gone) exits 1 without calling.
# No shell, no third-party imports; Python >= 3.8. Only what every run needs is imported
# up front: asyncio, importlib.util and traceback load when used (they cost milliseconds).
import importlib
import json
import os
import sys


def fail(message):
    sys.stderr.write("sundial: " + message + "\n")
    sys.exit(1)


def parameters():
    text = os.environ.get("SUNDIAL_PARAMETERS", "{}")
    try:
        value = json.loads(text)
    except ValueError as e:
        fail("SUNDIAL_PARAMETERS is not valid JSON: %s" % e)
    if not isinstance(value, dict):
        fail("SUNDIAL_PARAMETERS must be a JSON object, got %s" % type(value).__name__)
    return value


def load_file(path):
    if not os.path.isfile(path):
        fail("entrypoint file not found: %s" % path)
    import importlib.util

    sys.path.insert(0, os.path.dirname(path))
    # A name of our own, registered before exec so dataclasses and pickle find the module.
    name = "__sundial_entrypoint__"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        fail("cannot load %s as Python source" % path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_module(name):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        # Only the entrypoint's own module (or a parent package) missing is "not found";
        # a missing dependency inside it is the flow's error and keeps its traceback.
        if e.name and (name == e.name or name.startswith(e.name + ".")):
            fail("entrypoint module not found: %s (searched from %s)" % (name, os.getcwd()))
        raise


async def settle(awaitable):
    return await awaitable


def released():
    if os.environ.pop("SUNDIAL_RELEASE", None) != "stdin":
        return
    if sys.stdin.buffer.read(1) != b"g":
        fail("not released: the run was cancelled, or the daemon stopped, before its time; the function was not called")


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("file", "module"):
        fail("bootstrap usage: file|module TARGET FUNCTION")
    kind, target, function = sys.argv[1:]
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    kwargs = parameters()
    sys.path.insert(0, os.getcwd())
    try:
        module = load_file(target) if kind == "file" else load_module(target)
        try:
            func = getattr(module, function)
        except AttributeError:
            fail("entrypoint function not found: %s has no `%s`" % (target, function))
        if not callable(func):
            fail("entrypoint `%s` in %s is not callable" % (function, target))
        released()
        result = func(**kwargs)
        if hasattr(result, "__await__"):
            import asyncio

            asyncio.run(settle(result))
    except Exception:
        import traceback

        traceback.print_exc()
        sys.exit(1)


main()
